import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
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
