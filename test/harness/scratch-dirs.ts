import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/**
 * Throw-away directories for a unit test file, removed after its tests: `tmp()` makes one,
 * `file(dir, name, bytes)` writes a file there (making the directory) and returns its path.
 */
export function scratchDirs(prefix: string): { tmp(): string; file(dir: string, name: string, bytes: Uint8Array): string } {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return {
    tmp() {
      const d = mkdtempSync(join(tmpdir(), `pgbacula-${prefix}-`));
      dirs.push(d);
      return d;
    },
    file(dir, name, bytes) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, name), bytes);
      return join(dir, name);
    },
  };
}
