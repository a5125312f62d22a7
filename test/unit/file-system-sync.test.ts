/**
 * The restore's deferred durability (src/os/file-system-sync.ts, the addon's startWriteback and
 * syncFileSystem): one descriptor per file system, a sync that waits for what was written, errors
 * that name the directory, and the fallback (no addon: every file fsynced by the workers).
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKernels } from '../../src/format/kernels.js';
import { FileSystemSync } from '../../src/os/file-system-sync.js';
import { PgbaculaError } from '../../src/errors.js';
import { TargetDurability } from '../../workers/target-write.js';

const root = mkdtempSync(join(tmpdir(), 'pgbacula-fs-sync-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Dirty (not yet written back) bytes of the whole machine, from /proc/meminfo. */
function dirtyBytes(): number {
  const m = /^Dirty:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return Number(m![1]) * 1024;
}

describe('FileSystemSync', () => {
  it('keeps one descriptor per file system, and syncs what was written there', async () => {
    const a = join(root, 'a');
    const b = join(root, 'a', 'b');
    mkdirSync(b, { recursive: true });
    // /dev/shm is a tmpfs on Debian: another file system than the scratch directory's.
    const other = statSync('/dev/shm').dev !== statSync(root).dev ? ['/dev/shm'] : [];
    const s = FileSystemSync.open([a, b, ...other]);
    expect(s).toBeDefined();
    expect(s!.fileSystems).toBe(1 + other.length);
    // 64 MiB written without fsync: the machine's dirty bytes drop by about that much once the
    // sync has run. Other tests may dirty pages meanwhile: the best of three tries counts.
    const chunk = Buffer.alloc(1024 * 1024, 0x5a);
    let dropped = 0;
    for (let attempt = 0; attempt < 3 && dropped < 48 * 1024 * 1024; attempt++) {
      const fd = openSync(join(b, `data-${attempt}`), 'w');
      for (let i = 0; i < 64; i++) writeSync(fd, chunk);
      closeSync(fd);
      const before = dirtyBytes();
      await s!.sync();
      dropped = Math.max(dropped, before - dirtyBytes());
    }
    s!.close();
    expect(dropped).toBeGreaterThanOrEqual(48 * 1024 * 1024);
  });

  it('refuses a path that is not a directory, closing what it had opened', () => {
    const file = join(root, 'plain');
    closeSync(openSync(file, 'w'));
    expect(() => FileSystemSync.open([root, file])).toThrow(/ENOTDIR/);
    expect(() => FileSystemSync.open([join(root, 'missing')])).toThrow(/ENOENT/);
  });

  it('is not offered without the addon (PGBACULA_KERNELS=fallback): the workers fsync each file then', () => {
    expect(FileSystemSync.open([root], 'fallback')).toBeUndefined();
    expect(loadKernels('fallback').startWriteback).toBeUndefined();
  });

  it('reports a failed sync as an I/O error naming the directory', async () => {
    const s = FileSystemSync.open([root])!;
    s.close(); // its descriptor is gone: syncfs fails with EBADF
    const e = await s.sync().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(PgbaculaError);
    expect((e as PgbaculaError).code).toBe('IO');
    expect((e as PgbaculaError).message).toContain(`the file system holding ${root} could not write what was restored to it: EBADF`);
  });
});

describe('TargetDurability (a restored file in a worker)', () => {
  it('starts writeback every 8 MiB and leaves the fsync to the file-system sync when deferred; fsyncs otherwise', () => {
    const calls: string[] = [];
    const kernels = { ...loadKernels(), startWriteback: (fd: number, off: number, len: number) => void calls.push(`${off}+${len}`) };
    const fd = openSync(join(root, 'target'), 'w');
    try {
      const deferred = new TargetDurability(fd, true, kernels);
      for (let end = 1024 * 1024; end <= 20 * 1024 * 1024; end += 1024 * 1024) deferred.wrote(end);
      deferred.settle({ mode: 0o600, mtimeMs: Date.now() });
      expect(calls).toEqual([`0+${8 * 1024 * 1024}`, `${8 * 1024 * 1024}+${8 * 1024 * 1024}`, `${16 * 1024 * 1024}+0`]);
      calls.length = 0;
      const small = new TargetDurability(fd, true, kernels);
      small.wrote(4096);
      small.settle({ mode: 0o600, mtimeMs: Date.now() });
      expect(calls).toEqual([]); // small files: the final sync writes them
      const fsynced = new TargetDurability(fd, false, kernels);
      fsynced.wrote(64 * 1024 * 1024);
      fsynced.settle({ mode: 0o600, mtimeMs: Date.now() });
      expect(calls).toEqual([]);
    } finally {
      closeSync(fd);
    }
  });

  it("the addon's startWriteback accepts a real descriptor and throws the errno for a bad one", () => {
    const k = loadKernels();
    expect(k.kind).toBe('native');
    const fd = openSync(join(root, 'wb'), 'w');
    writeSync(fd, Buffer.alloc(1 << 20, 1));
    expect(() => k.startWriteback!(fd, 0, 0)).not.toThrow();
    closeSync(fd);
    expect(() => k.startWriteback!(fd, 0, 0)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});
