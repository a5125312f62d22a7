/**
 * The LZ4 frame format (lz4/doc/lz4_Frame_format.md, version 1.6.x), in which the repository stores
 * compressed files, so that an operator can read any stored file with the stock `lz4 -d`.
 *
 * A frame is
 *
 *     magic 0x184D2204 (u32 LE)
 *     descriptor: FLG, BD, [content size u64 LE], [dictionary id u32 LE], HC
 *     block records: size u32 LE (bit 31 set: stored raw), data, [block checksum u32 LE]
 *     end mark 0x00000000 (u32 LE), [content checksum u32 LE]
 *
 * What we write: version 01, independent blocks (each block decodes alone: a file's ranges are
 * compressed in different worker threads, and concatenating their block records in order between
 * one header and one end mark is a valid frame), blocks of at most 4 MiB (BD 0x70), no block
 * checksums, no dictionary, content size only when the caller knows it exactly.
 *
 * The content checksum (XXH32 of the whole raw content) is OFF by default: XXH32 cannot be
 * computed from hashes of separate ranges, so it would need one more sequential pass over every
 * raw byte in file order on one thread (about 3 GB/s: a bound on the whole backup), while the
 * workers already hash every range with the repository's hash (src/format/kernels.ts), which is
 * what restore checks. `lz4 -d` still checks the frame's structure and each block's bounds.
 *
 * What we read: any frame of the lz4 CLI (`-1`…`-12`, `--content-size`, `-BD` linked blocks,
 * `-BX` block checksums, `--no-frame-crc`, `-B4`…`-B7`), concatenated frames and skippable frames.
 * We refuse, naming the byte offset: the legacy format (`lz4 -l`), frames that need a dictionary,
 * reserved bits, bad checksums, oversized blocks, truncation.
 *
 * Pure: bytes in, bytes out; the LZ4 block codec and XXH32 come from the caller's kernels.
 */

import { PgbaculaError } from '../errors.js';
import { hexLiteral } from './hex.js';

export const LZ4_FRAME_MAGIC = 0x184d2204;
/** `lz4 -l` (the pre-frame "legacy" format): refused. */
export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** Skippable frames carry 0x184D2A50 … 0x184D2A5F. */
const SKIPPABLE_MAGIC_BASE = 0x184d2a50;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;

/** Largest block we write: BD block maximum size 7 = 4 MiB, as `lz4` writes by default. */
export const LZ4_FRAME_BLOCK_BYTES = 4 * 1024 * 1024;
/** Block size field bit 31: the block is stored raw. */
const BLOCK_UNCOMPRESSED = 0x80000000;
const END_MARK = 0;

const FLG_VERSION_MASK = 0xc0;
const FLG_VERSION_01 = 0x40;
const FLG_BLOCK_INDEPENDENCE = 0x20;
const FLG_BLOCK_CHECKSUM = 0x10;
const FLG_CONTENT_SIZE = 0x08;
const FLG_CONTENT_CHECKSUM = 0x04;
const FLG_RESERVED = 0x02;
const FLG_DICT_ID = 0x01;
const BD_RESERVED = 0x8f;
const BD_BLOCK_MAX_SHIFT = 4;
/** BD block maximum size ids 4…7 → 64 KiB, 256 KiB, 1 MiB, 4 MiB. */
const BLOCK_MAX_BY_ID: ReadonlyMap<number, number> = new Map([
  [4, 64 * 1024],
  [5, 256 * 1024],
  [6, 1024 * 1024],
  [7, 4 * 1024 * 1024],
]);
/** How far back a match of a linked block may reach into earlier blocks. */
const LINKED_DICT_BYTES = 64 * 1024;

/** The kernels the frame codec needs; src/format/kernels.ts `Kernels` has them. */
export interface Lz4FrameKernels {
  lz4CompressBound(length: number): number;
  lz4CompressBlock(src: Uint8Array, dst: Uint8Array, acceleration?: number): number;
  lz4DecompressBlock(src: Uint8Array, dst: Uint8Array, dict?: Uint8Array): number;
  xxh32(data: Uint8Array, seed?: number): number;
  createXxh32(seed?: number): { update(data: Uint8Array): void; digest(): number };
}

// ---- XXH32 of the frame descriptor ------------------------------------------------------------

const PRIME32_1 = 0x9e3779b1;
const PRIME32_2 = 0x85ebca77;
const PRIME32_3 = 0xc2b2ae3d;
const PRIME32_4 = 0x27d4eb2f;
const PRIME32_5 = 0x165667b1;

function rotl32(value: number, bits: number): number {
  return ((value << bits) | (value >>> (32 - bits))) >>> 0;
}

function xxh32Round(accumulator: number, lane: number): number {
  return Math.imul(rotl32((accumulator + Math.imul(lane, PRIME32_2)) >>> 0, 13), PRIME32_1) >>> 0;
}

/**
 * XXH32 in plain TypeScript, for the few bytes of a frame descriptor (so writing a header needs no
 * kernels); bulk checksums go through the kernels.
 */
export function xxh32Small(bytes: Uint8Array, seed = 0): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = bytes.length;
  let offset = 0;
  let hash: number;
  if (length >= 16) {
    let v1 = (seed + PRIME32_1 + PRIME32_2) >>> 0;
    let v2 = (seed + PRIME32_2) >>> 0;
    let v3 = seed >>> 0;
    let v4 = (seed - PRIME32_1) >>> 0;
    for (; offset + 16 <= length; offset += 16) {
      v1 = xxh32Round(v1, view.getUint32(offset, true));
      v2 = xxh32Round(v2, view.getUint32(offset + 4, true));
      v3 = xxh32Round(v3, view.getUint32(offset + 8, true));
      v4 = xxh32Round(v4, view.getUint32(offset + 12, true));
    }
    hash = (rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18)) >>> 0;
  } else {
    hash = (seed + PRIME32_5) >>> 0;
  }
  hash = (hash + length) >>> 0;
  for (; offset + 4 <= length; offset += 4) {
    hash = (hash + Math.imul(view.getUint32(offset, true), PRIME32_3)) >>> 0;
    hash = Math.imul(rotl32(hash, 17), PRIME32_4) >>> 0;
  }
  for (; offset < length; offset++) {
    hash = (hash + Math.imul(bytes[offset] ?? 0, PRIME32_5)) >>> 0;
    hash = Math.imul(rotl32(hash, 11), PRIME32_1) >>> 0;
  }
  hash ^= hash >>> 15;
  hash = Math.imul(hash, PRIME32_2);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, PRIME32_3);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** HC: the second byte of XXH32(descriptor from FLG up to HC, seed 0). */
function headerChecksum(descriptor: Uint8Array): number {
  return (xxh32Small(descriptor, 0) >>> 8) & 0xff;
}

// ---- writer ----------------------------------------------------------------------------------

export interface Lz4FrameHeaderOptions {
  /**
   * The raw size of the whole content, only when it is known before the blocks are written and
   * cannot change (a PostgreSQL file may grow or shrink while it is backed up). Default: absent.
   */
  contentSize?: number | bigint;
  /**
   * Announce an XXH32 of the whole content after the end mark (default false, see the module
   * comment); the caller then passes it to {@link encodeFrameEnd}.
   */
  contentChecksum?: boolean;
}

/** Magic and descriptor: 7 bytes, 15 with a content size. */
export function encodeFrameHeader(options: Lz4FrameHeaderOptions = {}): Uint8Array {
  const hasSize = options.contentSize !== undefined;
  const header = new Uint8Array(hasSize ? 15 : 7);
  const view = new DataView(header.buffer);
  view.setUint32(0, LZ4_FRAME_MAGIC, true);
  header[4] =
    FLG_VERSION_01 |
    FLG_BLOCK_INDEPENDENCE |
    (hasSize ? FLG_CONTENT_SIZE : 0) |
    (options.contentChecksum === true ? FLG_CONTENT_CHECKSUM : 0);
  header[5] = 7 << BD_BLOCK_MAX_SHIFT;
  if (options.contentSize !== undefined) {
    const size = BigInt(options.contentSize);
    if (size < 0n || size >= 1n << 64n) {
      throw new PgbaculaError('INTERNAL', `lz4 frame content size ${size} is out of range`);
    }
    view.setBigUint64(6, size, true);
  }
  header[header.length - 1] = headerChecksum(header.subarray(4, header.length - 1));
  return header;
}

/** End mark, followed by the content checksum when the header announced one. */
export function encodeFrameEnd(contentChecksum?: number): Uint8Array {
  const end = new Uint8Array(contentChecksum === undefined ? 4 : 8);
  const view = new DataView(end.buffer);
  view.setUint32(0, END_MARK, true);
  if (contentChecksum !== undefined) view.setUint32(4, contentChecksum >>> 0, true);
  return end;
}

/** Reusable memory of one thread's encoder: compressed blocks wait here until sized. */
export interface Lz4EncodeScratch {
  compressed: Uint8Array;
}

/** A scratch for ranges of up to `maxRawBytes` (it grows if a larger range comes). */
export function createLz4EncodeScratch(kernels: Lz4FrameKernels, maxRawBytes: number): Lz4EncodeScratch {
  return { compressed: new Uint8Array(scratchBytesFor(kernels, maxRawBytes)) };
}

function scratchBytesFor(kernels: Lz4FrameKernels, rawBytes: number): number {
  const fullBlocks = Math.floor(rawBytes / LZ4_FRAME_BLOCK_BYTES);
  const tail = rawBytes % LZ4_FRAME_BLOCK_BYTES;
  return fullBlocks * kernels.lz4CompressBound(LZ4_FRAME_BLOCK_BYTES) + (tail > 0 ? kernels.lz4CompressBound(tail) : 0);
}

export interface Lz4EncodeOptions {
  /** LZ4 acceleration, ≥ 1 (1 = `lz4 -1`, the default); the fallback kernels ignore it. */
  acceleration?: number;
  /**
   * Write the records into this memory (a recycled buffer) instead of a new one. It must hold
   * {@link encodedBoundBytes} of the input; blocks are then compressed straight into it.
   */
  into?: Uint8Array;
}

/** The most bytes {@link encodeBlocks} can produce for `rawBytes` of input (records included). */
export function encodedBoundBytes(kernels: Lz4FrameKernels, rawBytes: number): number {
  const blocks = Math.ceil(rawBytes / LZ4_FRAME_BLOCK_BYTES);
  return scratchBytesFor(kernels, rawBytes) + 4 * blocks;
}

/**
 * The block records of `raw` (a whole file, or one range of it): blocks of at most
 * {@link LZ4_FRAME_BLOCK_BYTES}, each compressed, or stored raw when compression does not make it
 * smaller. Concatenating the records of all ranges of a file in order, between
 * {@link encodeFrameHeader} and {@link encodeFrameEnd}, gives a valid frame.
 *
 * All records are views of ONE new ArrayBuffer, exactly their total size, which a worker can
 * transfer to the main thread (`records[0].buffer`); an empty `raw` gives no record.
 */
export function encodeBlocks(
  raw: Uint8Array,
  kernels: Lz4FrameKernels,
  scratch: Lz4EncodeScratch,
  options: Lz4EncodeOptions = {},
): Uint8Array[] {
  if (options.into !== undefined && options.into.length >= encodedBoundBytes(kernels, raw.length)) {
    return encodeBlocksInto(raw, kernels, options.into, options.acceleration);
  }
  const needed = scratchBytesFor(kernels, raw.length);
  if (scratch.compressed.length < needed) scratch.compressed = new Uint8Array(needed);
  const compressed = scratch.compressed;

  // First pass: compress every block into the scratch; remember where each landed.
  const blockCount = Math.ceil(raw.length / LZ4_FRAME_BLOCK_BYTES);
  const storedLengths = new Array<number>(blockCount);
  const compressedAt = new Array<number>(blockCount);
  let scratchUsed = 0;
  let total = 0;
  for (let index = 0; index < blockCount; index++) {
    const start = index * LZ4_FRAME_BLOCK_BYTES;
    const block = raw.subarray(start, Math.min(start + LZ4_FRAME_BLOCK_BYTES, raw.length));
    const bound = kernels.lz4CompressBound(block.length);
    const written = kernels.lz4CompressBlock(block, compressed.subarray(scratchUsed, scratchUsed + bound), options.acceleration);
    if (written > 0 && written < block.length) {
      compressedAt[index] = scratchUsed;
      storedLengths[index] = written;
      scratchUsed += written;
    } else {
      compressedAt[index] = -1;
      storedLengths[index] = block.length;
    }
    total += 4 + (storedLengths[index] ?? 0);
  }

  // Second pass: lay the records out in one exactly sized buffer.
  const output = new Uint8Array(total);
  const view = new DataView(output.buffer);
  const records: Uint8Array[] = [];
  let at = 0;
  for (let index = 0; index < blockCount; index++) {
    const length = storedLengths[index] ?? 0;
    const from = compressedAt[index] ?? -1;
    if (from >= 0) {
      view.setUint32(at, length, true);
      output.set(compressed.subarray(from, from + length), at + 4);
    } else {
      const start = index * LZ4_FRAME_BLOCK_BYTES;
      view.setUint32(at, (length | BLOCK_UNCOMPRESSED) >>> 0, true);
      output.set(raw.subarray(start, start + length), at + 4);
    }
    records.push(output.subarray(at, at + 4 + length));
    at += 4 + length;
  }
  return records;
}

/** {@link encodeBlocks} straight into caller memory: no scratch, no second copy, no allocation. */
function encodeBlocksInto(raw: Uint8Array, kernels: Lz4FrameKernels, into: Uint8Array, acceleration: number | undefined): Uint8Array[] {
  const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
  const records: Uint8Array[] = [];
  let at = 0;
  for (let start = 0; start < raw.length; start += LZ4_FRAME_BLOCK_BYTES) {
    const block = raw.subarray(start, Math.min(start + LZ4_FRAME_BLOCK_BYTES, raw.length));
    const bound = kernels.lz4CompressBound(block.length);
    const written = kernels.lz4CompressBlock(block, into.subarray(at + 4, at + 4 + bound), acceleration);
    let length: number;
    if (written > 0 && written < block.length) {
      length = written;
      view.setUint32(at, length, true);
    } else {
      length = block.length;
      view.setUint32(at, (length | BLOCK_UNCOMPRESSED) >>> 0, true);
      into.set(block, at + 4);
    }
    records.push(into.subarray(at, at + 4 + length));
    at += 4 + length;
  }
  return records;
}

/** A whole frame of `raw` in memory: header, blocks, end mark (and content checksum if asked). */
export function encodeFrame(
  raw: Uint8Array,
  kernels: Lz4FrameKernels,
  options: Lz4FrameHeaderOptions & Lz4EncodeOptions = {},
): Uint8Array {
  const header = encodeFrameHeader(options);
  const records = encodeBlocks(raw, kernels, createLz4EncodeScratch(kernels, raw.length), options);
  const end = encodeFrameEnd(options.contentChecksum === true ? kernels.xxh32(raw, 0) : undefined);
  const body = records.reduce((sum, record) => sum + record.length, 0);
  const frame = new Uint8Array(header.length + body + end.length);
  frame.set(header, 0);
  let at = header.length;
  for (const record of records) {
    frame.set(record, at);
    at += record.length;
  }
  frame.set(end, at);
  return frame;
}

// ---- reader ----------------------------------------------------------------------------------

/** A parsed frame descriptor. */
export interface Lz4FrameDescriptor {
  /** Bytes from FLG to HC inclusive. */
  readonly descriptorBytes: number;
  readonly blockIndependence: boolean;
  readonly blockChecksum: boolean;
  readonly contentChecksum: boolean;
  readonly contentSize: bigint | undefined;
  readonly blockMaxBytes: number;
}

function corrupt(label: string, offset: number, message: string, hint?: string): PgbaculaError {
  return new PgbaculaError('REPOSITORY', `lz4 frame${label} is not valid at byte ${offset}: ${message}`, {
    hint: hint ?? 'The stored file is damaged or is not an lz4 frame; restore it from another backup.',
  });
}

function hex(value: number, digits: number): string {
  return hexLiteral(value, digits, 'lower');
}

/** How many descriptor bytes (FLG…HC) follow a given FLG byte. */
function descriptorLengthFor(flg: number): number {
  return 3 + ((flg & FLG_CONTENT_SIZE) !== 0 ? 8 : 0) + ((flg & FLG_DICT_ID) !== 0 ? 4 : 0);
}

/**
 * Parses the descriptor that starts at `bytes[0]` (FLG); `offset` is its position in the stream,
 * for messages. Throws on anything we do not read.
 */
export function parseFrameDescriptor(bytes: Uint8Array, offset = 0, label = ''): Lz4FrameDescriptor {
  const flg = bytes[0];
  const bd = bytes[1];
  if (flg === undefined || bd === undefined) throw corrupt(label, offset, 'the frame descriptor is truncated');
  if ((flg & FLG_VERSION_MASK) !== FLG_VERSION_01) {
    throw corrupt(label, offset, `frame version ${(flg & FLG_VERSION_MASK) >> 6} is not 1 (FLG ${hex(flg, 2)})`);
  }
  if ((flg & FLG_RESERVED) !== 0) throw corrupt(label, offset, `a reserved FLG bit is set (FLG ${hex(flg, 2)})`);
  if ((bd & BD_RESERVED) !== 0) throw corrupt(label, offset + 1, `a reserved BD bit is set (BD ${hex(bd, 2)})`);
  const blockMaxBytes = BLOCK_MAX_BY_ID.get(bd >> BD_BLOCK_MAX_SHIFT);
  if (blockMaxBytes === undefined) {
    throw corrupt(label, offset + 1, `block maximum size id ${bd >> BD_BLOCK_MAX_SHIFT} is not 4 to 7 (BD ${hex(bd, 2)})`);
  }
  const length = descriptorLengthFor(flg);
  if (bytes.length < length) throw corrupt(label, offset, 'the frame descriptor is truncated');
  const expected = headerChecksum(bytes.subarray(0, length - 1));
  const stored = bytes[length - 1] ?? -1;
  if (stored !== expected) {
    throw corrupt(label, offset + length - 1, `header checksum ${hex(stored, 2)} does not match ${hex(expected, 2)}`);
  }
  if ((flg & FLG_DICT_ID) !== 0) {
    throw corrupt(
      label,
      offset,
      'the frame needs a preset dictionary (FLG dictionary id bit), which pgbacula does not have',
      'Decompress it with lz4 and the dictionary it was made with.',
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, length);
  return {
    descriptorBytes: length,
    blockIndependence: (flg & FLG_BLOCK_INDEPENDENCE) !== 0,
    blockChecksum: (flg & FLG_BLOCK_CHECKSUM) !== 0,
    contentChecksum: (flg & FLG_CONTENT_CHECKSUM) !== 0,
    contentSize: (flg & FLG_CONTENT_SIZE) !== 0 ? view.getBigUint64(2, true) : undefined,
    blockMaxBytes,
  };
}

type DecoderState =
  | { kind: 'magic' }
  | { kind: 'flgBd' }
  | { kind: 'descriptor'; length: number }
  | { kind: 'skippableSize' }
  | { kind: 'skip'; remaining: number }
  | { kind: 'blockSize' }
  | { kind: 'blockData'; size: number; raw: boolean; recordOffset: number }
  | { kind: 'contentChecksum' };

export interface Lz4FrameDecoderOptions {
  /** Names the stream in messages, e.g. a file's virtual path. */
  label?: string;
}

/**
 * An incremental reader of one lz4 stream (frames, possibly concatenated, and skippable frames):
 * feed it the stored bytes in pieces of any size with {@link push}, then {@link end}. It hands
 * each decoded block to `onContent`, as a view that is only valid during the call (the decoder
 * reuses its memory): write or copy it there. Memory: one block (≤ 4 MiB) plus 64 KiB.
 */
export class Lz4FrameDecoder {
  private readonly kernels: Lz4FrameKernels;
  private readonly onContent: (content: Uint8Array) => void;
  private readonly label: string;
  private state: DecoderState = { kind: 'magic' };
  /** Bytes of the stream consumed so far: the offset of the next byte. */
  private position = 0;
  private pending = new Uint8Array(16);
  private pendingLength = 0;
  private frames = 0;
  private flgBd = new Uint8Array(2);

  private descriptor: Lz4FrameDescriptor | undefined;
  private frameContentBytes = 0n;
  private contentHash: { update(data: Uint8Array): void; digest(): number } | undefined;
  /** Decoded-block area, after LINKED_DICT_BYTES of room for a linked block's dictionary. */
  private output = new Uint8Array(0);
  /** The last up to 64 KiB of content of the current frame (linked blocks only). */
  private dictionary = new Uint8Array(0);
  private dictionaryLength = 0;

  constructor(kernels: Lz4FrameKernels, onContent: (content: Uint8Array) => void, options: Lz4FrameDecoderOptions = {}) {
    this.kernels = kernels;
    this.onContent = onContent;
    this.label = options.label === undefined ? '' : ` of ${options.label}`;
  }

  /** Stream bytes consumed so far. */
  get bytesRead(): number {
    return this.position;
  }

  /** Frames completely read so far. */
  get framesRead(): number {
    return this.frames;
  }

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.state.kind === 'skip') {
        const take = Math.min(this.state.remaining, chunk.length - at);
        at += take;
        this.position += take;
        this.state = this.state.remaining === take ? { kind: 'magic' } : { kind: 'skip', remaining: this.state.remaining - take };
        if (this.state.kind === 'magic') this.frames++;
        continue;
      }
      const need = this.bytesNeeded();
      let item: Uint8Array;
      if (this.pendingLength === 0 && chunk.length - at >= need) {
        item = chunk.subarray(at, at + need);
        at += need;
      } else {
        if (this.pending.length < need) {
          const grown = new Uint8Array(Math.max(need, this.pending.length * 2));
          grown.set(this.pending.subarray(0, this.pendingLength));
          this.pending = grown;
        }
        const take = Math.min(need - this.pendingLength, chunk.length - at);
        this.pending.set(chunk.subarray(at, at + take), this.pendingLength);
        this.pendingLength += take;
        at += take;
        if (this.pendingLength < need) return;
        item = this.pending.subarray(0, need);
        this.pendingLength = 0;
      }
      const itemOffset = this.position;
      this.position += need;
      this.consume(item, itemOffset);
    }
  }

  /** The input is complete: throws unless it ended exactly after a whole frame. */
  end(): void {
    if (this.state.kind === 'magic' && this.pendingLength === 0) {
      if (this.frames === 0) throw corrupt(this.label, 0, 'the stream is empty: no lz4 frame');
      return;
    }
    const at = this.position + this.pendingLength;
    const what: Record<DecoderState['kind'], string> = {
      magic: 'a frame magic number',
      flgBd: 'the frame descriptor',
      descriptor: 'the frame descriptor',
      skippableSize: 'the size of a skippable frame',
      skip: 'the rest of a skippable frame',
      blockSize: 'a block size or the end mark',
      blockData: 'the rest of a block',
      contentChecksum: 'the content checksum',
    };
    const started =
      this.state.kind === 'blockData' ? `the block record that starts at byte ${this.state.recordOffset}` : what[this.state.kind];
    throw corrupt(this.label, at, `the stream is truncated: it ends inside ${started}`);
  }

  private bytesNeeded(): number {
    switch (this.state.kind) {
      case 'magic':
      case 'skippableSize':
      case 'blockSize':
      case 'contentChecksum':
        return 4;
      case 'flgBd':
        return 2;
      case 'descriptor':
        return this.state.length - 2;
      case 'blockData':
        return this.state.size + (this.descriptor?.blockChecksum === true ? 4 : 0);
      case 'skip':
        return this.state.remaining;
    }
  }

  private consume(item: Uint8Array, offset: number): void {
    const view = new DataView(item.buffer, item.byteOffset, item.byteLength);
    switch (this.state.kind) {
      case 'magic': {
        const magic = view.getUint32(0, true);
        if (magic === LZ4_FRAME_MAGIC) {
          this.state = { kind: 'flgBd' };
        } else if ((magic & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC_BASE) {
          this.state = { kind: 'skippableSize' };
        } else if (magic === LZ4_LEGACY_MAGIC) {
          throw corrupt(this.label, offset, 'this is the legacy lz4 format (lz4 -l), which pgbacula does not read', 'Recompress it without -l: lz4 -d then lz4.');
        } else {
          throw corrupt(this.label, offset, `magic number ${hex(magic, 8)} is not an lz4 frame's (${hex(LZ4_FRAME_MAGIC, 8)})`);
        }
        return;
      }
      case 'flgBd': {
        this.flgBd.set(item);
        const flg = item[0] ?? 0;
        const length = descriptorLengthFor(flg);
        this.state = { kind: 'descriptor', length };
        return;
      }
      case 'descriptor': {
        const whole = new Uint8Array(this.state.length);
        whole.set(this.flgBd, 0);
        whole.set(item, 2);
        this.startFrame(parseFrameDescriptor(whole, offset - 2, this.label));
        return;
      }
      case 'skippableSize': {
        const size = view.getUint32(0, true);
        if (size === 0) {
          this.frames++;
          this.state = { kind: 'magic' };
        } else {
          this.state = { kind: 'skip', remaining: size };
        }
        return;
      }
      case 'blockSize': {
        const field = view.getUint32(0, true);
        if (field === END_MARK) {
          this.endBlocks(offset);
          return;
        }
        const size = (field & ~BLOCK_UNCOMPRESSED) >>> 0;
        const descriptor = this.requireDescriptor();
        if (size > descriptor.blockMaxBytes) {
          throw corrupt(this.label, offset, `block size ${size} is over the frame's block maximum ${descriptor.blockMaxBytes}`);
        }
        const raw = (field & BLOCK_UNCOMPRESSED) !== 0;
        if (size === 0 && !descriptor.blockChecksum) {
          // An empty stored block (0x80000000): nothing follows its size field.
          this.decodeBlock(new Uint8Array(0), 0, raw, offset);
          return;
        }
        this.state = { kind: 'blockData', size, raw, recordOffset: offset };
        return;
      }
      case 'blockData': {
        this.decodeBlock(item, this.state.size, this.state.raw, this.state.recordOffset);
        this.state = { kind: 'blockSize' };
        return;
      }
      case 'contentChecksum': {
        const stored = view.getUint32(0, true);
        const computed = this.contentHash?.digest();
        if (computed !== stored) {
          throw corrupt(
            this.label,
            offset,
            `content checksum ${hex(stored, 8)} does not match the decoded content's ${hex(computed ?? 0, 8)}`,
          );
        }
        this.finishFrame();
        return;
      }
      case 'skip':
        return;
    }
  }

  private requireDescriptor(): Lz4FrameDescriptor {
    if (this.descriptor === undefined) throw new PgbaculaError('INTERNAL', 'lz4 frame decoder has no descriptor');
    return this.descriptor;
  }

  private startFrame(descriptor: Lz4FrameDescriptor): void {
    this.descriptor = descriptor;
    this.frameContentBytes = 0n;
    this.contentHash = descriptor.contentChecksum ? this.kernels.createXxh32(0) : undefined;
    this.dictionaryLength = 0;
    const outputBytes = LINKED_DICT_BYTES + descriptor.blockMaxBytes;
    if (this.output.length < outputBytes) this.output = new Uint8Array(outputBytes);
    if (!descriptor.blockIndependence && this.dictionary.length === 0) this.dictionary = new Uint8Array(LINKED_DICT_BYTES);
    this.state = { kind: 'blockSize' };
  }

  private decodeBlock(record: Uint8Array, size: number, raw: boolean, recordOffset: number): void {
    const descriptor = this.requireDescriptor();
    const data = record.subarray(0, size);
    if (descriptor.blockChecksum) {
      const stored = new DataView(record.buffer, record.byteOffset + size, 4).getUint32(0, true);
      const computed = this.kernels.xxh32(data, 0);
      if (stored !== computed) {
        throw corrupt(
          this.label,
          recordOffset + 4 + size,
          `block checksum ${hex(stored, 8)} does not match the block's ${hex(computed, 8)}`,
        );
      }
    }
    let content: Uint8Array;
    if (raw) {
      content = data;
    } else {
      const linked = !descriptor.blockIndependence && this.dictionaryLength > 0;
      const dst = this.output.subarray(LINKED_DICT_BYTES, LINKED_DICT_BYTES + descriptor.blockMaxBytes);
      let dict: Uint8Array | undefined;
      if (linked) {
        // The dictionary right before dst, so liblz4 reads it as a prefix of the output.
        dict = this.output.subarray(LINKED_DICT_BYTES - this.dictionaryLength, LINKED_DICT_BYTES);
        dict.set(this.dictionary.subarray(0, this.dictionaryLength));
      }
      let written: number;
      try {
        written = this.kernels.lz4DecompressBlock(data, dst, dict);
      } catch (error) {
        throw new PgbaculaError(
          'REPOSITORY',
          `lz4 frame${this.label} is not valid at byte ${recordOffset}: the compressed block of ${size} bytes does not decode within the block maximum ${descriptor.blockMaxBytes}`,
          { hint: 'The stored file is damaged; restore it from another backup.', cause: error },
        );
      }
      content = dst.subarray(0, written);
    }
    if (!descriptor.blockIndependence) this.remember(content);
    this.frameContentBytes += BigInt(content.length);
    if (descriptor.contentSize !== undefined && this.frameContentBytes > descriptor.contentSize) {
      throw corrupt(this.label, recordOffset, `the blocks decode to more than the content size ${descriptor.contentSize} of the header`);
    }
    this.contentHash?.update(content);
    this.onContent(content);
  }

  /** Keeps the last 64 KiB of content for the next linked block. */
  private remember(content: Uint8Array): void {
    const dictionary = this.dictionary;
    if (content.length >= LINKED_DICT_BYTES) {
      dictionary.set(content.subarray(content.length - LINKED_DICT_BYTES));
      this.dictionaryLength = LINKED_DICT_BYTES;
      return;
    }
    const keep = Math.min(this.dictionaryLength, LINKED_DICT_BYTES - content.length);
    dictionary.copyWithin(0, this.dictionaryLength - keep, this.dictionaryLength);
    dictionary.set(content, keep);
    this.dictionaryLength = keep + content.length;
  }

  private endBlocks(offset: number): void {
    const descriptor = this.requireDescriptor();
    if (descriptor.contentSize !== undefined && this.frameContentBytes !== descriptor.contentSize) {
      throw corrupt(
        this.label,
        offset,
        `the frame decodes to ${this.frameContentBytes} bytes, its header says ${descriptor.contentSize}`,
      );
    }
    if (descriptor.contentChecksum) {
      this.state = { kind: 'contentChecksum' };
    } else {
      this.finishFrame();
    }
  }

  private finishFrame(): void {
    this.frames++;
    this.descriptor = undefined;
    this.contentHash = undefined;
    this.state = { kind: 'magic' };
  }
}

/**
 * Decodes a whole lz4 stream held in memory (one or more frames) into one buffer. For large files
 * prefer {@link Lz4FrameDecoder}, which needs memory for one block only.
 */
export function decodeFrame(stored: Uint8Array, kernels: Lz4FrameKernels, options: Lz4FrameDecoderOptions = {}): Uint8Array {
  let output = new Uint8Array(initialOutputBytes(stored));
  let length = 0;
  const decoder = new Lz4FrameDecoder(
    kernels,
    (content) => {
      if (length + content.length > output.length) {
        const grown = new Uint8Array(Math.max(length + content.length, output.length * 2));
        grown.set(output.subarray(0, length));
        output = grown;
      }
      output.set(content, length);
      length += content.length;
    },
    options,
  );
  decoder.push(stored);
  decoder.end();
  return output.subarray(0, length);
}

/** The header's content size when the stream starts with a frame that has one, else a guess. */
function initialOutputBytes(stored: Uint8Array): number {
  if (stored.length >= 15) {
    const view = new DataView(stored.buffer, stored.byteOffset, stored.byteLength);
    const flg = stored[4] ?? 0;
    if (view.getUint32(0, true) === LZ4_FRAME_MAGIC && (flg & FLG_CONTENT_SIZE) !== 0) {
      const size = view.getBigUint64(6, true);
      if (size <= BigInt(Number.MAX_SAFE_INTEGER) && size <= 2n ** 32n) return Number(size);
    }
  }
  return Math.max(stored.length * 3, 1024);
}
