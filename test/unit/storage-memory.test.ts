import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../../src/storage/memory.js';
import { errorCode } from '../../src/storage/storage.js';
import { storageContract } from './storage-contract.js';

storageContract('memory', async () => {
  const storage = new MemoryStorage();
  await storage.makeDirs('/work');
  return { storage, root: '/work' };
});

describe('MemoryStorage fault hooks', () => {
  it('a full disk in the middle of a durable write leaves neither the final name nor a temporary file', async () => {
    const s = new MemoryStorage();
    await s.makeDirs('/r');
    await s.writeFileDurable('/r/m', 'old');
    s.failOn({ op: 'write', code: 'ENOSPC' });
    const e = await s.writeFileDurable('/r/m', 'new content').then(() => undefined, (x: unknown) => x);
    expect(errorCode(e)).toBe('ENOSPC');
    expect(s.paths()).toEqual(['/r', '/r/m']);
    expect((await s.readFile('/r/m')).toString()).toBe('old');
    s.failOn({ op: 'write', nth: 1 });
    await expect(s.publishIfAbsent('/r/p', 'data')).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(s.paths()).toEqual(['/r', '/r/m']);
  });

  it('fails the nth matching call only, once', async () => {
    const s = new MemoryStorage();
    await s.makeDirs('/r');
    s.failOn({ op: 'sync', nth: 2, code: 'EIO', path: '/r/b' });
    await s.writeFileDurable('/r/a', 'a');
    const w = await s.createFile('/r/b');
    await w.sync();
    await expect(w.sync()).rejects.toMatchObject({ code: 'EIO' });
    await w.sync();
    await w.close();
  });

  it('hard links share their content', async () => {
    const s = new MemoryStorage();
    await s.makeDirs('/r');
    const w = await s.createFile('/r/a');
    await w.write(Buffer.from('12'));
    expect(await s.publishFileIfAbsent('/r/a', '/r/b')).toBe('published');
    await w.write(Buffer.from('34'));
    await w.close();
    expect((await s.readFile('/r/b')).toString()).toBe('1234');
  });
});
