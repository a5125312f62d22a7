/**
 * The worker tasks that read a backup's stored files back — restore (into a target) and verify
 * --repo (to nowhere) — planned for the ordered merge. A small file costs less to restore than a
 * round trip to a worker, so files of up to BATCH_FILE_MAX travel in batches (restoreBatch), as
 * the backup sends them; a batch of files from one bundle opens the bundle once.
 */
import type { ManifestFile } from '../format/backup-manifest.js';
import type { PlannedTask } from '../pipeline/ordered-merge.js';
import type { WorkerPool } from '../pipeline/pool.js';
import type { RestoreFileResult, RestoreFileTask } from '../../workers/restore-file.js';
import type { CombineFileResult, CombineFileTask } from '../../workers/combine-file.js';

export const BATCH_FILE_MAX = 256 * 1024;
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_COUNT = 128;

/** What one manifest entry needs: its stored file decoded and checked, or a chain rebuild. */
export type StoredFileJob =
  | { readonly kind: 'restore'; readonly task: RestoreFileTask }
  | { readonly kind: 'combine'; readonly task: CombineFileTask; readonly bytes: number };

export interface StoredFileOutcome {
  readonly f: ManifestFile;
  readonly r: RestoreFileResult | CombineFileResult;
}

/**
 * One planned task per large file or chain rebuild, one per batch of small files; each yields
 * the outcomes of its files in order. `rangeSize` caps what one task counts as in flight.
 */
export function* storedFileTasks(
  pool: WorkerPool,
  jobs: Iterable<{ readonly f: ManifestFile; readonly job: StoredFileJob }>,
  rangeSize: number,
): Generator<PlannedTask<StoredFileOutcome[]>> {
  let batch: { f: ManifestFile; task: RestoreFileTask }[] = [];
  let batchBytes = 0;
  const flush = function* (): Generator<PlannedTask<StoredFileOutcome[]>> {
    if (batch.length === 0) return;
    const files = batch;
    batch = [];
    const bytes = batchBytes;
    batchBytes = 0;
    yield {
      bytes,
      start: async () => {
        const results = (await pool.run({ tasks: files.map((b) => b.task) }, { name: 'restoreBatch' })) as RestoreFileResult[];
        return files.map((b, i) => ({ f: b.f, r: results[i]! }));
      },
    };
  };
  for (const { f, job } of jobs) {
    if (job.kind === 'restore' && job.task.size <= BATCH_FILE_MAX) {
      batch.push({ f, task: job.task });
      batchBytes += job.task.size;
      if (batchBytes >= BATCH_BYTES || batch.length >= BATCH_COUNT) yield* flush();
      continue;
    }
    yield* flush();
    if (job.kind === 'restore') {
      const task = job.task;
      yield { bytes: Math.min(task.size, rangeSize), start: async () => [{ f, r: (await pool.run(task, { name: 'restoreFile' })) as RestoreFileResult }] };
    } else {
      const task = job.task;
      yield { bytes: Math.min(job.bytes, rangeSize), start: async () => [{ f, r: (await pool.run(task, { name: 'combineFile' })) as CombineFileResult }] };
    }
  }
  yield* flush();
}
