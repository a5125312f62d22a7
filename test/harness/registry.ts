import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { postmasterPid } from './cluster.js';

interface Destroyable {
  readonly pgdata: string;
  readonly dir: string;
}

const live = new Set<Destroyable>();
let root: string | undefined;

/**
 * All test servers live under one root per run (set by the global setup in
 * PGBACULA_TEST_ROOT) so the teardown can find and kill any that a failed test left behind.
 */
export function testRoot(): string {
  if (root) return root;
  const fromSetup = process.env.PGBACULA_TEST_ROOT;
  if (fromSetup) {
    mkdirSync(fromSetup, { recursive: true });
    root = fromSetup;
  } else {
    root = mkdtempSync(join(tmpdir(), 'pgbacula-test-'));
  }
  chmodSync(root, 0o755);
  return root;
}

export function registerForCleanup(c: Destroyable): void {
  live.add(c);
}

export function unregister(c: Destroyable): void {
  live.delete(c);
}

// Last resort when a worker exits without afterAll (crash, timeout): kill and remove synchronously.
process.on('exit', () => {
  for (const c of live) {
    const pid = postmasterPid(c.pgdata);
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(c.dir, { recursive: true, force: true });
  }
});
