import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { PgbaculaError } from '../errors.js';

/**
 * The compiled worker module. Workers always run compiled JavaScript (dist/workers/index.js),
 * also when the caller runs from TypeScript sources under vitest.
 */
export function workerModulePath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    for (const candidate of [join(dir, 'workers', 'index.js'), join(dir, 'dist', 'workers', 'index.js')]) {
      if (existsSync(candidate)) return candidate;
    }
    dir = dirname(dir);
  }
  throw new PgbaculaError('INTERNAL', 'the compiled worker module dist/workers/index.js is missing', {
    hint: 'Run npm run build.',
  });
}

import { workerCount } from './worker-count.js';

export { workerCount };

export type WorkerPool = Piscina;

export interface WorkerPoolOptions {
  /** The job's parallel_jobs: that many workers, never more than the cores; unset, one a core. */
  readonly parallelJobs?: number | undefined;
}

/** The one way a job gets its workers (backup, verify, restore, bench): the same limits for all. */
export function createWorkerPool(o: WorkerPoolOptions = {}): WorkerPool {
  const threads = workerCount(o.parallelJobs);
  return new Piscina({
    filename: workerModulePath(),
    minThreads: threads,
    maxThreads: threads,
    // Concurrency is bounded by the ordered merge (bytes and tasks in flight), not here.
    maxQueue: 4096,
    idleTimeout: 60_000,
    // Workers keep little alive between tasks (their buffers are recycled, results transferred):
    // a small young generation keeps each worker's heap small instead of V8's 48 MiB default.
    resourceLimits: { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 256 },
  });
}
