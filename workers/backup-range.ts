import { closeSync, openSync, readSync } from 'node:fs';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { createPageVerifier } from '../src/format/page-checksum-wasm.js';
import type { PageVerifier } from '../src/format/page-checksum.js';
import { createLz4EncodeScratch, encodeBlocks, encodedBoundBytes, type Lz4EncodeScratch } from '../src/format/lz4-frame.js';
import { DEFAULT_BLOCK_SIZE as BLCKSZ } from '../src/format/page.js';
import { loadKernels, type Kernels } from '../src/format/kernels.js';
import { hashHex } from '../src/format/content-hash.js';

/** One range of one file: read → verify pages → hash → compress. */
export interface RangeTask {
  readonly absPath: string;
  readonly offset: number;
  /** Bytes of this range as planned (from the file size at walk time). */
  readonly length: number;
  readonly verifyPages: boolean;
  /** Relation-wide block number of this range's first page. */
  readonly firstBlkno: number;
  readonly compress: boolean;
  readonly acceleration: number;
  readonly rangeSize: number;
  /** Verification only (verify --pgdata, bench): no hash, no data returned. */
  readonly verifyOnly?: boolean;
  /**
   * A recycled buffer (transferred in) to put the stored bytes into: fresh 8 MiB buffers cost
   * more in first-touch page faults than the copy itself. Returned as `data`.
   */
  readonly buffer?: ArrayBuffer;
  /**
   * The range is part of an incremental file (docs/block-incremental.md): its bytes are these
   * header bytes, then the pages of these blocks of the relation file (relative numbers;
   * `firstBlkno` is then the file's first block). Otherwise the range is the file's own bytes.
   */
  readonly incremental?: IncrementalRange;
}

export interface IncrementalRange {
  readonly header: Uint8Array;
  readonly blocks: Uint32Array;
}

export interface RangeFailure {
  readonly blkno: number;
  readonly stored: number;
  readonly computed: number;
}

export interface RangeResult {
  /** Holds the stored bytes (raw, or LZ4 block records) at [dataOffset, dataOffset + dataLength). Transferred. */
  readonly data: ArrayBuffer;
  readonly dataOffset: number;
  readonly dataLength: number;
  readonly rawLength: number;
  /** xxh3-64 of this range's raw bytes, 16 hex digits. */
  readonly hash: string;
  readonly pagesChecked: number;
  readonly newPages: number;
  readonly failures: readonly RangeFailure[];
  readonly tornPages: number;
  /** Bytes that were not there any more (file truncated since the walk): zero-filled. */
  readonly zeroFilled: number;
  /** The file is gone (dropped since the walk): nothing was read. */
  readonly vanished: boolean;
}


// Per-thread state: one verifier whose input area (WebAssembly memory) every read goes into,
// one LZ4 scratch, the kernels. Nothing is allocated per task except the result buffer.
let verifier: PageVerifier | undefined;
let scratch: Lz4EncodeScratch | undefined;
let kernels: Kernels | undefined;

function state(rangeSize: number): { verifier: PageVerifier; scratch: Lz4EncodeScratch; kernels: Kernels } {
  kernels ??= loadKernels();
  if (!verifier) verifier = createPageVerifier({ maxBytes: rangeSize });
  else if (verifier.maxBytes < rangeSize) verifier.ensureCapacity(rangeSize);
  scratch ??= createLz4EncodeScratch(kernels, rangeSize);
  return { verifier, scratch, kernels };
}

function readFully(fd: number, into: Uint8Array, length: number, position: number): number {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, into, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

interface PageStats {
  pagesChecked: number;
  newPages: number;
  tornPages: number;
  readonly failures: RangeFailure[];
}

/**
 * Verify the pages read into the verifier's input (`bytes` of them, read from file offset
 * `offset`, the first being relation block `firstBlkno`).
 */
function verifyPages(verifier: PageVerifier, fd: number, raw: Uint8Array, bytes: number, offset: number, firstBlkno: number, stats: PageStats): void {
  const v = verifier.verify(bytes, firstBlkno);
  stats.pagesChecked += v.checkedPages;
  stats.newPages += v.newPages;
  if (v.failures.length === 0) return;
  // Re-read each failing page: if its bytes changed, a concurrent write tore our first read (WAL
  // replay fixes it: full-page writes are forced during a backup). If the bytes are the same,
  // the page on disk is corrupt — whatever its pd_lsn says.
  const again = new Uint8Array(BLCKSZ);
  for (const f of v.failures) {
    const at = f.pageIndex * BLCKSZ;
    const n = readFully(fd, again, BLCKSZ, offset + at);
    const before = raw.subarray(at, at + BLCKSZ);
    const same = n === BLCKSZ && Buffer.compare(Buffer.from(again.buffer, 0, BLCKSZ), Buffer.from(before.buffer, before.byteOffset, BLCKSZ)) === 0;
    if (same) stats.failures.push({ blkno: firstBlkno + f.pageIndex, stored: f.stored, computed: f.computed });
    else stats.tornPages++;
  }
}

let incrementalScratch: Uint8Array | undefined;

/**
 * The bytes of a range of an incremental file: its header bytes, then the changed pages, read
 * run by run of consecutive blocks (one read and one checksum pass per run).
 */
function assembleIncremental(task: RangeTask, inc: IncrementalRange, fd: number, verifier: PageVerifier, stats: PageStats): { raw: Uint8Array; zeroFilled: number } {
  if (!incrementalScratch || incrementalScratch.length < task.rangeSize) incrementalScratch = new Uint8Array(task.rangeSize);
  const raw = incrementalScratch.subarray(0, task.length);
  raw.set(inc.header, 0);
  let at = inc.header.length;
  let zeroFilled = 0;
  const input = verifier.input;
  const blocks = inc.blocks;
  for (let i = 0; i < blocks.length; ) {
    let j = i + 1;
    while (j < blocks.length && blocks[j] === blocks[j - 1]! + 1) j++;
    const bytes = (j - i) * BLCKSZ;
    const offset = blocks[i]! * BLCKSZ;
    const got = readFully(fd, input, bytes, offset);
    // Truncated since the plan: zeros, as for a whole file (WAL replay restores the truth).
    if (got < bytes) {
      input.fill(0, got, bytes);
      zeroFilled += bytes - got;
    }
    const run = input.subarray(0, bytes);
    if (task.verifyPages) verifyPages(verifier, fd, run, bytes, offset, task.firstBlkno + blocks[i]!, stats);
    raw.set(run, at);
    at += bytes;
    i = j;
  }
  if (at !== task.length) throw new Error(`incremental range of ${task.absPath} holds ${at} bytes, planned ${task.length}`);
  return { raw, zeroFilled };
}

/** Where a range's stored bytes go: a region of a recycled buffer, or a fresh buffer when absent or too small. */
function outputFor(target: Uint8Array | undefined, need: number): Uint8Array {
  return target !== undefined && target.length >= need ? target : new Uint8Array(need);
}

/**
 * Read, verify, hash and (optionally) compress one range; the stored bytes land in `target`
 * when it is big enough. Returns the result (with `data` = the buffer written) and whether
 * `target` was used.
 */
function processRange(task: RangeTask, target: Uint8Array | undefined): { result: RangeResult; out: Uint8Array | undefined } {
  const s = state(task.rangeSize);
  let fd: number;
  try {
    fd = openSync(task.absPath, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      return { result: { data: new ArrayBuffer(0), dataOffset: 0, dataLength: 0, rawLength: 0, hash: '', pagesChecked: 0, newPages: 0, failures: [], tornPages: 0, zeroFilled: 0, vanished: true }, out: undefined };
    }
    throw e;
  }
  try {
    const pages: PageStats = { pagesChecked: 0, newPages: 0, tornPages: 0, failures: [] };
    let raw: Uint8Array;
    let zeroFilled: number;
    if (task.incremental) {
      ({ raw, zeroFilled } = assembleIncremental(task, task.incremental, fd, s.verifier, pages));
    } else {
      const input = s.verifier.input;
      const got = readFully(fd, input, task.length, task.offset);
      // A file that shrank since the walk is padded with zeros to its announced size, as the
      // server's own base backup does: WAL replay restores the truth.
      if (got < task.length) input.fill(0, got, task.length);
      raw = input.subarray(0, task.length);
      zeroFilled = task.length - got;
      if (task.verifyPages) verifyPages(s.verifier, fd, raw, task.length - (task.length % BLCKSZ), task.offset, task.firstBlkno, pages);
    }
    const { pagesChecked, newPages, tornPages, failures } = pages;
    const common = { rawLength: task.length, pagesChecked, newPages, failures, tornPages, zeroFilled, vanished: false };
    if (task.verifyOnly) {
      return { result: { data: new ArrayBuffer(0), dataOffset: 0, dataLength: 0, hash: '', ...common }, out: undefined };
    }
    const hash = hashHex(s.kernels.hash(raw));
    let out: Uint8Array;
    let dataLength: number;
    if (task.compress && task.length > 0) {
      out = outputFor(target, encodedBoundBytes(s.kernels, task.length));
      const records = encodeBlocks(raw, s.kernels, s.scratch, { acceleration: task.acceleration, into: out });
      dataLength = records.reduce((n, r) => n + r.length, 0);
    } else {
      // The read landed in WebAssembly memory, which cannot be transferred: one copy out.
      out = outputFor(target, task.length);
      out.set(raw);
      dataLength = task.length;
    }
    return { result: { data: out.buffer as ArrayBuffer, dataOffset: out.byteOffset, dataLength, hash, ...common }, out };
  } finally {
    closeSync(fd);
  }
}

export function backupRange(task: RangeTask): unknown {
  const { result } = processRange(task, task.buffer ? new Uint8Array(task.buffer) : undefined);
  const transfer = result.data.byteLength > 0 ? [result.data] : task.buffer ? [task.buffer] : [];
  // Piscina transfers the listed buffers instead of copying them.
  return move({ [transferableSymbol]: transfer, [valueSymbol]: result });
}

/**
 * Many small files in one round trip, their stored bytes packed one after another into one
 * recycled batch buffer (no buffer per file: 100,000 small ArrayBuffers are what made memory
 * grow with the file count).
 */
export function backupBatch(batch: { readonly tasks: readonly RangeTask[]; readonly buffer?: ArrayBuffer }): unknown {
  const results: RangeResult[] = [];
  const transfer = new Set<ArrayBuffer>();
  const shared = batch.buffer ? new Uint8Array(batch.buffer) : undefined;
  if (batch.buffer) transfer.add(batch.buffer);
  let at = 0;
  for (const t of batch.tasks) {
    const { result, out } = processRange(t, shared?.subarray(at));
    results.push(result);
    if (out !== undefined && shared !== undefined && out.buffer === shared.buffer) at += result.dataLength;
    else if (result.data.byteLength > 0) transfer.add(result.data);
  }
  // The batch buffer always comes back, also when no result lies in it (a batch of empty files):
  // the caller reuses it instead of allocating the next one.
  const value: BatchResult = { results, ...(batch.buffer ? { buffer: batch.buffer } : {}) };
  return move({ [transferableSymbol]: [...transfer], [valueSymbol]: value });
}

export interface BatchResult {
  readonly results: RangeResult[];
  /** The batch's buffer, handed back. */
  readonly buffer?: ArrayBuffer;
}
