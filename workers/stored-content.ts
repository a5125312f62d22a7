import { fstatSync, readSync } from 'node:fs';
import { LZ4_FRAME_MAGIC, Lz4FrameDecoder, parseFrameDescriptor } from '../src/format/lz4-frame.js';
import type { Kernels, StreamingHash } from '../src/format/kernels.js';
import { hashHex } from '../src/format/content-hash.js';

/**
 * The decoded content of a stored file of the repository (raw, or one LZ4 frame), in order, a
 * chunk at a time — and, where the stored layout allows it, whole stretches passed over without
 * being read or decoded (docs/block-incremental.md, "Restoring a chain").
 */
export interface ContentStream {
  /** The next chunk (valid until the next call), or undefined at the end. */
  next(): Uint8Array | undefined;
  /**
   * Pass over the next `length` bytes of content without producing them. Only called at the
   * start of a range of the backup's range size, for a whole range: what that range holds is
   * then unknown (its hash is not checked) and must not be used.
   */
  readonly skip?: (length: number) => void;
  /** Buffers back to the worker's spares. */
  release(): void;
}

/**
 * Where a stored file's bytes are: a whole file of the repository, or `length` bytes from `offset`
 * of a bundle file (docs/repository-format.md, "Bundles"). Nothing outside it is ever read.
 */
export interface StoredRegion {
  readonly offset: number;
  readonly length: number;
}

/** The region of a stored file open as `fd`: the one given, or the whole file. */
function regionOf(fd: number, region: StoredRegion | undefined): StoredRegion {
  return region ?? { offset: 0, length: fstatSync(fd).size };
}

const READ_CHUNK = 256 * 1024;
/**
 * Compressed bytes handed to the push decoder at a time. A block decodes to at most 4 MiB and LZ4
 * expands at most about 255-fold, so what one feed can produce stays a few MiB per source.
 */
const LZ4_FEED = 16 * 1024;
const BLOCK_UNCOMPRESSED = 0x80000000;

/**
 * Buffers kept by the worker between tasks: a chain restore opens several stored files for each
 * of hundreds of relation segments, and a fresh 4 MiB buffer costs a zeroing each time.
 */
const spares = new Map<number, Uint8Array[]>();
function borrow(length: number): Uint8Array {
  return spares.get(length)?.pop() ?? new Uint8Array(length);
}
function giveBack(buffer: Uint8Array): void {
  const list = spares.get(buffer.length) ?? [];
  // A bound on what a worker keeps between tasks (a longer chain allocates the rest each time).
  if (list.length < 16) list.push(buffer);
  spares.set(buffer.length, list);
}

export class RawStream implements ContentStream {
  private readonly chunk = borrow(READ_CHUNK);
  private pos = 0;
  private readonly fileSize: number;
  private readonly start: number;
  /** Reads stop at range boundaries, so that a chunk never holds the start of a range that could be passed over. */
  constructor(private readonly fd: number, private readonly rangeSize: number, region?: StoredRegion) {
    const r = regionOf(fd, region);
    this.start = r.offset;
    this.fileSize = r.length;
  }
  next(): Uint8Array | undefined {
    const toBoundary = this.rangeSize > 0 ? this.rangeSize - (this.pos % this.rangeSize) : this.chunk.length;
    const want = Math.min(this.chunk.length, toBoundary, this.fileSize - this.pos);
    if (want <= 0) return undefined;
    const n = readSync(this.fd, this.chunk, 0, want, this.start + this.pos);
    if (n === 0) return undefined;
    this.pos += n;
    return this.chunk.subarray(0, n);
  }
  readonly skip = (length: number): void => {
    if (this.pos + length > this.fileSize) throw new Error(`ends after ${this.fileSize} bytes, inside the range it passes over (bytes ${this.pos} to ${this.pos + length})`);
    this.pos += length;
  };
  release(): void {
    giveBack(this.chunk);
  }
}

/**
 * Any LZ4 stream the frame decoder reads (linked blocks, checksums, several frames): the decoder
 * pushes what it decodes; this pulls, feeding it only as much as the reader needs. Nothing is
 * passed over: every byte is decoded.
 */
export class Lz4PushStream implements ContentStream {
  private readonly input = borrow(READ_CHUNK);
  private inputLength = 0;
  private inputAt = 0;
  private pos = 0;
  private ended = false;
  private readonly decoded: Uint8Array[] = [];
  /** Copies handed out and since given back: a file decodes into a few buffers, not one per block. */
  private readonly spare: ArrayBuffer[] = [];
  private lent: Uint8Array | undefined;
  private readonly decoder: Lz4FrameDecoder;
  private readonly start: number;
  private readonly length: number;
  constructor(private readonly fd: number, kernels: Kernels, region?: StoredRegion) {
    const r = regionOf(fd, region);
    this.start = r.offset;
    this.length = r.length;
    // The decoder's content is a view of its own buffer, reused for the next block: copied, into a
    // buffer of this stream's own that comes back when the reader asks for the next chunk.
    this.decoder = new Lz4FrameDecoder(kernels, (content) => {
      const i = this.spare.findIndex((b) => b.byteLength >= content.length);
      const buffer = i >= 0 ? this.spare.splice(i, 1)[0]! : new ArrayBuffer(content.length);
      const copy = new Uint8Array(buffer, 0, content.length);
      copy.set(content);
      this.decoded.push(copy);
    });
  }
  next(): Uint8Array | undefined {
    if (this.lent) this.spare.push(this.lent.buffer as ArrayBuffer);
    this.lent = undefined;
    while (this.decoded.length === 0) {
      if (this.inputAt === this.inputLength) {
        if (this.ended) return undefined;
        const want = Math.min(this.input.length, this.length - this.pos);
        this.inputLength = want > 0 ? readSync(this.fd, this.input, 0, want, this.start + this.pos) : 0;
        this.inputAt = 0;
        this.pos += this.inputLength;
        if (this.inputLength === 0) {
          this.ended = true;
          this.decoder.end();
          continue;
        }
      }
      const feed = this.input.subarray(this.inputAt, Math.min(this.inputAt + LZ4_FEED, this.inputLength));
      this.inputAt += feed.length;
      this.decoder.push(feed);
    }
    this.lent = this.decoded.shift();
    return this.lent;
  }
  release(): void {
    giveBack(this.input);
  }
}

/**
 * One LZ4 frame of the shape pgbacula writes (src/format/lz4-frame.ts: independent blocks, no
 * block or content checksums), read block record by block record. Because every range of a file
 * was compressed on its own into blocks of the frame's block maximum (the last one shorter), the
 * records of a range can be passed over by their size fields alone, without decoding them. That
 * assumption is never trusted for what is used: a range that is read is hashed and checked, and a
 * layout that differs moves every later byte, which the next range's hash then refuses.
 */
export class Lz4BlockStream implements ContentStream {
  private pos: number;
  private readonly input: Uint8Array;
  private readonly output: Uint8Array;
  /** The size field of the next record, when the previous read brought it along. */
  private nextField: number | undefined;
  private ended = false;

  /** The stream, or undefined when the file's frame is not of that shape (the push decoder reads it). */
  static open(fd: number, kernels: Kernels, region?: StoredRegion): Lz4BlockStream | undefined {
    const r = regionOf(fd, region);
    const head = new Uint8Array(4 + 15);
    const n = readSync(fd, head, 0, Math.min(head.length, r.length), r.offset);
    if (n < 7 || new DataView(head.buffer).getUint32(0, true) !== LZ4_FRAME_MAGIC) return undefined;
    let d;
    try {
      d = parseFrameDescriptor(head.subarray(4, n));
    } catch {
      return undefined;
    }
    if (!d.blockIndependence || d.blockChecksum || d.contentChecksum) return undefined;
    return new Lz4BlockStream(fd, kernels, r, 4 + d.descriptorBytes, d.blockMaxBytes);
  }

  /** Positions are within the region; `base` is where it starts in the file. */
  private readonly fileSize: number;
  private readonly base: number;
  private constructor(private readonly fd: number, private readonly kernels: Kernels, region: StoredRegion, start: number, private readonly blockMax: number) {
    this.pos = start;
    this.base = region.offset;
    this.fileSize = region.length;
    this.input = borrow(blockMax + 4);
    this.output = borrow(blockMax);
  }

  private damaged(message: string): Error {
    return new Error(`lz4 frame is not valid at byte ${this.pos}: ${message}`);
  }

  /** The size field at `pos`. */
  private field(): number {
    if (this.nextField !== undefined) return this.nextField;
    const n = this.pos + 4 <= this.fileSize ? readSync(this.fd, this.input, 0, 4, this.base + this.pos) : 0;
    if (n < 4) throw this.damaged('the file ends without the frame\'s end mark');
    return new DataView(this.input.buffer, this.input.byteOffset, 4).getUint32(0, true);
  }

  /** The next block record's stored size and whether it is stored raw; undefined at the end mark. */
  private record(): { size: number; raw: boolean } | undefined {
    const field = this.field();
    if (field === 0) {
      this.pos += 4;
      this.nextField = undefined;
      if (this.pos !== this.fileSize) throw this.damaged(`${this.fileSize - this.pos} bytes follow the frame's end mark (pgbacula writes one frame per file)`);
      return undefined;
    }
    const size = field & ~BLOCK_UNCOMPRESSED;
    if (size > this.blockMax) throw this.damaged(`a block of ${size} bytes is larger than the frame's block maximum ${this.blockMax}`);
    if (this.pos + 4 + size > this.fileSize) throw this.damaged(`a block of ${size} bytes runs past the end of the file (${this.fileSize} bytes)`);
    return { size, raw: (field & BLOCK_UNCOMPRESSED) !== 0 };
  }

  next(): Uint8Array | undefined {
    if (this.ended) return undefined;
    const r = this.record();
    if (r === undefined) {
      this.ended = true;
      return undefined;
    }
    // The record's data and, in the same read, the size field of the one after it.
    const want = r.size + 4;
    const n = readSync(this.fd, this.input, 0, Math.min(want, this.fileSize - this.pos - 4), this.base + this.pos + 4);
    if (n < r.size) throw this.damaged(`the file ends inside a block of ${r.size} bytes`);
    this.nextField = n === want ? new DataView(this.input.buffer, this.input.byteOffset + r.size, 4).getUint32(0, true) : undefined;
    const at = this.pos;
    this.pos += 4 + r.size;
    const data = this.input.subarray(0, r.size);
    if (r.raw) return data;
    let written: number;
    try {
      written = this.kernels.lz4DecompressBlock(data, this.output);
    } catch (e) {
      throw new Error(`lz4 frame is not valid at byte ${at}: the compressed block of ${r.size} bytes does not decode within the block maximum ${this.blockMax} (${(e as Error).message})`);
    }
    return this.output.subarray(0, written);
  }

  readonly skip = (length: number): void => {
    let left = length;
    while (left > 0) {
      const r = this.record();
      if (r === undefined) throw new Error(`the lz4 frame ends ${left} bytes before the end of the range it passes over`);
      const content = r.raw ? r.size : Math.min(this.blockMax, left);
      if (content > left) throw this.damaged(`a raw block of ${r.size} bytes crosses the end of the range it passes over`);
      this.pos += 4 + r.size;
      this.nextField = undefined;
      left -= content;
    }
  };

  release(): void {
    giveBack(this.input);
    giveBack(this.output);
  }
}

/** The content stream of a stored file: LZ4 frames of pgbacula's shape can be passed over. */
export function openContent(fd: number, encoding: 'raw' | 'lz4', rangeSize: number, kernels: Kernels, region?: StoredRegion): ContentStream {
  if (encoding === 'raw') return new RawStream(fd, rangeSize, region);
  return Lz4BlockStream.open(fd, kernels, region) ?? new Lz4PushStream(fd, kernels, region);
}

/**
 * A stored file's content hashed range by range, as the backup computed it
 * (src/format/content-hash.ts): chunks in order, cut at range boundaries; a range passed over
 * unread counts as undefined.
 */
export class RangeHasher {
  private readonly hasher: StreamingHash<bigint>;
  private inRange = 0;
  readonly hashes: (string | undefined)[] = [];

  constructor(kernels: Kernels, private readonly rangeSize: number) {
    this.hasher = kernels.createHasher();
  }

  /** At a range boundary (nothing of the current range hashed yet). */
  get atBoundary(): boolean {
    return this.inRange === 0;
  }

  add(chunk: Uint8Array): void {
    for (let at = 0; at < chunk.length; ) {
      const n = Math.min(chunk.length - at, this.rangeSize - this.inRange);
      this.hasher.update(chunk.subarray(at, at + n));
      this.inRange += n;
      at += n;
      if (this.inRange === this.rangeSize) this.closeRange();
    }
  }

  /** A whole range passed over, at a boundary. */
  passOver(): void {
    this.hashes.push(undefined);
  }

  /** The last (short or empty) range closed; every range's hash in order. */
  finish(): (string | undefined)[] {
    if (this.inRange > 0 || this.hashes.length === 0) this.closeRange();
    return this.hashes;
  }

  private closeRange(): void {
    this.hashes.push(hashHex(this.hasher.digest()));
    this.hasher.reset();
    this.inRange = 0;
  }
}
