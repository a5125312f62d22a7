import { hexDigits } from './hex.js';

/** A 64-bit hash as the manifest records it: 16 lower-case hex digits. */
export function hashHex(h: bigint): string {
  return hexDigits(h, 16, 'lower');
}

/**
 * The content hash of a stored file. Ranges of a large file are hashed in different threads,
 * so a file of one range has the hash of its bytes, and a file of several ranges has the hash
 * of its range hashes (each as 8 bytes, little-endian, in order). Verification recomputes it the
 * same way from the same range size, recorded in the manifest.
 */
export function combineRangeHashes(rangeHashes: readonly string[], hash: (data: Uint8Array) => bigint): string {
  if (rangeHashes.length === 1) return rangeHashes[0]!;
  const bytes = new Uint8Array(rangeHashes.length * 8);
  const view = new DataView(bytes.buffer);
  rangeHashes.forEach((h, i) => view.setBigUint64(i * 8, BigInt(`0x${h}`), true));
  return hashHex(hash(bytes));
}

/** Ranges of a file of `size` bytes for a given range size: [offset, length][] (one empty range for an empty file). */
export function fileRanges(size: number, rangeSize: number): Array<[number, number]> {
  if (size === 0) return [[0, 0]];
  const out: Array<[number, number]> = [];
  for (let off = 0; off < size; off += rangeSize) out.push([off, Math.min(rangeSize, size - off)]);
  return out;
}

/** The content hash of bytes held in memory, range by range exactly as the workers compute it. */
export function hashContent(data: Uint8Array, rangeSize: number, hash: (data: Uint8Array) => bigint): string {
  const hashes = fileRanges(data.length, rangeSize).map(([off, len]) => hashHex(hash(data.subarray(off, off + len))));
  return combineRangeHashes(hashes, hash);
}
