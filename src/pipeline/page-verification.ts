/**
 * Page checksums of a cluster's relation files, by one of two engines with the same findings: the
 * native addon on its own threads (native/kernels/page_verify.c: no copy into JavaScript memory),
 * or the worker pipeline (emitFiles with verifyOnly) where the addon is not built. Used by
 * `verify --pgdata` and by phase 6 of a restore.
 */
import { PgbaculaError } from '../errors.js';
import { DEFAULT_BLOCK_SIZE as BLCKSZ } from '../format/page.js';
import type { NativePageVerifier } from '../format/kernels.js';
import type { JobLog, ProgressTracker } from '../item/job-log.js';
import type { PlanEntryList } from './cluster-walk.js';
import type { WorkerPool } from './pool.js';
import { workerCount } from './worker-count.js';

const nullSink = { begin: async () => undefined, write: async () => undefined, end: async () => undefined };

/** What one verification of a cluster's pages found, whichever engine checked them. */
export interface PageVerification {
  pagesChecked: number;
  newPages: number;
  tornPages: number;
  failures: Array<{ path: string; blkno: number; stored: number; computed: number }>;
  /** Failures beyond those listed (the native engine keeps 10,000). */
  unlisted: number;
  /** Files dropped between the walk and the read. */
  vanished: number;
}

export async function verifyInWorkers(files: PlanEntryList, pool: WorkerPool, log: JobLog, progress?: ProgressTracker): Promise<PageVerification> {
  // Loaded only here: the native engine needs none of the worker pipeline.
  const { emitFiles } = await import('./emit-files.js');
  const r = await emitFiles(files, { pool, sink: nullSink, log, ...(progress ? { progress } : {}), verifyPages: true, compress: false, verifyOnly: true });
  return { pagesChecked: r.pagesChecked, newPages: r.newPages, tornPages: r.tornPages, failures: [...r.failures], unlisted: 0, vanished: 0 };
}

/** Ranges of at most this many bytes: two threads stay busy to the end of a batch. */
const NATIVE_RANGE_BYTES = 64 * 1024 * 1024;
/** Bytes per native call: progress lines and cancellation come between calls. */
const NATIVE_BATCH_BYTES = 4 * 1024 * 1024 * 1024;
/**
 * Files per native call: the paths of a call are held twice (here and copied by the addon), so a
 * cluster of a million relation files is checked in calls of bounded memory.
 */
const NATIVE_BATCH_FILES = 20_000;

export interface NativeVerifyOptions {
  readonly progress?: ProgressTracker | undefined;
  /** Files per native call (NATIVE_BATCH_FILES). */
  readonly batchFiles?: number;
  /** Awaited after each native call; what it throws ends the verification there. */
  readonly afterCall?: () => Promise<void>;
}

export async function verifyNatively(files: PlanEntryList, native: NativePageVerifier, o: NativeVerifyOptions = {}): Promise<PageVerification> {
  const { progress, batchFiles = NATIVE_BATCH_FILES, afterCall } = o;
  const v: PageVerification = { pagesChecked: 0, newPages: 0, tornPages: 0, failures: [], unlisted: 0, vanished: 0 };
  const threads = workerCount(undefined);
  // Each call gets only its own files (renumbered): a multi-terabyte cluster makes many calls.
  let batchPaths: string[] = [];
  let batchIndex: number[] = [];
  let batch: number[] = [];
  let batchBytes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const r = await native.verifyRanges(batchPaths, Float64Array.from(batch), BLCKSZ, threads);
    v.pagesChecked += r.pages;
    v.newPages += r.newPages;
    v.tornPages += r.tornPages;
    v.unlisted += r.failuresDropped;
    for (const f of r.failures) v.failures.push({ path: files.at(batchIndex[f.file]!)!.path, blkno: f.blkno, stored: f.stored, computed: f.computed });
    const unreadable = r.problems.filter((p) => !p.vanished);
    v.vanished += r.problems.length - unreadable.length;
    if (unreadable.length > 0 || r.problemsDropped > 0) {
      const p = unreadable[0];
      throw new PgbaculaError('IO', `${unreadable.length + r.problemsDropped} relation files could not be read${p ? `, first ${batchPaths[p.file]}: ${p.error}` : ''}`, {
        hint: 'Permission denied: run verify as root or as the data directory\'s owner. An I/O error is itself a finding: the disk or file system holding the file needs a look.',
      });
    }
    progress?.add(batchBytes);
    await afterCall?.();
    batchPaths = [];
    batchIndex = [];
    batch = [];
    batchBytes = 0;
  };
  for (let i = 0; i < files.length; i++) {
    const e = files.at(i)!;
    // An empty file has no page to check: it costs the call nothing (a file shorter than a page
    // is read, as a file being extended may be).
    if (e.size === 0) continue;
    const local = batchPaths.length;
    batchPaths.push(e.absPath);
    batchIndex.push(i);
    for (let off = 0; off < e.size; off += NATIVE_RANGE_BYTES) {
      const len = Math.min(NATIVE_RANGE_BYTES, e.size - off);
      batch.push(local, e.firstBlock, off, len);
      batchBytes += len;
    }
    if (batchBytes >= NATIVE_BATCH_BYTES || batchPaths.length >= batchFiles) await flush();
  }
  await flush();
  return v;
}
