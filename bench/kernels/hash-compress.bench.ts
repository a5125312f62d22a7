/**
 * Hash and lz4 kernels, single thread: the native addon (native/kernels, liblz4 + libxxhash) against
 * the fallback packages (lz4-napi, @node-rs/xxhash), on 8 MiB ranges of PostgreSQL relation files.
 * MB/s are 10^6 bytes of RAW data per second (compression and decompression alike).
 *
 *   native/kernels/build.sh && npx tsc -p tsconfig.json && node dist/bench/kernels/hash-compress.bench.js [FILE...]
 *
 * FILE: relation segment files of a real cluster (e.g. pgbench -i -s 10's pgbench_accounts and its
 * index, or a table of md5 text rows); each contributes its first 8 MiB. Without FILE, synthetic
 * heap pages (half the rows md5-like hex text) stand in. Also prints XXH64 native and xxhash-wasm,
 * the evidence for the repository hash being XXH3 (src/format/kernels.ts).
 */

import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import { Bench } from 'tinybench';
import xxhash from 'xxhash-wasm';
import { loadKernels, type Kernels } from '../../src/format/kernels.js';
import { createLz4EncodeScratch, encodeBlocks, LZ4_FRAME_BLOCK_BYTES } from '../../src/format/lz4-frame.js';
import { seededRandom } from '../../test/harness/seeded-random.js';

const RANGE_BYTES = 8 * 1024 * 1024;
const PAGE = 8192;


/** Heap pages: line pointers, tuple headers, an int key; every other row 32 hex characters. */
function syntheticRange(): Uint8Array {
  const random = seededRandom(42);
  const bytes = new Uint8Array(RANGE_BYTES);
  const view = new DataView(bytes.buffer);
  let key = 1;
  for (let base = 0; base < RANGE_BYTES; base += PAGE) {
    let upper = PAGE;
    let lower = 24;
    let row = 0;
    for (;;) {
      const text = row++ % 2 === 0;
      const length = text ? 64 : 32;
      if (upper - length < lower + 4) break;
      upper -= length;
      view.setUint32(base + lower, upper | (1 << 15) | (length << 17), true);
      lower += 4;
      view.setUint32(base + upper, 735 + (random() % 16), true); // t_xmin
      view.setUint16(base + upper + 18, 2, true);
      view.setUint16(base + upper + 20, 0x0902, true);
      bytes[base + upper + 22] = 24;
      view.setUint32(base + upper + 24, key++, true);
      if (text) {
        bytes[base + upper + 28] = (33 << 1) | 1;
        for (let i = 0; i < 32; i++) bytes[base + upper + 29 + i] = '0123456789abcdef'.charCodeAt(random() & 15);
      }
    }
    view.setUint32(base + 4, 0x0300_0000 + base, true);
    view.setUint16(base + 12, lower, true);
    view.setUint16(base + 14, upper, true);
    view.setUint16(base + 16, PAGE, true);
    view.setUint16(base + 18, 0x2004, true);
  }
  return bytes;
}

function firstRange(path: string): Uint8Array {
  const bytes = new Uint8Array(RANGE_BYTES);
  const fd = openSync(path, 'r');
  try {
    const read = readSync(fd, bytes, 0, RANGE_BYTES, 0);
    if (read < PAGE) throw new Error(`${path} is too small for a benchmark (${read} bytes)`);
    return bytes.subarray(0, read - (read % PAGE));
  } finally {
    closeSync(fd);
  }
}

interface Input {
  name: string;
  raw: Uint8Array;
}

const files = process.argv.slice(2);
const inputs: Input[] =
  files.length > 0
    ? files.map((path) => ({ name: basename(path), raw: firstRange(path) }))
    : [{ name: 'synthetic heap', raw: syntheticRange() }];

const native = loadKernels('native');
const fallback = loadKernels('fallback');
const wasm = await xxhash();
const addon = createRequire(import.meta.url)(native.source) as {
  xxh64(data: Uint8Array, seed?: bigint): bigint;
  lz4VersionNumber: number;
  xxhashVersionNumber: number;
};
const lz4Napi = createRequire(import.meta.url)('lz4-napi') as { compressSync(data: Buffer): Buffer };

/** Compresses a range block by block into `dst` like encodeBlocks' first pass; returns the bytes. */
function compressRange(kernels: Kernels, raw: Uint8Array, dst: Uint8Array, acceleration?: number): number {
  let used = 0;
  for (let start = 0; start < raw.length; start += LZ4_FRAME_BLOCK_BYTES) {
    const block = raw.subarray(start, Math.min(start + LZ4_FRAME_BLOCK_BYTES, raw.length));
    const written = kernels.lz4CompressBlock(block, dst.subarray(used), acceleration);
    used += written > 0 && written < block.length ? written : block.length;
  }
  return used;
}

interface Compressed {
  blocks: Uint8Array[];
  bytes: number;
}

function compressedBlocks(kernels: Kernels, raw: Uint8Array): Compressed {
  const blocks: Uint8Array[] = [];
  let bytes = 0;
  for (let start = 0; start < raw.length; start += LZ4_FRAME_BLOCK_BYTES) {
    const block = raw.subarray(start, Math.min(start + LZ4_FRAME_BLOCK_BYTES, raw.length));
    const dst = new Uint8Array(kernels.lz4CompressBound(block.length));
    const written = kernels.lz4CompressBlock(block, dst);
    blocks.push(dst.subarray(0, written));
    bytes += written;
  }
  return { blocks, bytes };
}

console.log(
  `hash and lz4 kernels, single thread, Node ${process.version}, liblz4 ${addon.lz4VersionNumber}, ` +
    `libxxhash ${addon.xxhashVersionNumber}, addon ${native.source}`,
);

for (const { name, raw } of inputs) {
  const dst = new Uint8Array(native.lz4CompressBound(raw.length) + 1024);
  const scratchNative = createLz4EncodeScratch(native, raw.length);
  const scratchFallback = createLz4EncodeScratch(fallback, raw.length);
  const rawBuffer = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const nativeCompressed = compressedBlocks(native, raw);
  const fallbackCompressed = compressedBlocks(fallback, raw);
  const out = new Uint8Array(LZ4_FRAME_BLOCK_BYTES);
  const hasher = native.createHasher();
  const fallbackHasher = fallback.createHasher();

  const bench = new Bench({ time: 2000, warmupTime: 500 });
  bench
    .add('lz4 compress native (acceleration 1)', () => void compressRange(native, raw, dst))
    .add('lz4 compress native + frame records', () => void encodeBlocks(raw, native, scratchNative))
    .add('lz4 compress fallback (lz4-napi)', () => void compressRange(fallback, raw, dst))
    .add('lz4-napi compressSync alone', () => {
      for (let start = 0; start < raw.length; start += LZ4_FRAME_BLOCK_BYTES) {
        lz4Napi.compressSync(rawBuffer.subarray(start, start + LZ4_FRAME_BLOCK_BYTES));
      }
    })
    .add('lz4 compress fallback + frame records', () => void encodeBlocks(raw, fallback, scratchFallback))
    .add('lz4 decompress native', () => {
      for (const block of nativeCompressed.blocks) native.lz4DecompressBlock(block, out);
    })
    .add('lz4 decompress fallback', () => {
      for (const block of nativeCompressed.blocks) fallback.lz4DecompressBlock(block, out);
    })
    .add('xxh3 native', () => void native.hash(raw))
    .add('xxh3 native streaming 64 KiB', () => {
      hasher.reset();
      for (let start = 0; start < raw.length; start += 65536) hasher.update(raw.subarray(start, start + 65536));
      hasher.digest();
    })
    .add('xxh3 fallback (@node-rs/xxhash)', () => void fallback.hash(raw))
    .add('xxh3 fallback streaming 64 KiB', () => {
      fallbackHasher.reset();
      for (let start = 0; start < raw.length; start += 65536) fallbackHasher.update(raw.subarray(start, start + 65536));
      fallbackHasher.digest();
    })
    .add('xxh64 native (not used)', () => void addon.xxh64(raw))
    .add('xxh64 xxhash-wasm (not used)', () => void wasm.h64Raw(raw))
    .add('xxh32 native', () => void native.xxh32(raw))
    .add('xxh32 fallback', () => void fallback.xxh32(raw));
  await bench.run();

  console.log(
    `\n${name}: ${raw.length} bytes, lz4 ratio native ${(raw.length / nativeCompressed.bytes).toFixed(2)}, ` +
      `fallback ${(raw.length / fallbackCompressed.bytes).toFixed(2)}`,
  );
  for (const task of bench.tasks) {
    const result = task.result;
    if (result.state !== 'completed') throw new Error(`${task.name}: ${result.state}`);
    const mbPerSecond = raw.length / (result.period / 1000) / 1e6;
    console.log(
      `  ${task.name.padEnd(40)} ${mbPerSecond.toFixed(0).padStart(7)} MB/s` +
        `  (${result.period.toFixed(3)} ms, ±${result.latency.rme.toFixed(1)} %, ${result.latency.samplesCount} runs)`,
    );
  }
}
