import { PgbaculaError } from '../errors.js';
import { combineRangeHashes, fileRanges } from '../format/content-hash.js';
import type { ManifestFile } from '../format/backup-manifest.js';
import type { BatchResult, IncrementalRange, RangeResult, RangeTask } from '../../workers/backup-range.js';
import type { IncrementalPlan, PlanEntry } from './cluster-walk.js';
import type { ItemSink } from '../item/item.js';
import type { JobLog } from '../item/job-log.js';
import { loadKernels } from '../format/kernels.js';
import { encodedBoundBytes } from '../format/lz4-frame.js';
import { DEFAULT_BLOCK_SIZE } from '../format/page.js';
import { orderedMerge, type MergeStats, type PlannedTask } from './ordered-merge.js';
import type { WorkerPool } from './pool.js';
import type { ProgressTracker } from '../item/job-log.js';

export const DEFAULT_RANGE_SIZE = 8 * 1024 * 1024;

export interface EmitOptions {
  readonly pool: WorkerPool;
  readonly sink: ItemSink;
  readonly log: JobLog;
  readonly progress?: ProgressTracker;
  readonly verifyPages: boolean;
  readonly compress: boolean;
  readonly acceleration?: number;
  readonly rangeSize?: number;
  /** Bytes of results in flight between the workers and the sink. */
  readonly windowBytes?: number;
  readonly signal?: AbortSignal;
  /** Only verify pages (no hash, no data to the sink): verify --pgdata. */
  readonly verifyOnly?: boolean;
  /** Receives each manifest entry as it is made (then `files` stays empty: memory stays flat). */
  readonly onFile?: (f: ManifestFile) => void;
}

export interface ChecksumFailure {
  readonly path: string;
  readonly blkno: number;
  readonly stored: number;
  readonly computed: number;
}

export interface EmitResult {
  readonly files: ManifestFile[];
  readonly pagesChecked: number;
  readonly newPages: number;
  readonly tornPages: number;
  readonly failures: ChecksumFailure[];
  readonly vanished: string[];
  readonly rawBytes: number;
  readonly merge: MergeStats;
}

type Step =
  | { readonly kind: 'release'; readonly buffer: ArrayBuffer }
  | { readonly kind: 'entry'; readonly entry: PlanEntry }
  | {
      readonly kind: 'range';
      readonly entry: PlanEntry;
      readonly index: number;
      readonly count: number;
      readonly result: RangeResult;
      /** The result lies in a range buffer of its own, to be recycled once written (a batch's shared buffer comes back once, as a release). */
      readonly ownBuffer: boolean;
    };

/**
 * The part of an incremental file a range covers: header bytes, then whole pages (the header is
 * a whole number of blocks when there are pages, and ranges are too).
 */
export function incrementalSlice(plan: IncrementalPlan, offset: number, length: number): IncrementalRange {
  const h = plan.header.length;
  // Copies (slice), not views: a task is cloned to its worker with its whole underlying buffer.
  const header = offset < h ? plan.header.slice(offset, Math.min(h, offset + length)) : new Uint8Array(0);
  const firstPage = Math.max(0, offset - h) / DEFAULT_BLOCK_SIZE;
  const endPage = Math.max(0, offset + length - h) / DEFAULT_BLOCK_SIZE;
  return { header, blocks: plan.blocks.slice(firstPage, endPage) };
}

/**
 * Stream every plan entry through the worker pool to the sink, strictly in plan order: ranges of
 * a file are read/verified/hashed/compressed in parallel and reassembled in order by the merge;
 * the sink's drain is the only throttle.
 */
export async function emitFiles(entries: Iterable<PlanEntry>, o: EmitOptions): Promise<EmitResult> {
  const rangeSize = o.rangeSize ?? DEFAULT_RANGE_SIZE;
  const threads = o.pool.options.maxThreads;
  // Two ranges per worker keep every worker fed while the sink writes; more only costs memory.
  const windowBytes = o.windowBytes ?? Math.max(3, threads * 2) * rangeSize;
  const kernels = loadKernels();
  // Recycled result buffers for large ranges (first-touch page faults of fresh 8 MiB buffers
  // cost more than the copy into them); small files get exact-size buffers.
  const bufferBytes = encodedBoundBytes(kernels, rangeSize);
  const spare: ArrayBuffer[] = [];
  const merge: MergeStats = { peakBytesInFlight: 0, peakTasksInFlight: 0 };

  const rangeTask = (entry: PlanEntry, offset: number, length: number): RangeTask => ({
    absPath: entry.absPath,
    offset,
    length,
    verifyPages: o.verifyPages && entry.verifyPages,
    firstBlkno: entry.firstBlock + (entry.incremental ? 0 : offset / DEFAULT_BLOCK_SIZE),
    compress: o.compress,
    acceleration: o.acceleration ?? 1,
    rangeSize,
    ...(o.verifyOnly ? { verifyOnly: true } : {}),
    ...(entry.incremental ? { incremental: incrementalSlice(entry.incremental, offset, length) } : {}),
  });

  // Small files travel in batches: one worker round trip per file costs more than reading it.
  const BATCH_FILE_MAX = 256 * 1024;
  // A batch fills at most one pooled buffer: the same size as a range's, so one pool serves both.
  const BATCH_BYTES = rangeSize - 2 * BATCH_FILE_MAX;
  const BATCH_COUNT = 128;

  const batchBufferBytes = bufferBytes;
  const spareBatch = spare;

  function batchTask(batch: { entry: PlanEntry; task: RangeTask | undefined }[], bytes: number): PlannedTask<Step[]> {
    const withData = !o.verifyOnly && batch.some((b) => b.task !== undefined);
    return {
      bytes: withData ? batchBufferBytes : bytes,
      start: async () => {
        const work = batch.filter((b) => b.task !== undefined).map((b) => b.task!);
        const buffer = withData ? (spareBatch.pop() ?? new ArrayBuffer(batchBufferBytes)) : undefined;
        const done = work.length
          ? ((await o.pool.run(buffer ? { tasks: work, buffer } : { tasks: work }, { name: 'backupBatch', ...(buffer ? { transferList: [buffer] } : {}), ...(o.signal ? { signal: o.signal } : {}) })) as BatchResult)
          : { results: [] as RangeResult[], ...(buffer ? { buffer } : {}) };
        let i = 0;
        const steps = batch.map((b): Step => (b.task ? { kind: 'range', entry: b.entry, index: 0, count: 1, result: done.results[i++]!, ownBuffer: false } : { kind: 'entry', entry: b.entry }));
        // The batch buffer goes back to the pool once the last of its files is written.
        if (done.buffer) steps.push({ kind: 'release', buffer: done.buffer });
        return steps;
      },
    };
  }

  function* tasks(): Generator<PlannedTask<Step[]>> {
    let batch: { entry: PlanEntry; task: RangeTask | undefined }[] = [];
    let batchBytes = 0;
    const flush = function* () {
      if (batch.length) yield batchTask(batch, batchBytes);
      batch = [];
      batchBytes = 0;
    };
    for (const entry of entries) {
      if (entry.type !== 'file') {
        batch.push({ entry, task: undefined });
        continue;
      }
      if (entry.size <= BATCH_FILE_MAX) {
        batch.push({ entry, task: rangeTask(entry, 0, entry.size) });
        batchBytes += entry.size;
        if (batchBytes >= BATCH_BYTES || batch.length >= BATCH_COUNT) yield* flush();
        continue;
      }
      yield* flush();
      const ranges = fileRanges(entry.size, rangeSize);
      for (let index = 0; index < ranges.length; index++) {
        const [offset, length] = ranges[index]!;
        const task = rangeTask(entry, offset, length);
        const pooled = !o.verifyOnly;
        yield {
          bytes: pooled ? bufferBytes : length,
          start: async () => {
            const buffer = pooled ? (spare.pop() ?? new ArrayBuffer(bufferBytes)) : undefined;
            const args = buffer ? { ...task, buffer } : task;
            const result = (await o.pool.run(args, { name: 'backupRange', ...(buffer ? { transferList: [buffer] } : {}), ...(o.signal ? { signal: o.signal } : {}) })) as RangeResult;
            return [{ kind: 'range' as const, entry, index, count: ranges.length, result, ownBuffer: buffer !== undefined }];
          },
        };
      }
    }
    yield* flush();
  }

  const files: ManifestFile[] = [];
  const record = o.onFile ?? ((f: ManifestFile) => void files.push(f));
  const failures: ChecksumFailure[] = [];
  const vanished: string[] = [];
  let pagesChecked = 0;
  let newPages = 0;
  let tornPages = 0;
  let rawBytes = 0;
  let hashes: string[] = [];
  let storedSize = 0;
  let filePages = { checked: 0, fresh: 0, torn: 0, failed: [] as number[] };
  let skipping: string | undefined;
  const encoding = o.compress ? 'lz4' : 'raw';

  for await (const steps of orderedMerge(tasks(), { windowBytes, maxTasks: Math.max(8, threads * 8) }, merge)) for (const step of steps) {
    if (o.signal?.aborted) throw new PgbaculaError('CANCELLED', 'cancelled');
    if (step.kind === 'release') {
      spareBatch.push(step.buffer);
      continue;
    }
    const e = step.entry;
    const mtime = o.verifyOnly ? '' : new Date(e.mtimeMs).toISOString();
    if (step.kind === 'entry') {
      const header = { path: e.path, type: e.type, mode: e.mode, mtimeMs: e.mtimeMs, size: 0, encoding: 'raw' as const, ...(e.linkTarget ? { linkTarget: e.linkTarget } : {}) };
      await o.sink.begin(header);
      await o.sink.end({ hash: '', rawSize: 0, storedSize: 0 });
      if (!o.verifyOnly) record({ path: e.path, type: e.type, size: 0, mode: e.mode, mtime, ...(e.linkTarget ? { linkTarget: e.linkTarget } : {}) });
      continue;
    }
    const r = step.result;
    if (step.index === 0) {
      if (r.vanished) {
        if (step.ownBuffer && r.data.byteLength === bufferBytes) spare.push(r.data);
        // Dropped since the walk: the server's base backup skips such files too.
        vanished.push(e.path);
        skipping = e.path;
        continue;
      }
      skipping = undefined;
      hashes = [];
      storedSize = 0;
      filePages = { checked: 0, fresh: 0, torn: 0, failed: [] };
      await o.sink.begin({ path: e.path, type: 'file', mode: e.mode, mtimeMs: e.mtimeMs, size: e.size, encoding });
    } else if (skipping === e.path) {
      continue;
    }
    const data = new Uint8Array(r.data, r.dataOffset, r.dataLength);
    await o.sink.write(data);
    // The sink is done with it: back to the pool for the next range.
    if (step.ownBuffer && r.data.byteLength === bufferBytes) spare.push(r.data);
    o.progress?.add(r.rawLength);
    storedSize += data.length;
    rawBytes += r.rawLength;
    hashes.push(r.hash);
    filePages.checked += r.pagesChecked;
    filePages.fresh += r.newPages;
    filePages.torn += r.tornPages;
    for (const f of r.failures) {
      filePages.failed.push(f.blkno);
      failures.push({ path: e.path, ...f });
    }
    if (step.index === step.count - 1) {
      const hash = o.verifyOnly ? '' : combineRangeHashes(hashes, (b) => kernels.hash(b));
      const pages = e.verifyPages && o.verifyPages
        ? { pagesChecked: filePages.checked, newPages: filePages.fresh, failedBlocks: filePages.failed, tornPages: filePages.torn }
        : undefined;
      const placed = await o.sink.end({ hash, rawSize: e.size, storedSize, ...(pages ? { pageCheck: pages } : {}) });
      pagesChecked += filePages.checked;
      newPages += filePages.fresh;
      tornPages += filePages.torn;
      const incremental = e.incremental ? { incremental: { blocks: e.incremental.blocks.length, truncationBlocks: e.incremental.truncationBlocks, fileSize: e.incremental.fileSize } } : {};
      if (!o.verifyOnly) record({ path: e.path, type: 'file', size: e.size, mode: e.mode, mtime, hash, ...(hashes.length > 1 ? { rangeHashes: hashes.join('') } : {}), stored: encoding, storedSize, ...(placed?.bundle ? { bundle: placed.bundle } : {}), ...(pages ? { pages } : {}), ...incremental });
    }
  }
  return { files, pagesChecked, newPages, tornPages, failures, vanished, rawBytes, merge };
}
