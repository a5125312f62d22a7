/**
 * The promises of src/storage/storage.ts, run against every implementation
 * (storage-posix.test.ts, storage-memory.test.ts): the memory store unit tests rely on must
 * behave as the file system does.
 */
import { describe, expect, it } from 'vitest';
import type { Storage } from '../../src/storage/storage.js';
import { errorCode } from '../../src/storage/storage.js';

export interface ContractSubject {
  readonly storage: Storage;
  /** An existing, empty directory to work in. */
  readonly root: string;
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => 'no error',
    (e: unknown) => errorCode(e),
  );
}

const text = (b: Buffer | undefined): string | undefined => b?.toString('utf8');

export function storageContract(name: string, subject: () => Promise<ContractSubject>): void {
  describe(`Storage contract: ${name}`, () => {
    it('reads whole files, ranges and absent names', async () => {
      const { storage: s, root } = await subject();
      await s.writeFileDurable(`${root}/a`, 'hello world');
      expect(text(await s.readFile(`${root}/a`))).toBe('hello world');
      expect(text(await s.readFileIfExists(`${root}/a`))).toBe('hello world');
      expect(await s.readFileIfExists(`${root}/none`)).toBeUndefined();
      expect(await codeOf(s.readFile(`${root}/none`))).toBe('ENOENT');
      expect(text(await s.readRange(`${root}/a`, 6, 5))).toBe('world');
      expect(text(await s.readRange(`${root}/a`, 6, 100))).toBe('world');
      expect((await s.readRange(`${root}/a`, 100, 4)).length).toBe(0);
      const r = await s.openForRead(`${root}/a`);
      expect(r.size).toBe(11);
      expect(text(await r.read(0, 5))).toBe('hello');
      await r.close();
      expect(await codeOf(s.openForRead(`${root}/none`))).toBe('ENOENT');
    });

    it('stat, exists and list', async () => {
      const { storage: s, root } = await subject();
      await s.makeDir(`${root}/d`);
      await s.writeFileDurable(`${root}/d/f`, new Uint8Array(10));
      expect(await s.stat(`${root}/d`)).toMatchObject({ kind: 'directory' });
      expect(await s.stat(`${root}/d/f`)).toEqual({ kind: 'file', size: 10 });
      expect(await s.stat(`${root}/nothing`)).toBeUndefined();
      expect(await s.exists(`${root}/d/f`)).toBe(true);
      expect(await s.exists(`${root}/d/g`)).toBe(false);
      await s.writeFileDurable(`${root}/d/g`, 'x');
      expect((await s.list(`${root}/d`)).sort()).toEqual(['f', 'g']);
      expect(await codeOf(s.list(`${root}/nothing`))).toBe('ENOENT');
      expect(await codeOf(s.list(`${root}/d/f`))).toBe('ENOTDIR');
    });

    it('makeDir claims a name exclusively; makeDirs creates parents and says what it created', async () => {
      const { storage: s, root } = await subject();
      await s.makeDir(`${root}/x`);
      expect(await codeOf(s.makeDir(`${root}/x`))).toBe('EEXIST');
      expect(await codeOf(s.makeDir(`${root}/no/such`))).toBe('ENOENT');
      expect(await s.makeDirs(`${root}/x/y/z`)).toBe(`${root}/x/y`);
      expect(await s.makeDirs(`${root}/x/y/z`)).toBeUndefined();
      expect(await s.stat(`${root}/x/y/z`)).toMatchObject({ kind: 'directory' });
      await s.writeFileDurable(`${root}/file`, 'f');
      expect(await codeOf(s.makeDirs(`${root}/file/sub`))).toBe('ENOTDIR');
    });

    it('createFile writes in order, at positions, truncates; exclusive refuses an existing name', async () => {
      const { storage: s, root } = await subject();
      const w = await s.createFile(`${root}/f`, { exclusive: true });
      await w.write(Buffer.from('abc'));
      await w.write(Buffer.from('def'));
      await w.writeAt(Buffer.from('XY'), 1);
      await w.sync();
      await w.close();
      expect(text(await s.readFile(`${root}/f`))).toBe('aXYdef');
      expect(await codeOf(s.createFile(`${root}/f`, { exclusive: true }))).toBe('EEXIST');
      const again = await s.createFile(`${root}/f`);
      await again.truncate(4);
      await again.close();
      expect([...(await s.readFile(`${root}/f`))]).toEqual([0, 0, 0, 0]);
      expect(await codeOf(s.createFile(`${root}/no/such`))).toBe('ENOENT');
    });

    it('writeFileDurable replaces whole and leaves no temporary name', async () => {
      const { storage: s, root } = await subject();
      await s.writeFileDurable(`${root}/m`, 'one');
      await s.writeFileDurable(`${root}/m`, 'two');
      expect(text(await s.readFile(`${root}/m`))).toBe('two');
      expect(await s.list(root)).toEqual(['m']);
    });

    it('publishIfAbsent never replaces an existing name', async () => {
      const { storage: s, root } = await subject();
      expect(await s.publishIfAbsent(`${root}/p`, 'first')).toBe(true);
      expect(await s.publishIfAbsent(`${root}/p`, 'second')).toBe(false);
      expect(text(await s.readFile(`${root}/p`))).toBe('first');
      const both = await Promise.all([s.publishIfAbsent(`${root}/q`, 'A'), s.publishIfAbsent(`${root}/q`, 'B')]);
      expect(both.filter(Boolean)).toHaveLength(1);
      expect(text(await s.readFile(`${root}/q`))).toBe(both[0] ? 'A' : 'B');
      expect((await s.list(root)).sort()).toEqual(['p', 'q']);
    });

    it('publishFileIfAbsent gives a file a second name, never over an existing one', async () => {
      const { storage: s, root } = await subject();
      await s.writeFileDurable(`${root}/src`, 'content');
      await s.writeFileDurable(`${root}/taken`, 'other');
      expect(await s.publishFileIfAbsent(`${root}/src`, `${root}/dst`)).toBe('published');
      expect(await s.publishFileIfAbsent(`${root}/src`, `${root}/taken`)).toBe('exists');
      expect(text(await s.readFile(`${root}/taken`))).toBe('other');
      await s.removeFile(`${root}/src`);
      expect(text(await s.readFile(`${root}/dst`))).toBe('content');
      expect(await codeOf(s.publishFileIfAbsent(`${root}/src`, `${root}/dst2`))).toBe('ENOENT');
    });

    it('rename replaces a file and moves directories', async () => {
      const { storage: s, root } = await subject();
      await s.writeFileDurable(`${root}/a`, 'A');
      await s.writeFileDurable(`${root}/b`, 'B');
      await s.rename(`${root}/a`, `${root}/b`);
      expect(text(await s.readFile(`${root}/b`))).toBe('A');
      expect(await s.exists(`${root}/a`)).toBe(false);
      await s.makeDirs(`${root}/d1/sub`);
      await s.writeFileDurable(`${root}/d1/sub/f`, 'F');
      await s.rename(`${root}/d1`, `${root}/d2`);
      expect(text(await s.readFile(`${root}/d2/sub/f`))).toBe('F');
      expect(await codeOf(s.rename(`${root}/none`, `${root}/x`))).toBe('ENOENT');
      await s.makeDir(`${root}/full`);
      await s.writeFileDurable(`${root}/full/f`, '');
      expect(await codeOf(s.rename(`${root}/d2`, `${root}/full`))).toMatch(/^(ENOTEMPTY|EEXIST)$/);
    });

    it('removeFile and removeTree', async () => {
      const { storage: s, root } = await subject();
      await s.makeDirs(`${root}/t/u`);
      await s.writeFileDurable(`${root}/t/u/f`, 'x');
      await s.writeFileDurable(`${root}/g`, 'x');
      await s.removeFile(`${root}/g`);
      expect(await codeOf(s.removeFile(`${root}/g`))).toBe('ENOENT');
      await s.removeTree(`${root}/t`);
      await s.removeTree(`${root}/t`);
      expect(await s.list(root)).toEqual([]);
    });

    it('syncFile and syncDir', async () => {
      const { storage: s, root } = await subject();
      await s.writeFileDurable(`${root}/f`, 'x');
      await s.syncFile(`${root}/f`);
      await s.syncDir(root);
      expect(await codeOf(s.syncFile(`${root}/none`))).toBe('ENOENT');
    });
  });
}
