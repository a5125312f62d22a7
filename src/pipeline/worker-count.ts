import { availableParallelism } from 'node:os';

/** parallel_jobs workers, never more than the cores: more threads only add contention. */
export function workerCount(parallelJobs: number | undefined): number {
  const cores = availableParallelism();
  return Math.max(1, Math.min(parallelJobs ?? cores, cores));
}
