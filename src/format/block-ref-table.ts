/**
 * The block reference table: which blocks of which relation forks changed in an LSN range, and
 * the smallest length each fork had (its limit block). Same meaning and byte format as
 * PostgreSQL 17's WAL summary files (docs/block-incremental.md, "Block reference table"), so the
 * server's summaries and pgbacula's are read and written alike.
 *
 * In memory it keeps the file's shape, because a range can change 10^8 blocks: per fork, one
 * chunk per 65536 blocks; a chunk is a sorted array of 16-bit offsets that becomes a 4096-word
 * bitmap (8 KiB, one bit per block) once it holds ARRAY_LIMIT offsets (the file switches at
 * 4096). Dense changes cost one bit per block, sparse ones two to four bytes.
 *
 * Pure: values in, bytes out.
 */
import { crc32cUpdate } from './crc32c.js';

/** The limit block of a fork that was never truncated, created or dropped in the range. */
export const NO_LIMIT = 0xffffffff;
export const BLOCKS_PER_CHUNK = 65536;

/** One relation fork. fork: 0 main, 1 fsm, 2 vm, 3 init. */
export interface RelFork {
  readonly spcOid: number;
  readonly dbOid: number;
  readonly relNumber: number;
  readonly fork: number;
}

export interface BlockRefEntryView {
  /** NO_LIMIT when none. */
  readonly limitBlock: number;
  readonly blockCount: number;
  /** Modified blocks b with start <= b < end, ascending, absolute numbers. */
  blocksIn(start: number, end: number): Uint32Array;
}

export class BlockRefTableError extends Error {}

const MAGIC = 0x652b137b;
/** Words of a bitmap chunk, and the file's "usage" of one: an array of this many offsets is no smaller. */
const BITMAP_WORDS = BLOCKS_PER_CHUNK / 16;
/**
 * In memory an array turns into a bitmap at this many offsets, before the file does (at 4096):
 * inserting into a sorted array of thousands of offsets in random order costs a memmove each,
 * and a chunk this full is within 4x of a bitmap's size. Measured (CPU time) on 2*10^6 random
 * marks into 2*10^7 blocks: ~140 ns per block with arrays up to 4096, ~45 ns with this limit.
 */
const ARRAY_LIMIT = 1024;
const INITIAL_ARRAY = 16;
const HEADER_BYTES = 24;
const MAX_FORK = 3;

/**
 * A chunk of 65536 blocks. As an array, `words[0..n)` are the distinct offsets in ascending
 * order (the spare capacity grows by doubling). As a bitmap, `words` has 4096 words and `n`
 * counts the set bits.
 *
 * The file has its own rule: a chunk is written as a bitmap once it has held 4096 blocks
 * (`fileBitmap`), and stays one when a limit clears bits, as PostgreSQL's does; otherwise as
 * an array, even when memory holds it as a bitmap. So the bytes written are PostgreSQL's, but
 * for the order of array offsets (PostgreSQL keeps insertion order, pgbacula ascending).
 */
class Chunk {
  constructor(
    public words: Uint16Array,
    public n: number,
    public bitmap: boolean,
    public fileBitmap: boolean,
  ) {}

  static ofArray(sortedDistinct: Uint16Array, n: number): Chunk {
    return n >= ARRAY_LIMIT ? new Chunk(bitmapOf(sortedDistinct, n), n, true, n >= BITMAP_WORDS) : new Chunk(sortedDistinct, n, false, false);
  }

  /** The file's usage count: offsets stored, or 4096 for a bitmap. */
  get usage(): number {
    return this.fileBitmap ? BITMAP_WORDS : this.n;
  }

  /** Adds an offset; true when it was not there yet. */
  add(offset: number): boolean {
    const w = this.words;
    if (this.bitmap) {
      const bit = 1 << (offset & 15);
      const i = offset >>> 4;
      if (w[i]! & bit) return false;
      w[i] = w[i]! | bit;
      if (++this.n >= BITMAP_WORDS) this.fileBitmap = true;
      return true;
    }
    const n = this.n;
    // Blocks mostly arrive in ascending order (WAL of a bulk load, another summary's chunk).
    let at = n;
    if (n > 0 && w[n - 1]! >= offset) {
      at = lowerBound(w, n, offset);
      if (w[at] === offset) return false;
    }
    if (n + 1 >= ARRAY_LIMIT) {
      this.words = bitmapOf(w, n);
      this.bitmap = true;
      return this.add(offset);
    }
    if (n === w.length) this.grow();
    if (at < n) this.words.copyWithin(at + 1, at, n);
    this.words[at] = offset;
    this.n = n + 1;
    return true;
  }

  private grow(): void {
    const bigger = new Uint16Array(Math.min(Math.max(this.words.length * 2, INITIAL_ARRAY), ARRAY_LIMIT));
    bigger.set(this.words.subarray(0, this.n));
    this.words = bigger;
  }

  /** Forgets offsets >= from. */
  truncate(from: number): void {
    if (this.bitmap) {
      const w = this.words;
      const first = from >>> 4;
      if (first < BITMAP_WORDS) w[first] = w[first]! & ((1 << (from & 15)) - 1);
      w.fill(0, first + 1);
      this.n = popcount(w);
      return;
    }
    this.n = lowerBound(this.words, this.n, from);
  }

  /** Adds every offset of another chunk (a sorted merge, or an OR of bitmaps). */
  addAll(other: Chunk): void {
    if (!this.bitmap && !other.bitmap) {
      const merged = mergeSorted(this.words, this.n, other.words, other.n);
      const c = Chunk.ofArray(merged, merged.length);
      this.words = c.words;
      this.n = c.n;
      this.bitmap = c.bitmap;
      this.fileBitmap = c.fileBitmap;
      return;
    }
    if (!this.bitmap) {
      this.words = bitmapOf(this.words, this.n);
      this.bitmap = true;
    }
    const w = this.words;
    if (other.bitmap) {
      for (let i = 0; i < BITMAP_WORDS; i++) w[i] = w[i]! | other.words[i]!;
    } else {
      for (let i = 0; i < other.n; i++) {
        const o = other.words[i]!;
        w[o >>> 4] = w[o >>> 4]! | (1 << (o & 15));
      }
    }
    this.n = popcount(w);
    // Merging marks the other chunk's blocks one by one, as PostgreSQL's merge does: its own
    // file representation does not carry over.
    if (this.n >= BITMAP_WORDS) this.fileBitmap = true;
  }

  /** A copy as a merge into an empty table makes it. */
  clone(): Chunk {
    return new Chunk(this.words.slice(0, this.bitmap ? BITMAP_WORDS : this.n), this.n, this.bitmap, this.n >= BITMAP_WORDS);
  }

  /** The offsets as the file lists them: the bitmap words, or the ascending offsets. */
  fileWords(): Uint16Array {
    if (this.fileBitmap || !this.bitmap) return this.words.subarray(0, this.usage);
    const out = new Uint16Array(this.n);
    this.collectOffsets(0, BLOCKS_PER_CHUNK, out);
    return out;
  }

  /** Writes the offsets in [from, to), ascending, into out from index 0; returns how many. */
  private collectOffsets(from: number, to: number, out: Uint16Array | Uint32Array, base = 0, at = 0): number {
    const w = this.words;
    if (!this.bitmap) {
      for (let i = lowerBound(w, this.n, from); i < this.n && w[i]! < to; i++) out[at++] = base + w[i]!;
      return at;
    }
    for (let o = from; o < to; ) {
      const word = w[o >>> 4]!;
      if (word === 0) {
        o = (o | 15) + 1;
        continue;
      }
      if (word & (1 << (o & 15))) out[at++] = base + o;
      o++;
    }
    return at;
  }

  /** Appends base + offset for offsets in [from, to) to out, ascending; returns the new length. */
  collect(base: number, from: number, to: number, out: Uint32Array, at: number): number {
    return this.collectOffsets(from, to, out, base, at);
  }

  /** How many offsets fall in [from, to). */
  countIn(from: number, to: number): number {
    if (from === 0 && to >= BLOCKS_PER_CHUNK) return this.n;
    if (!this.bitmap) return lowerBound(this.words, this.n, to) - lowerBound(this.words, this.n, from);
    const w = this.words;
    let c = 0;
    let o = from;
    for (; o < to && o & 15; o++) if (w[o >>> 4]! & (1 << (o & 15))) c++;
    for (; o + 16 <= to; o += 16) c += popcount16(w[o >>> 4]!);
    for (; o < to; o++) if (w[o >>> 4]! & (1 << (o & 15))) c++;
    return c;
  }

  get bytes(): number {
    return 48 + this.words.byteLength;
  }
}

function lowerBound(w: Uint16Array, n: number, value: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (w[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function popcount16(v: number): number {
  v = v - ((v >>> 1) & 0x5555);
  v = (v & 0x3333) + ((v >>> 2) & 0x3333);
  v = (v + (v >>> 4)) & 0x0f0f;
  return (v + (v >>> 8)) & 0x1f;
}

function popcount(w: Uint16Array): number {
  let c = 0;
  for (let i = 0; i < w.length; i++) c += popcount16(w[i]!);
  return c;
}

function bitmapOf(offsets: Uint16Array, n: number): Uint16Array {
  const bits = new Uint16Array(BITMAP_WORDS);
  for (let i = 0; i < n; i++) {
    const o = offsets[i]!;
    bits[o >>> 4] = bits[o >>> 4]! | (1 << (o & 15));
  }
  return bits;
}

function mergeSorted(a: Uint16Array, an: number, b: Uint16Array, bn: number): Uint16Array {
  const out = new Uint16Array(an + bn);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < an && j < bn) {
    const x = a[i]!;
    const y = b[j]!;
    if (x < y) (out[k++] = x), i++;
    else if (y < x) (out[k++] = y), j++;
    else (out[k++] = x), i++, j++;
  }
  while (i < an) out[k++] = a[i++]!;
  while (j < bn) out[k++] = b[j++]!;
  return k === out.length ? out : out.slice(0, k);
}

class Entry implements BlockRefEntryView {
  limitBlock = NO_LIMIT;
  blockCount = 0;
  /** Indexed by chunk number (block / 65536); holes are chunks with no block. */
  chunks: Array<Chunk | undefined> = [];

  constructor(readonly rf: RelFork) {}

  mark(block: number): boolean {
    const c = block >>> 16;
    let chunk = this.chunks[c];
    if (chunk === undefined) {
      while (this.chunks.length < c) this.chunks.push(undefined);
      chunk = new Chunk(new Uint16Array(INITIAL_ARRAY), 0, false, false);
      this.chunks[c] = chunk;
    }
    if (!chunk.add(block & 0xffff)) return false;
    this.blockCount++;
    return true;
  }

  /** PostgreSQL's rule: keep the smaller limit; recorded blocks at or above it are forgotten. */
  setLimit(limit: number): void {
    if (limit >= this.limitBlock) return;
    this.limitBlock = limit;
    const c = Math.floor(limit / BLOCKS_PER_CHUNK);
    if (c >= this.chunks.length) return;
    for (let i = c + 1; i < this.chunks.length; i++) this.blockCount -= this.chunks[i]?.n ?? 0;
    this.chunks.length = c + 1;
    const chunk = this.chunks[c];
    if (chunk === undefined) return;
    const before = chunk.n;
    chunk.truncate(limit % BLOCKS_PER_CHUNK);
    this.blockCount -= before - chunk.n;
    if (chunk.usage === 0) this.chunks[c] = undefined;
  }

  blocksIn(start: number, end: number): Uint32Array {
    start = Math.max(0, Math.floor(start));
    end = Math.min(NO_LIMIT, Math.ceil(end));
    if (end <= start) return new Uint32Array(0);
    const first = Math.floor(start / BLOCKS_PER_CHUNK);
    const last = Math.min(this.chunks.length - 1, Math.floor((end - 1) / BLOCKS_PER_CHUNK));
    let count = 0;
    for (let c = first; c <= last; c++) {
      const chunk = this.chunks[c];
      if (chunk !== undefined) count += chunk.countIn(...chunkSpan(c, start, end));
    }
    const out = new Uint32Array(count);
    let at = 0;
    for (let c = first; c <= last; c++) {
      const chunk = this.chunks[c];
      if (chunk !== undefined) at = chunk.collect(c * BLOCKS_PER_CHUNK, ...chunkSpan(c, start, end), out, at);
    }
    return out;
  }

  /** Chunk slots the file lists: up to the last one with a non-zero usage. */
  fileChunks(): number {
    let n = this.chunks.length;
    while (n > 0 && (this.chunks[n - 1]?.usage ?? 0) === 0) n--;
    return n;
  }

  get bytes(): number {
    let b = 160 + 8 * this.chunks.length;
    for (const chunk of this.chunks) if (chunk !== undefined) b += chunk.bytes;
    return b;
  }
}

function chunkSpan(c: number, start: number, end: number): [number, number] {
  const base = c * BLOCKS_PER_CHUNK;
  return [Math.max(start - base, 0), Math.min(end - base, BLOCKS_PER_CHUNK)];
}

function compareRelForks(a: RelFork, b: RelFork): number {
  return a.spcOid - b.spcOid || a.dbOid - b.dbOid || a.relNumber - b.relNumber || a.fork - b.fork;
}

function checkRelFork(rf: RelFork): void {
  for (const k of ['spcOid', 'dbOid', 'relNumber'] as const) {
    const v = rf[k];
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new BlockRefTableError(`${k} ${v} is not a 32-bit unsigned number`);
  }
  if (!Number.isInteger(rf.fork) || rf.fork < 0 || rf.fork > MAX_FORK) throw new BlockRefTableError(`fork ${rf.fork} is not 0 (main), 1 (fsm), 2 (vm) or 3 (init)`);
}

/** What serializeBlockRefTable and parseBlockRefTable need of a table, kept off its public face. */
let sortedEntriesOf: (t: BlockRefTable) => Entry[];
let entryOf: (t: BlockRefTable, rf: RelFork) => Entry;

export class BlockRefTable {
  static {
    sortedEntriesOf = (t) => t.sortedEntries();
    entryOf = (t, rf) => t.entryFor(rf, true)!;
  }

  /** Entries by relation number; several only when forks, databases or tablespaces differ. */
  private readonly byRel = new Map<number, Entry[]>();
  private count = 0;
  /** The last entry used: the WAL of a range names the same fork many times in a row. */
  private last: Entry | undefined;

  markBlock(rf: RelFork, block: number): void {
    if (block >>> 0 !== block || block === NO_LIMIT) throw new BlockRefTableError(`block ${block} is not a valid block number`);
    this.entryFor(rf, true)!.mark(block);
  }

  /** Keep the minimum limit; forget recorded blocks >= the new limit (PostgreSQL's rule). */
  setLimit(rf: RelFork, limit: number): void {
    if (limit >>> 0 !== limit) throw new BlockRefTableError(`limit block ${limit} is not a 32-bit unsigned number`);
    this.entryFor(rf, true)!.setLimit(limit);
  }

  /** Combine another table into this one: for each of its entries, setLimit then mark its blocks. */
  merge(other: BlockRefTable): void {
    for (const list of other.byRel.values()) {
      for (const theirs of list) {
        const mine = this.entryFor(theirs.rf, true)!;
        mine.setLimit(theirs.limitBlock);
        theirs.chunks.forEach((chunk, c) => {
          if (chunk === undefined || chunk.n === 0) return;
          const ours = mine.chunks[c];
          if (ours === undefined) {
            while (mine.chunks.length < c) mine.chunks.push(undefined);
            mine.chunks[c] = chunk.clone();
            mine.blockCount += chunk.n;
          } else {
            const before = ours.n;
            ours.addAll(chunk);
            mine.blockCount += ours.n - before;
          }
        });
      }
    }
  }

  entry(rf: RelFork): BlockRefEntryView | undefined {
    return this.entryFor(rf, false);
  }

  /** The pseudo-entry (spc, db, relNumber 0, main) is present: the database directory was created/copied/dropped. */
  databaseChanged(spcOid: number, dbOid: number): boolean {
    return this.entryFor({ spcOid, dbOid, relNumber: 0, fork: 0 }, false) !== undefined;
  }

  /** Sorted by spc, db, rel, fork (unsigned). */
  *entries(): IterableIterator<[RelFork, BlockRefEntryView]> {
    for (const e of this.sortedEntries()) yield [e.rf, e];
  }

  get entryCount(): number {
    return this.count;
  }

  get blockCount(): number {
    let n = 0;
    for (const list of this.byRel.values()) for (const e of list) n += e.blockCount;
    return n;
  }

  /** Rough bytes held (for memory reports/tests). */
  get approximateBytes(): number {
    let b = 64;
    for (const list of this.byRel.values()) {
      b += 48;
      for (const e of list) b += e.bytes;
    }
    return b;
  }

  private sortedEntries(): Entry[] {
    const all: Entry[] = [];
    for (const list of this.byRel.values()) all.push(...list);
    return all.sort((a, b) => compareRelForks(a.rf, b.rf));
  }

  private entryFor(rf: RelFork, create: boolean): Entry | undefined {
    const last = this.last;
    if (last !== undefined && last.rf.relNumber === rf.relNumber && last.rf.fork === rf.fork && last.rf.dbOid === rf.dbOid && last.rf.spcOid === rf.spcOid) return last;
    const list = this.byRel.get(rf.relNumber);
    if (list !== undefined) {
      for (const e of list) {
        if (e.rf.fork === rf.fork && e.rf.dbOid === rf.dbOid && e.rf.spcOid === rf.spcOid) return (this.last = e);
      }
    }
    if (!create) return undefined;
    checkRelFork(rf);
    const e = new Entry(Object.freeze({ spcOid: rf.spcOid, dbOid: rf.dbOid, relNumber: rf.relNumber, fork: rf.fork }));
    if (list === undefined) this.byRel.set(rf.relNumber, [e]);
    else list.push(e);
    this.count++;
    return (this.last = e);
  }
}

export function serializeBlockRefTable(t: BlockRefTable): Uint8Array {
  const entries = sortedEntriesOf(t);
  let size = 4 + HEADER_BYTES + 4;
  const nchunks = entries.map((e) => {
    const n = e.fileChunks();
    size += HEADER_BYTES + 2 * n;
    for (let c = 0; c < n; c++) size += 2 * (e.chunks[c]?.usage ?? 0);
    return n;
  });
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  let at = 4;
  entries.forEach((e, i) => {
    const n = nchunks[i]!;
    view.setUint32(at, e.rf.spcOid, true);
    view.setUint32(at + 4, e.rf.dbOid, true);
    view.setUint32(at + 8, e.rf.relNumber, true);
    view.setInt32(at + 12, e.rf.fork, true);
    view.setUint32(at + 16, e.limitBlock, true);
    view.setUint32(at + 20, n, true);
    at += HEADER_BYTES;
    for (let c = 0; c < n; c++, at += 2) view.setUint16(at, e.chunks[c]?.usage ?? 0, true);
    for (let c = 0; c < n; c++) {
      const chunk = e.chunks[c];
      if (chunk === undefined) continue;
      const words = chunk.fileWords();
      for (let k = 0; k < words.length; k++, at += 2) view.setUint16(at, words[k]!, true);
    }
  });
  at += HEADER_BYTES; // the sentinel: a header of six zeros
  view.setUint32(at, (crc32cUpdate(0xffffffff, out, 0, at) ^ 0xffffffff) >>> 0, true);
  return out;
}

/** Parse + check magic, structure, usage <= 4096, CRC, nothing after the CRC. Messages name `name`. */
export function parseBlockRefTable(bytes: Uint8Array, name = 'block reference table'): BlockRefTable {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (why: string): never => {
    throw new BlockRefTableError(`${name} ${why}`);
  };
  const need = (at: number, n: number, what: string): void => {
    if (at + n > bytes.length) fail(`ends unexpectedly (inside ${what} at offset ${at}, ${bytes.length} bytes)`);
  };
  need(0, 4, 'the magic number');
  const magic = view.getUint32(0, true);
  if (magic !== MAGIC) fail(`has a wrong magic number 0x${hex8(magic)} (expected 0x${hex8(MAGIC)}): not a block reference table`);
  const table = new BlockRefTable();
  let at = 4;
  let previous: RelFork | undefined;
  for (;;) {
    need(at, HEADER_BYTES, 'an entry header');
    const rf: RelFork = { spcOid: view.getUint32(at, true), dbOid: view.getUint32(at + 4, true), relNumber: view.getUint32(at + 8, true), fork: view.getInt32(at + 12, true) };
    const limit = view.getUint32(at + 16, true);
    const n = view.getUint32(at + 20, true);
    const entryAt = at;
    at += HEADER_BYTES;
    if (rf.spcOid === 0 && rf.dbOid === 0 && rf.relNumber === 0 && rf.fork === 0 && limit === 0 && n === 0) break;
    const where = `entry at offset ${entryAt} (${rf.spcOid}/${rf.dbOid}/${rf.relNumber} fork ${rf.fork})`;
    if (rf.fork < 0 || rf.fork > MAX_FORK) fail(`has a bad ${where}: fork ${rf.fork} is not 0 to ${MAX_FORK}`);
    if (n > BLOCKS_PER_CHUNK) fail(`has a bad ${where}: ${n} chunks, more than a fork can have`);
    if (previous !== undefined && compareRelForks(previous, rf) >= 0) fail(`has a bad ${where}: entries are not in ascending order without repeats`);
    previous = rf;
    need(at, 2 * n, `the chunk usage array of ${where}`);
    const usage = new Uint16Array(n);
    for (let c = 0; c < n; c++, at += 2) {
      usage[c] = view.getUint16(at, true);
      if (usage[c]! > BITMAP_WORDS) fail(`has a bad ${where}: chunk ${c} has usage ${usage[c]}, more than ${BITMAP_WORDS}`);
    }
    const chunks: Array<Chunk | undefined> = new Array<Chunk | undefined>(n);
    let blocks = 0;
    for (let c = 0; c < n; c++) {
      const u = usage[c]!;
      if (u === 0) continue;
      need(at, 2 * u, `chunk ${c} of ${where}`);
      const words = new Uint16Array(u);
      for (let k = 0; k < u; k++, at += 2) words[k] = view.getUint16(at, true);
      let chunk: Chunk;
      if (u === BITMAP_WORDS) {
        chunk = new Chunk(words, popcount(words), true, true);
      } else {
        words.sort();
        let d = 0;
        for (let k = 0; k < u; k++) if (k === 0 || words[k] !== words[k - 1]) words[d++] = words[k]!;
        chunk = Chunk.ofArray(words, d);
      }
      chunks[c] = chunk;
      blocks += chunk.n;
    }
    const e = entryOf(table, rf);
    e.limitBlock = limit;
    e.chunks = chunks;
    e.blockCount = blocks;
  }
  need(at, 4, 'the checksum');
  const expected = (crc32cUpdate(0xffffffff, bytes, 0, at) ^ 0xffffffff) >>> 0;
  const stored = view.getUint32(at, true);
  if (stored !== expected) fail(`has a wrong checksum: expected ${hex8(expected)}, found ${hex8(stored)}`);
  at += 4;
  if (at !== bytes.length) fail(`has ${bytes.length - at} bytes after its checksum`);
  return table;
}

function hex8(v: number): string {
  return v.toString(16).toUpperCase().padStart(8, '0');
}
