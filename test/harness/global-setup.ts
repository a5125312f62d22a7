import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killAllUnder } from './cluster.js';

/** One root directory for every server of this run; nothing under it survives the run. */
export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'pgbacula-test-'));
  chmodSync(root, 0o755);
  process.env.PGBACULA_TEST_ROOT = root;
  return () => {
    killAllUnder(root);
    rmSync(root, { recursive: true, force: true });
  };
}
