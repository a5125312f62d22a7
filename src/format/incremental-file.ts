/**
 * The incremental relation file (PostgreSQL 17's `INCREMENTAL.<name>` layout, used by pgbacula on
 * every major; docs/block-incremental.md): the blocks of one relation segment that changed since
 * the reference backup, with the length the segment had.
 *
 *   u32 magic 0xD3AE1F0D | u32 block count n | u32 truncation block length | n × u32 block number
 *   (relative to the segment, strictly ascending) | zero padding to a multiple of the block size
 *   (only when n > 0) | n pages, in the order of the block numbers
 *
 * All integers little-endian. Pure: values in, bytes out.
 */
export const INCREMENTAL_MAGIC = 0xd3ae1f0d;

/** The name an incremental file is stored under, in the directory of the file it stands for. */
export const INCREMENTAL_PREFIX = 'INCREMENTAL.';

/** Bytes before the first page: 12 + 4n, rounded up to a whole block when there are pages. */
export function incrementalHeaderLength(blockCount: number, blockSize: number): number {
  const bare = 12 + 4 * blockCount;
  if (blockCount === 0) return bare;
  return Math.ceil(bare / blockSize) * blockSize;
}

export function incrementalFileSize(blockCount: number, blockSize: number): number {
  return incrementalHeaderLength(blockCount, blockSize) + blockCount * blockSize;
}

export class IncrementalFileError extends Error {}

/** The header (padding included) for these relative block numbers. */
export function encodeIncrementalHeader(blocks: Uint32Array, truncationBlocks: number, blockSize: number, blocksPerSegment: number): Uint8Array {
  if (blocks.length > blocksPerSegment) throw new IncrementalFileError(`${blocks.length} blocks exceed a segment of ${blocksPerSegment}`);
  if (!Number.isInteger(truncationBlocks) || truncationBlocks < 0 || truncationBlocks > blocksPerSegment) {
    throw new IncrementalFileError(`truncation length ${truncationBlocks} is outside 0..${blocksPerSegment}`);
  }
  const out = new Uint8Array(incrementalHeaderLength(blocks.length, blockSize));
  const view = new DataView(out.buffer);
  view.setUint32(0, INCREMENTAL_MAGIC, true);
  view.setUint32(4, blocks.length, true);
  view.setUint32(8, truncationBlocks, true);
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i]!;
    if (b >= blocksPerSegment || (i > 0 && b <= blocks[i - 1]!)) throw new IncrementalFileError(`block numbers must be ascending and below ${blocksPerSegment} (block ${b} at ${i})`);
    view.setUint32(12 + 4 * i, b, true);
  }
  return out;
}

export interface IncrementalHeader {
  /** Relative block numbers, strictly ascending. */
  readonly blocks: Uint32Array;
  readonly truncationBlocks: number;
  /** Offset of the first page. */
  readonly headerLength: number;
}

/** How many leading bytes parseIncrementalHeader needs, from the first 12. */
export function incrementalHeaderBytesNeeded(first12: Uint8Array, name = 'incremental file'): number {
  if (first12.length < 12) throw new IncrementalFileError(`${name} ends before its 12-byte header`);
  const view = new DataView(first12.buffer, first12.byteOffset, first12.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== INCREMENTAL_MAGIC) throw new IncrementalFileError(`${name} has a bad magic number 0x${magic.toString(16)} (expected 0x${INCREMENTAL_MAGIC.toString(16)})`);
  return 12 + 4 * view.getUint32(4, true);
}

/** Parse and check a header: `bytes` holds at least incrementalHeaderBytesNeeded of the file. */
export function parseIncrementalHeader(bytes: Uint8Array, o: { blockSize: number; blocksPerSegment: number; name?: string }): IncrementalHeader {
  const name = o.name ?? 'incremental file';
  const need = incrementalHeaderBytesNeeded(bytes, name);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(4, true);
  const truncationBlocks = view.getUint32(8, true);
  if (n > o.blocksPerSegment) throw new IncrementalFileError(`${name} lists ${n} blocks, more than a segment of ${o.blocksPerSegment}`);
  if (truncationBlocks > o.blocksPerSegment) throw new IncrementalFileError(`${name} has truncation length ${truncationBlocks}, more than a segment of ${o.blocksPerSegment}`);
  if (bytes.length < need) throw new IncrementalFileError(`${name} ends inside its block list`);
  const blocks = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const b = view.getUint32(12 + 4 * i, true);
    if (b >= o.blocksPerSegment || (i > 0 && b <= blocks[i - 1]!)) throw new IncrementalFileError(`${name}: block numbers are not ascending below ${o.blocksPerSegment} (block ${b} at ${i})`);
    blocks[i] = b;
  }
  return { blocks, truncationBlocks, headerLength: incrementalHeaderLength(n, o.blockSize) };
}

/** The length of the reconstructed segment in blocks: the truncation length or past the last listed block. */
export function reconstructedBlocks(h: Pick<IncrementalHeader, 'blocks' | 'truncationBlocks'>): number {
  return Math.max(h.truncationBlocks, h.blocks.length ? h.blocks[h.blocks.length - 1]! + 1 : 0);
}

/** The path of the file an incremental file stands for (`d/INCREMENTAL.n` → `d/n`); other paths unchanged. */
export function wholePathOf(path: string): string {
  const slash = path.lastIndexOf('/');
  const name = path.slice(slash + 1);
  return name.startsWith(INCREMENTAL_PREFIX) ? `${path.slice(0, slash + 1)}${name.slice(INCREMENTAL_PREFIX.length)}` : path;
}

/** The path an incremental file of `path` is stored under (`d/n` → `d/INCREMENTAL.n`). */
export function incrementalPathOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return `${path.slice(0, slash + 1)}${INCREMENTAL_PREFIX}${path.slice(slash + 1)}`;
}
