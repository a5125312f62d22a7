import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { posixStorage } from '../../src/storage/posix.js';
import { storageContract } from './storage-contract.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

storageContract('POSIX', async () => {
  const root = mkdtempSync(join(tmpdir(), 'pgbacula-storage-'));
  dirs.push(root);
  return { storage: posixStorage, root };
});

describe('POSIX storage specifics', () => {
  it('stat follows symbolic links; a link that leads nowhere is a "symlink" that exists', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pgbacula-storage-'));
    dirs.push(root);
    mkdirSync(join(root, 'real'));
    symlinkSync(join(root, 'real'), join(root, 'alias'));
    symlinkSync(join(root, 'gone'), join(root, 'dangling'));
    expect(await posixStorage.stat(join(root, 'alias'))).toMatchObject({ kind: 'directory' });
    expect(await posixStorage.stat(join(root, 'dangling'))).toMatchObject({ kind: 'symlink' });
    expect(await posixStorage.exists(join(root, 'dangling'))).toBe(true);
  });

  it('writes new files with the mode asked (0640 by default) and leaves no temporary name', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pgbacula-storage-'));
    dirs.push(root);
    await posixStorage.writeFileDurable(join(root, 'a'), 'x');
    await posixStorage.publishIfAbsent(join(root, 'b'), 'x', { mode: 0o600 });
    const w = await posixStorage.createFile(join(root, 'c'), { exclusive: true });
    await w.close();
    expect(statSync(join(root, 'a')).mode & 0o777).toBe(0o640);
    expect(statSync(join(root, 'b')).mode & 0o777).toBe(0o600);
    expect(statSync(join(root, 'c')).mode & 0o777).toBe(0o640);
    expect(readdirSync(root).sort()).toEqual(['a', 'b', 'c']);
  });
});
