import { closeSync, constants as fsc, openSync } from 'node:fs';
import { createFileSync, writeAllSync } from '../src/os/new-file.js';
import { combineRangeHashes, fileRanges } from '../src/format/content-hash.js';
import { loadKernels } from '../src/format/kernels.js';
import { incrementalFileSize, incrementalHeaderBytesNeeded, parseIncrementalHeader, reconstructedBlocks, type IncrementalHeader } from '../src/format/incremental-file.js';
import { closeTarget, onTarget, TargetDurability, TargetWriteError } from './target-write.js';
import { openContent, RangeHasher, type ContentStream, type StoredRegion } from './stored-content.js';

/**
 * The restore of one relation segment of a block-incremental chain (docs/block-incremental.md,
 * "Restoring a chain"): each block is taken from the newest backup that holds it, read from the
 * stored files as they are (raw or LZ4 frames) and written in block order; every stored file is
 * read once, start to end, and checked against its content hash. Memory stays bounded whatever
 * the segment's size: only a few chunks of each stored file are held at a time.
 */
export interface CombineSource {
  /** The stored file in the repository (raw or .lz4). */
  readonly storedPath: string;
  /** A file stored in a bundle: where in `storedPath` its bytes are. */
  readonly region?: StoredRegion;
  readonly encoding: 'raw' | 'lz4';
  /** An `INCREMENTAL.<name>` file, or a whole copy of `<name>`. */
  readonly kind: 'incremental' | 'full';
  /** Raw (decoded) size, from the manifest. */
  readonly size: number;
  /** Content hash, from the manifest. */
  readonly expectedHash: string;
  /** The backup's range size (the ranges its content hash is made of). */
  readonly rangeSize: number;
  /**
   * The manifest's hashes of each range (16 hex digits each, in order), recorded for files of
   * more than one range: with them, ranges that give no block are passed over unread.
   */
  readonly rangeHashes?: string;
  /** Backup id and path, for messages. */
  readonly label: string;
}

export interface CombineFileTask {
  /**
   * Newest first: sources[0] is the newest backup's incremental file; the chain goes back to a
   * 'full' source, which must be the last.
   */
  readonly sources: readonly CombineSource[];
  /** Where to write it; absent = check only (verify --repo of a chain). */
  readonly targetPath?: string;
  readonly blockSize: number;
  readonly blocksPerSegment: number;
  readonly mode: number;
  readonly mtimeMs: number;
  readonly uid?: number;
  readonly gid?: number;
  /** The restored path, for messages. */
  readonly label: string;
  /** As RestoreFileTask.deferSync: the restore syncs the target's file systems at the end. */
  readonly deferSync?: boolean;
}

export interface CombineFileResult {
  readonly ok: boolean;
  readonly problem?: string;
  readonly bytes: number;
  /** Blocks taken from each source, in the order of the sources. */
  readonly blocksFrom: readonly number[];
  /** Blocks no source holds, written as zero pages. */
  readonly zeroBlocks: number;
  /** Set when writing the target failed, not a stored file (see RestoreFileResult). */
  readonly targetErrno?: string;
}

/** A stored file that is not what its manifest says: the backup named in the message is damaged. */
class SourceError extends Error {}

/**
 * Bytes written at a time. Large writes (as the whole-file restore makes, one range each) keep the
 * kernel's per-call cost low: with 1 MiB writes a chain restore spent twice the whole-file
 * restore's time in pwrite(2).
 */
const OUTPUT_CHUNK = 8 * 1024 * 1024;

/** Kept for the next task in this worker: a restore combines hundreds of files. */
let outputBuffer: Uint8Array | undefined;

/** A stored file's size and content as read: per-range hashes, undefined for a range passed over. */
interface SourceSummary {
  readonly size: number;
  readonly rangeHashes: readonly (string | undefined)[];
  readonly passedOver: number;
}

/**
 * One stored file read forward only: every byte that comes out of it is hashed range by range
 * (as the backup computed its content hash), whether it is used or skipped. With the manifest's
 * per-range hashes, a whole range that gives no block can be passed over unread
 * ({@link SourceReader.passOver}).
 */
class SourceReader {
  private chunk: Uint8Array = new Uint8Array(0);
  private chunkAt = 0;
  /** Bytes of content before the current chunk. */
  private before = 0;
  private passedOver = 0;
  private ended = false;
  /** Ranges that give blocks (set once the plan is known); the others may be passed over. */
  private needed: Uint8Array | undefined;

  constructor(
    private readonly stream: ContentStream,
    private readonly ranges: RangeHasher,
    private readonly rangeSize: number,
    /** The manifest's size: the length of the last range. */
    private readonly size: number,
  ) {}

  /** Offset of the next byte. */
  get position(): number {
    return this.before + this.chunkAt;
  }

  /** From now on, whole ranges not marked here are passed over when the reader moves past them. */
  passOver(needed: Uint8Array): void {
    if (this.stream.skip) this.needed = needed;
  }

  private fetch(): boolean {
    if (this.ended) return false;
    const next = this.stream.next();
    this.before += this.chunk.length;
    this.chunk = next ?? new Uint8Array(0);
    this.chunkAt = 0;
    if (next === undefined) {
      this.ended = true;
      return false;
    }
    this.ranges.add(next);
    return true;
  }

  /**
   * At a range boundary with nothing of the current chunk left: passes over the whole range that
   * starts here if no block is taken from it and it ends at or before `limit`.
   */
  private passOverRange(limit: number): boolean {
    const needed = this.needed;
    if (needed === undefined || this.chunkAt !== this.chunk.length || !this.ranges.atBoundary || this.ended) return false;
    const at = this.position;
    if (at % this.rangeSize !== 0) return false;
    const index = at / this.rangeSize;
    const length = Math.min(this.rangeSize, this.size - at);
    if (index >= needed.length || needed[index] !== 0 || length <= 0 || at + length > limit) return false;
    this.stream.skip!(length);
    this.before = at + length;
    this.chunk = new Uint8Array(0);
    this.chunkAt = 0;
    this.ranges.passOver();
    this.passedOver++;
    return true;
  }

  /** The next `length` bytes copied into `into` at `at`. */
  read(into: Uint8Array, at: number, length: number): void {
    let done = 0;
    while (done < length) {
      if (this.chunkAt === this.chunk.length && !this.fetch()) throw new SourceError(`ends after ${this.position} bytes, before byte ${this.position + length - done} it needs`);
      const n = Math.min(length - done, this.chunk.length - this.chunkAt);
      into.set(this.chunk.subarray(this.chunkAt, this.chunkAt + n), at + done);
      this.chunkAt += n;
      done += n;
    }
  }

  /** Forward to `offset` (never back: each file is read once). */
  skipTo(offset: number): void {
    if (offset < this.position) throw new Error(`internal: read back from ${this.position} to ${offset}`);
    while (this.position < offset) {
      if (this.chunkAt === this.chunk.length) {
        if (this.passOverRange(offset)) continue;
        if (!this.fetch()) throw new SourceError(`ends after ${this.position} bytes, before byte ${offset} it needs`);
      }
      this.chunkAt += Math.min(offset - this.position, this.chunk.length - this.chunkAt);
    }
  }

  /** Read (or pass over) to the end. */
  finish(): SourceSummary {
    this.chunkAt = this.chunk.length;
    for (;;) {
      if (this.passOverRange(Number.POSITIVE_INFINITY)) continue;
      if (!this.fetch()) break;
      this.chunkAt = this.chunk.length;
    }
    return { size: this.before, rangeHashes: this.ranges.finish(), passedOver: this.passedOver };
  }
}

/**
 * Why a stored file read by a {@link SourceReader} is not what its manifest says, or undefined.
 * Read whole, its content hash is checked; with ranges passed over, each range read is checked
 * against the manifest's hash of it, and those hashes against the content hash.
 */
function sourceProblem(s: SourceSummary, source: CombineSource, expectedRanges: readonly string[] | undefined, hash: (data: Uint8Array) => bigint): string | undefined {
  if (s.size !== source.size) return `holds ${s.size} bytes, the manifest says ${source.size}`;
  if (s.passedOver === 0) {
    const actual = combineRangeHashes(s.rangeHashes as string[], hash);
    return actual === source.expectedHash ? undefined : `content hash ${actual} differs from the manifest's ${source.expectedHash}`;
  }
  if (!expectedRanges || expectedRanges.length !== s.rangeHashes.length) return `holds ${s.rangeHashes.length} ranges, the manifest's range hashes ${expectedRanges?.length ?? 0}`;
  const combined = combineRangeHashes(expectedRanges, hash);
  if (combined !== source.expectedHash) return `the manifest's range hashes make the content hash ${combined}, not the ${source.expectedHash} it records`;
  for (let i = 0; i < s.rangeHashes.length; i++) {
    const got = s.rangeHashes[i];
    if (got !== undefined && got !== expectedRanges[i]) {
      return `bytes ${i * source.rangeSize} to ${Math.min((i + 1) * source.rangeSize, source.size)} have content hash ${got}, the manifest's is ${expectedRanges[i]}`;
    }
  }
  return undefined;
}

interface OpenSource {
  readonly source: CombineSource;
  readonly fd: number;
  readonly stream: ContentStream;
  readonly reader: SourceReader;
  /** The manifest's range hashes, when present and of the right count. */
  readonly expectedRanges: readonly string[] | undefined;
  /** Incremental sources only. */
  header?: IncrementalHeader;
  /** Blocks it can give: the listed ones (incremental) or its length in blocks (full). */
  fullBlocks?: number;
  /** Index in header.blocks of the next listed block not yet passed. */
  cursor: number;
}

/** Why a chain cannot be combined as given (the caller built it wrong), or undefined. */
function chainShapeProblem(sources: readonly CombineSource[]): string | undefined {
  if (sources.length < 2) return `a chain needs an incremental file and an older whole copy, got ${sources.length} source(s)`;
  if (sources[0]!.kind !== 'incremental') return `the newest source ${sources[0]!.label} is not an incremental file`;
  const last = sources[sources.length - 1]!;
  if (last.kind !== 'full') return `the chain ends at ${last.label}, an incremental file: no whole copy of the file to start from`;
  const early = sources.slice(0, -1).find((s) => s.kind === 'full');
  if (early) return `the chain has a whole copy ${early.label} before its end`;
  return undefined;
}

/** Messages of a stored file carry its label: which backup is damaged. */
function aboutSource<T>(source: CombineSource, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TargetWriteError) throw e;
    throw new SourceError(`${source.label}: ${(e as Error).message}`);
  }
}

function readHeader(o: OpenSource, task: CombineFileTask): IncrementalHeader {
  const name = 'incremental file';
  const first = new Uint8Array(12);
  o.reader.read(first, 0, 12);
  const need = incrementalHeaderBytesNeeded(first, name);
  const shape = { blockSize: task.blockSize, blocksPerSegment: task.blocksPerSegment, name };
  // A damaged count is refused before its list is read (it could claim gigabytes).
  if (need > 12 + 4 * task.blocksPerSegment) return parseIncrementalHeader(first, shape);
  const bytes = new Uint8Array(need);
  bytes.set(first);
  o.reader.read(bytes, 12, need - 12);
  const header = parseIncrementalHeader(bytes, shape);
  const expected = incrementalFileSize(header.blocks.length, task.blockSize);
  if (expected !== o.source.size) {
    throw new SourceError(`its header lists ${header.blocks.length} blocks, which make ${expected} bytes, but the manifest says ${o.source.size}`);
  }
  o.reader.skipTo(header.headerLength);
  return header;
}

/** The manifest's range hashes as a list, if they are there and as many as the file's ranges. */
function rangeHashList(text: string | undefined, size: number, rangeSize: number): string[] | undefined {
  const count = fileRanges(size, rangeSize).length;
  if (typeof text !== 'string' || count < 2 || text.length !== count * 16 || !/^[0-9a-f]*$/.test(text)) return undefined;
  const list: string[] = [];
  for (let i = 0; i < count; i++) list.push(text.slice(i * 16, i * 16 + 16));
  return list;
}

/** Tells source `k`'s reader which of its ranges hold the blocks the plan `from` takes from it. */
function markNeeded(o: OpenSource, k: number, from: Int32Array, bs: number): void {
  if (o.expectedRanges === undefined) return;
  const size = o.source.rangeSize;
  const needed = new Uint8Array(o.expectedRanges.length);
  const mark = (offset: number) => {
    needed[Math.floor(offset / size)] = 1;
    needed[Math.floor((offset + bs - 1) / size)] = 1;
  };
  if (o.header) {
    const listed = o.header.blocks;
    for (let i = 0; i < listed.length; i++) if (from[listed[i]!] === k) mark(o.header.headerLength + i * bs);
  } else {
    for (let b = 0; b < from.length; b++) if (from[b] === k) mark(b * bs);
  }
  o.reader.passOver(needed);
}

export function combineFile(task: CombineFileTask): CombineFileResult {
  const blocksFrom = task.sources.map(() => 0);
  let zeroBlocks = 0;
  let written = 0;
  const fail = (problem: string, targetErrno?: string): CombineFileResult => ({ ok: false, problem, bytes: written, blocksFrom, zeroBlocks, ...(targetErrno ? { targetErrno } : {}) });
  const shape = chainShapeProblem(task.sources);
  if (shape) return fail(shape);
  const bs = task.blockSize;
  const kernels = loadKernels();
  const open: OpenSource[] = [];
  let out: number | undefined;
  let complete = false;
  try {
    for (const source of task.sources) {
      let fd: number;
      try {
        // A stored file is a plain file of the repository: a link in its place is not followed.
        fd = openSync(source.storedPath, fsc.O_RDONLY | fsc.O_NOFOLLOW);
      } catch (e) {
        return fail(`${source.label}: stored file is missing or unreadable: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
      let stream: ContentStream;
      try {
        stream = openContent(fd, source.encoding, source.rangeSize, kernels, source.region);
      } catch (e) {
        closeSync(fd);
        return fail(`${source.label}: stored file is unreadable: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
      const expectedRanges = rangeHashList(source.rangeHashes, source.size, source.rangeSize);
      open.push({ source, fd, stream, reader: new SourceReader(stream, new RangeHasher(kernels, source.rangeSize), source.rangeSize, source.size), expectedRanges, cursor: 0 });
    }
    // Headers first: which source gives which block is known before a byte is written.
    for (const o of open) {
      if (o.source.kind === 'incremental') o.header = aboutSource(o.source, () => readHeader(o, task));
      else o.fullBlocks = Math.floor(o.source.size / bs);
    }
    const newest = open[0]!.header!;
    const length = reconstructedBlocks(newest);
    const cutoff = newest.truncationBlocks;
    // The newest file's blocks all count (past its truncation length too: they extend the file);
    // an older backup's only below that length: what lies beyond was truncated since.
    const from = new Int32Array(length).fill(-1);
    for (const b of newest.blocks) from[b] = 0;
    for (let k = 1; k < open.length; k++) {
      const o = open[k]!;
      if (o.header) {
        for (const b of o.header.blocks) {
          if (b >= cutoff) break;
          if (from[b]! < 0) from[b] = k;
        }
      } else {
        for (let b = 0; b < Math.min(cutoff, o.fullBlocks!); b++) if (from[b]! < 0) from[b] = k;
      }
    }
    // A restore reads only the ranges of each stored file that give blocks (a check reads all).
    if (task.targetPath !== undefined) for (let k = 0; k < open.length; k++) markNeeded(open[k]!, k, from, bs);

    const target = task.targetPath;
    if (target) out = onTarget(target, () => createFileSync(target, 0o600));
    const durability = out === undefined ? undefined : new TargetDurability(out, task.deferSync, kernels);
    const chunkLength = Math.max(bs, Math.floor(OUTPUT_CHUNK / bs) * bs);
    if (!outputBuffer || outputBuffer.length !== chunkLength) outputBuffer = new Uint8Array(chunkLength);
    const buffer = outputBuffer;
    let filled = 0;
    const flush = () => {
      if (out !== undefined && filled > 0) {
        const fd = out;
        const data = buffer.subarray(0, filled);
        const end = written + filled;
        onTarget(target!, () => {
          writeAllSync(fd, data, written);
          durability!.wrote(end);
        });
      }
      written += filled;
      filled = 0;
    };
    // Blocks go out in runs taken from one source: consecutive blocks of a whole copy are
    // consecutive in it, and so are those of an incremental file (its list is sorted, no repeats).
    let b = 0;
    while (b < length) {
      const k = from[b]!;
      const room = (buffer.length - filled) / bs;
      let end = b + 1;
      while (end < length && end - b < room && from[end] === k) end++;
      const n = end - b;
      if (k < 0) {
        buffer.fill(0, filled, filled + n * bs);
        zeroBlocks += n;
      } else {
        const o = open[k]!;
        let offset: number;
        if (o.header) {
          const listed = o.header.blocks;
          while (listed[o.cursor]! < b) o.cursor++;
          offset = o.header.headerLength + o.cursor * bs;
        } else {
          offset = b * bs;
        }
        aboutSource(o.source, () => {
          o.reader.skipTo(offset);
          if (out !== undefined) o.reader.read(buffer, filled, n * bs);
          else o.reader.skipTo(offset + n * bs);
        });
        blocksFrom[k] = blocksFrom[k]! + n;
      }
      filled += n * bs;
      b = end;
      if (filled === buffer.length) flush();
    }
    flush();
    // Every stored file to its end: its size and content hash are the backup's word that every
    // block taken from it (and every block passed over) is what was stored.
    for (const o of open) {
      const s = aboutSource(o.source, () => o.reader.finish());
      const problem = sourceProblem(s, o.source, o.expectedRanges, (d) => kernels.hash(d));
      if (problem) return fail(`${o.source.label}: ${problem}`);
    }
    if (durability) onTarget(target!, () => durability.settle(task));
    complete = true;
    return { ok: true, bytes: written, blocksFrom, zeroBlocks };
  } catch (e) {
    if (e instanceof TargetWriteError) return fail(e.message, e.errno);
    return fail((e as Error).message);
  } finally {
    for (const o of open) {
      o.stream.release();
      closeSync(o.fd);
    }
    if (out !== undefined) closeTarget(out, task.targetPath!, complete);
  }
}
