/**
 * Page checksum kernels, single thread: pure JS vs WebAssembly SIMD, verifying 8 MiB of heap-like
 * pages that are already in the verifier's input area (the kernel's own cost, with the data already
 * in WASM memory; README.md "Performance" has the end-to-end figures). MB/s are 10^6 bytes per second.
 *
 *   node scripts/build-wasm.mjs && npx tsc -p tsconfig.json && node dist/bench/kernels/page-checksum.bench.js
 */

import { Bench } from 'tinybench';
import { DEFAULT_BLOCK_SIZE } from '../../src/format/page.js';
import { createJsPageVerifier, pageChecksum, type PageVerifier } from '../../src/format/page-checksum.js';
import { createWasmPageVerifier, wasmKernelAvailability } from '../../src/format/page-checksum-wasm.js';
import { seededRandom } from '../../test/harness/seeded-random.js';

const INPUT_BYTES = 8 * 1024 * 1024;
const PAGES = INPUT_BYTES / DEFAULT_BLOCK_SIZE;
const FIRST_BLKNO = 131072; // segment .1


/**
 * A full heap page like pgbench_accounts': header, line pointers, 24-byte tuple headers with xmin
 * and ctid, then an int key and md5-like hex text; a correct pd_checksum for `blkno`.
 */
function heapPage(random: () => number, blkno: number): Uint8Array {
  const page = new Uint8Array(DEFAULT_BLOCK_SIZE);
  const view = new DataView(page.buffer);
  const tupleLength = 24 + 4 + 33 + 3; // header, int4, text with 1-byte varlena header, padding
  let upper = DEFAULT_BLOCK_SIZE;
  let lower = 24;
  let key = blkno * 61;
  while (upper - tupleLength >= lower + 4) {
    upper -= tupleLength;
    view.setUint32(lower, upper | (1 << 15) | (tupleLength << 17), true); // lp_off, LP_NORMAL, lp_len
    lower += 4;
    view.setUint32(upper, 735 + (random() % 16), true); // t_xmin
    view.setUint16(upper + 16, (lower - 24) / 4, true); // ctid offset number
    view.setUint16(upper + 18, 3, true); // t_infomask2: natts
    view.setUint16(upper + 20, 0x0902, true); // t_infomask
    page[upper + 22] = 24; // t_hoff
    view.setUint32(upper + 24, key++, true);
    page[upper + 28] = (33 << 1) | 1;
    for (let i = 0; i < 32; i++) page[upper + 29 + i] = '0123456789abcdef'.charCodeAt(random() & 15);
  }
  view.setUint32(4, 0x0300_0000 + blkno * 40, true); // pd_lsn
  view.setUint16(12, lower, true);
  view.setUint16(14, upper, true);
  view.setUint16(16, DEFAULT_BLOCK_SIZE, true);
  view.setUint16(18, 0x2004, true);
  view.setUint16(8, pageChecksum(page, blkno), true);
  return page;
}

function fill(verifier: PageVerifier): void {
  const random = seededRandom(42);
  for (let i = 0; i < PAGES; i++) verifier.input.set(heapPage(random, FIRST_BLKNO + i), i * DEFAULT_BLOCK_SIZE);
  const check = verifier.verify(INPUT_BYTES, FIRST_BLKNO);
  if (check.failures.length > 0 || check.checkedPages !== PAGES) {
    throw new Error(`${verifier.kernel} verifier rejects the benchmark pages`);
  }
}

const wasm = wasmKernelAvailability();
if (!wasm.available) throw new Error(`WASM kernel unavailable: ${wasm.reason}`);

const js = createJsPageVerifier({ maxBytes: INPUT_BYTES });
const simd = createWasmPageVerifier({ maxBytes: INPUT_BYTES });
fill(js);
fill(simd);

const bench = new Bench({ time: 3000, warmupTime: 1000 });
bench
  .add('js verify 8 MiB', () => {
    js.verify(INPUT_BYTES, FIRST_BLKNO);
  })
  .add('wasm-simd verify 8 MiB', () => {
    simd.verify(INPUT_BYTES, FIRST_BLKNO);
  });
await bench.run();

console.log(`page checksum, ${PAGES} heap pages, single thread, Node ${process.version}, wasm from ${wasm.url}`);
const rates: Record<string, number> = {};
for (const task of bench.tasks) {
  const result = task.result;
  if (result.state !== 'completed') throw new Error(`${task.name}: ${result.state}`);
  const mbPerSecond = (INPUT_BYTES / (result.period / 1000)) / 1e6;
  rates[task.name] = mbPerSecond;
  console.log(
    `${task.name.padEnd(24)} ${mbPerSecond.toFixed(0).padStart(7)} MB/s` +
      `  (${result.period.toFixed(3)} ms per 8 MiB, ±${result.latency.rme.toFixed(1)} %, ${result.latency.samplesCount} runs)`,
  );
}
const jsRate = rates['js verify 8 MiB'];
const wasmRate = rates['wasm-simd verify 8 MiB'];
if (jsRate !== undefined && wasmRate !== undefined) console.log(`wasm-simd / js: ${(wasmRate / jsRate).toFixed(2)}×`);
