import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import {
  absoluteBlockNumber,
  isAllZero,
  isNewPage,
  layoutVersionOf,
  pageHeaderIsSane,
  pageSizeOf,
  readPageHeader,
  serverPageIsNew,
  storedChecksum,
} from '../../src/format/page.js';
import { createJsPageVerifier, pageChecksum, type PageVerifier } from '../../src/format/page-checksum.js';
import {
  compilePageChecksumModule,
  createPageVerifier,
  createWasmPageVerifier,
  wasmKernelUrls,
  type CompiledWasmModule,
} from '../../src/format/page-checksum-wasm.js';
import { seededRandom } from '../harness/seeded-random.js';

const BLCKSZ = 8192;
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

// --- Test pages (docs/postgresql-facts.md, "Test vectors") ---------------------------------------

function pageP1(): Uint8Array {
  const page = new Uint8Array(BLCKSZ);
  page.set([0x18, 0x00, 0x00, 0x20, 0x00, 0x20, 0x04, 0x20], 12); // pd_lower 24, pd_upper 8192, pd_special 8192, 0x2004
  return page;
}
function pageP2(): Uint8Array {
  const page = pageP1();
  page.set([0x48, 0x3f, 0x6b, 0x01], 4); // pd_lsn 0/16B3F48
  page.set([0x04, 0x00], 10); // pd_flags PD_ALL_VISIBLE
  return page;
}
function pageP3(): Uint8Array {
  const page = pageP1();
  page.set([0x28, 0x00, 0x00, 0x01], 4); // pd_lsn 0/01000028
  return page;
}
function pageP3WithGarbageChecksum(): Uint8Array {
  const page = pageP3();
  page.set([0xef, 0xbe], 8);
  return page;
}
function pageP4(): Uint8Array {
  const page = Uint8Array.from({ length: BLCKSZ }, (_, k) => (7 * k + 3) % 256);
  page.set([0xab, 0xcd], 8);
  return page;
}
function pageP5(): Uint8Array {
  return Uint8Array.from({ length: BLCKSZ }, (_, k) => k % 251);
}

const VECTORS: ReadonlyArray<{ name: string; page: () => Uint8Array; blkno: number; checksum: number }> = [
  { name: 'P1', page: pageP1, blkno: 0, checksum: 25952 },
  { name: 'P1', page: pageP1, blkno: 1, checksum: 25951 },
  { name: 'P1', page: pageP1, blkno: 1000, checksum: 25784 },
  { name: 'P1', page: pageP1, blkno: 131072, checksum: 25950 },
  { name: 'P2', page: pageP2, blkno: 0, checksum: 14289 },
  { name: 'P2', page: pageP2, blkno: 1, checksum: 14290 },
  { name: 'P3', page: pageP3, blkno: 0, checksum: 53192 },
  { name: 'P3', page: pageP3, blkno: 1, checksum: 0xcfc9 },
  { name: 'P3', page: pageP3, blkno: 131072, checksum: 0xcfca },
  { name: 'P3 with bytes 8–9 EF BE', page: pageP3WithGarbageChecksum, blkno: 0, checksum: 0xcfc8 },
  { name: 'P4', page: pageP4, blkno: 0, checksum: 43596 },
  { name: 'P4', page: pageP4, blkno: 1, checksum: 43595 },
  { name: 'P4', page: pageP4, blkno: 1000, checksum: 43620 },
  { name: 'P5', page: pageP5, blkno: 0, checksum: 0x1de0 },
  { name: 'P5', page: pageP5, blkno: 7, checksum: 0x1de1 },
];

// --- Helpers --------------------------------------------------------------------------------


function randomBytes(random: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 4) {
    const word = random();
    bytes[i] = word & 0xff;
    bytes[i + 1] = (word >>> 8) & 0xff;
    bytes[i + 2] = (word >>> 16) & 0xff;
    bytes[i + 3] = word >>> 24;
  }
  return bytes;
}

/** A heap-like page (header, line pointers, random tuples) whose pd_checksum is correct for `blkno`. */
function validPage(random: () => number, blkno: number, blockSize = BLCKSZ): Uint8Array {
  const page = randomBytes(random, blockSize);
  const tuples = 1 + (random() % 40);
  const lower = 24 + 4 * tuples;
  const upper = lower + (random() % (blockSize - lower - 64));
  const view = new DataView(page.buffer);
  view.setUint16(10, 0, true);
  view.setUint16(12, lower, true);
  view.setUint16(14, upper & ~7, true);
  view.setUint16(16, blockSize === 32768 ? 32760 : blockSize, true);
  view.setUint16(18, (blockSize & 0xff00) | 4, true);
  page.fill(0, lower, upper & ~7); // free space is zero in real pages
  view.setUint16(8, pageChecksum(page, blkno), true);
  return page;
}

function setStoredChecksum(page: Uint8Array, checksum: number): void {
  page[8] = checksum & 0xff;
  page[9] = checksum >>> 8;
}

// --- Kernels under test ---------------------------------------------------------------------

let wasmOutDir: string;
let wasmModule: CompiledWasmModule;

beforeAll(() => {
  // Assemble the .wat with the real build script, into a temp dir: tests do not depend on a prior build.
  wasmOutDir = mkdtempSync(join(tmpdir(), 'pgbacula-wasm-'));
  execFileSync(process.execPath, [join(repoRoot, 'scripts/build-wasm.mjs'), '--out-dir', wasmOutDir], {
    stdio: 'pipe',
  });
  wasmModule = compilePageChecksumModule(readFileSync(join(wasmOutDir, 'page-checksum.wasm')));
});

afterAll(() => {
  rmSync(wasmOutDir, { recursive: true, force: true });
});

const kernels: ReadonlyArray<{ name: string; create: (maxBytes: number, blockSize?: number) => PageVerifier }> = [
  { name: 'js', create: (maxBytes, blockSize) => createJsPageVerifier({ maxBytes, blockSize }) },
  {
    name: 'wasm-simd',
    create: (maxBytes, blockSize) => createWasmPageVerifier({ maxBytes, blockSize, module: wasmModule }),
  },
];

describe('pageChecksum (JS reference)', () => {
  it.each(VECTORS)('$name at block $blkno is $checksum', ({ page, blkno, checksum }) => {
    expect(pageChecksum(page(), blkno)).toBe(checksum);
  });

  it('does not modify bytes 8–9 of the page', () => {
    const page = pageP3WithGarbageChecksum();
    pageChecksum(page, 0);
    expect([page[8], page[9]]).toEqual([0xef, 0xbe]);
  });

  it('gives the same result for a page that is not 4-byte aligned', () => {
    const random = seededRandom(7);
    const page = randomBytes(random, BLCKSZ);
    const shifted = new Uint8Array(BLCKSZ + 3);
    shifted.set(page, 3);
    expect(pageChecksum(shifted.subarray(3), 4242)).toBe(pageChecksum(page, 4242));
  });

  it('rejects a block number outside BlockNumber and a partial page', () => {
    expect(() => pageChecksum(pageP1(), -1)).toThrow(PgbaculaError);
    expect(() => pageChecksum(pageP1(), 0xffffffff)).toThrow(PgbaculaError);
    expect(() => pageChecksum(new Uint8Array(100), 0)).toThrow(PgbaculaError);
  });
});

describe.each(kernels)('PageVerifier ($name)', ({ name, create }) => {
  it(`reports kernel ${name}`, () => {
    expect(create(BLCKSZ).kernel).toBe(name);
  });

  it.each(VECTORS)('checksums(): $name at block $blkno is $checksum', ({ page, blkno, checksum }) => {
    const verifier = create(BLCKSZ);
    const bytes = page();
    verifier.input.set(bytes);
    expect(Array.from(verifier.checksums(BLCKSZ, blkno))).toEqual([checksum]);
    expect(verifier.input.subarray(0, BLCKSZ)).toEqual(bytes); // bytes 8–9 untouched
  });

  it.each(VECTORS)('verify(): $name at block $blkno passes with its checksum stored', ({ page, blkno, checksum }) => {
    const verifier = create(BLCKSZ);
    const bytes = page();
    setStoredChecksum(bytes, checksum);
    verifier.input.set(bytes);
    expect(verifier.verify(BLCKSZ, blkno)).toEqual({ checkedPages: 1, newPages: 0, failures: [] });
  });

  it('verify(): P3 storing 0xBEEF fails with computed 0xCFC8', () => {
    const verifier = create(BLCKSZ);
    verifier.input.set(pageP3WithGarbageChecksum());
    expect(verifier.verify(BLCKSZ, 0)).toEqual({
      checkedPages: 1,
      newPages: 0,
      failures: [{ pageIndex: 0, blkno: 0, stored: 0xbeef, computed: 0xcfc8 }],
    });
  });

  it('skips all-zero pages as new, and only those', () => {
    const verifier = create(4 * BLCKSZ);
    verifier.input.fill(0);
    const random = seededRandom(11);
    verifier.input.set(validPage(random, 101), BLCKSZ);
    const result = verifier.verify(4 * BLCKSZ, 100);
    expect(result).toEqual({ checkedPages: 1, newPages: 3, failures: [] });
  });

  it('checks a page with pd_upper = 0 that is not all zero, and reports it when its checksum is wrong', () => {
    const verifier = create(3 * BLCKSZ);
    verifier.input.fill(0);
    // Page 0: zero but for one byte deep in the page; pd_upper = 0 and pd_checksum = 0.
    verifier.input[BLCKSZ / 2] = 0x01;
    // Page 1: pd_upper = 0 but a header and a correct checksum — checked and accepted.
    const headerOnly = pageP2();
    headerOnly.set([0, 0], 14);
    setStoredChecksum(headerOnly, pageChecksum(headerOnly, 1));
    verifier.input.set(headerOnly, BLCKSZ);
    // Page 2: pd_upper = 0, some garbage in the body, stored checksum non-zero but wrong.
    const garbage = new Uint8Array(BLCKSZ);
    garbage.set([0xde, 0xad, 0xbe, 0xef], 4000);
    const rightSum = pageChecksum(garbage, 2);
    setStoredChecksum(garbage, rightSum === 1 ? 2 : rightSum - 1);
    verifier.input.set(garbage, 2 * BLCKSZ);

    expect(serverPageIsNew(readPageHeader(verifier.input, 0))).toBe(true);
    const result = verifier.verify(3 * BLCKSZ, 0);
    expect(result.checkedPages).toBe(3);
    expect(result.newPages).toBe(0);
    expect(result.failures.map((f) => f.pageIndex)).toEqual([0, 2]);
    expect(result.failures[0]).toEqual({
      pageIndex: 0,
      blkno: 0,
      stored: 0,
      computed: pageChecksum(verifier.input.subarray(0, BLCKSZ), 0),
    });
    expect(result.failures[1]?.computed).toBe(rightSum);
  });

  it('reports exactly the page with one flipped bit in a multi-page buffer', () => {
    const pages = 1024; // 8 MiB
    const firstBlkno = absoluteBlockNumber(3, 1000); // segment .3
    const verifier = create(pages * BLCKSZ);
    const random = seededRandom(2024);
    for (let i = 0; i < pages; i++) verifier.input.set(validPage(random, firstBlkno + i), i * BLCKSZ);
    expect(verifier.verify(pages * BLCKSZ, firstBlkno)).toEqual({ checkedPages: pages, newPages: 0, failures: [] });

    const victim = 537;
    const offset = victim * BLCKSZ + 5000;
    const original = verifier.input[offset]!;
    verifier.input[offset] = original ^ 0x10;
    const result = verifier.verify(pages * BLCKSZ, firstBlkno);
    expect(result.checkedPages).toBe(pages);
    expect(result.failures).toHaveLength(1);
    const failure = result.failures[0]!;
    expect(failure.pageIndex).toBe(victim);
    expect(failure.blkno).toBe(firstBlkno + victim);
    expect(failure.stored).toBe(storedChecksum(verifier.input, victim * BLCKSZ));
    expect(failure.computed).toBe(pageChecksum(verifier.input.subarray(victim * BLCKSZ, (victim + 1) * BLCKSZ), firstBlkno + victim));

    // The right bytes at the wrong block number fail too: the block number is part of the checksum.
    verifier.input[offset] = original;
    expect(verifier.verify(BLCKSZ * 2, firstBlkno + 1).failures.map((f) => f.pageIndex)).toEqual([0, 1]);
  });

  it('verifies an empty range', () => {
    expect(create(BLCKSZ).verify(0, 0)).toEqual({ checkedPages: 0, newPages: 0, failures: [] });
  });

  it('handles block numbers above 2^31', () => {
    const verifier = create(2 * BLCKSZ);
    const random = seededRandom(5);
    const first = 0xfffffffd;
    verifier.input.set(validPage(random, first), 0);
    verifier.input.set(validPage(random, first + 1), BLCKSZ);
    expect(verifier.verify(2 * BLCKSZ, first).failures).toEqual([]);
    expect(() => verifier.verify(2 * BLCKSZ, 0xfffffffe)).toThrow(PgbaculaError);
  });

  it('grows its input area and keeps its contents', () => {
    const verifier = create(BLCKSZ);
    const random = seededRandom(99);
    const page = validPage(random, 9);
    verifier.input.set(page);
    verifier.ensureCapacity(300 * BLCKSZ);
    expect(verifier.maxBytes).toBe(300 * BLCKSZ);
    expect(verifier.input.length).toBe(300 * BLCKSZ);
    expect(verifier.input.subarray(0, BLCKSZ)).toEqual(page);
    verifier.input.set(validPage(random, 10), BLCKSZ);
    verifier.input.fill(0, 2 * BLCKSZ);
    expect(verifier.verify(300 * BLCKSZ, 9)).toEqual({ checkedPages: 2, newPages: 298, failures: [] });
  });

  it('rejects ranges that are not whole pages inside the input area', () => {
    const verifier = create(2 * BLCKSZ);
    expect(() => verifier.verify(BLCKSZ + 1, 0)).toThrow(PgbaculaError);
    expect(() => verifier.verify(3 * BLCKSZ, 0)).toThrow(PgbaculaError);
    expect(() => verifier.verify(BLCKSZ, -1)).toThrow(PgbaculaError);
    expect(() => create(BLCKSZ + 1)).toThrow(PgbaculaError);
    expect(() => create(BLCKSZ, 3000)).toThrow(PgbaculaError);
  });
});

describe('JS and WASM kernels agree', () => {
  it('on 400 seeded random pages at random block numbers', () => {
    const random = seededRandom(0x5eed);
    const pages = 400;
    const js = createJsPageVerifier({ maxBytes: pages * BLCKSZ });
    const wasm = createWasmPageVerifier({ maxBytes: pages * BLCKSZ, module: wasmModule });
    const bytes = randomBytes(random, pages * BLCKSZ);
    js.input.set(bytes);
    wasm.input.set(bytes);
    for (let round = 0; round < 8; round++) {
      const firstBlkno = random() % 0xfffff000;
      const expected = js.checksums(pages * BLCKSZ, firstBlkno);
      expect(wasm.checksums(pages * BLCKSZ, firstBlkno)).toEqual(expected);
      // And page by page through the standalone function.
      for (let i = 0; i < pages; i += 37) {
        expect(pageChecksum(bytes.subarray(i * BLCKSZ, (i + 1) * BLCKSZ), firstBlkno + i)).toBe(expected[i]);
      }
      // verify(): random pages fail (almost surely) with the same records from both kernels.
      expect(wasm.verify(pages * BLCKSZ, firstBlkno)).toEqual(js.verify(pages * BLCKSZ, firstBlkno));
    }
  });

  it.each([1024, 2048, 4096, 16384, 32768])('for block size %i', (blockSize) => {
    const random = seededRandom(blockSize);
    const pages = 16;
    const js = createJsPageVerifier({ maxBytes: pages * blockSize, blockSize });
    const wasm = createWasmPageVerifier({ maxBytes: pages * blockSize, blockSize, module: wasmModule });
    for (let i = 0; i < pages; i++) {
      const page = validPage(random, 77 + i, blockSize);
      js.input.set(page, i * blockSize);
      wasm.input.set(page, i * blockSize);
    }
    expect(wasm.checksums(pages * blockSize, 77)).toEqual(js.checksums(pages * blockSize, 77));
    expect(js.verify(pages * blockSize, 77).failures).toEqual([]);
    expect(wasm.verify(pages * blockSize, 77).failures).toEqual([]);
  });
});

describe('loading the WASM kernel', () => {
  it('finds dist/wasm from the built module and from the sources', () => {
    const fromDist = wasmKernelUrls('file:///opt/pgbacula/dist/src/format/page-checksum-wasm.js');
    expect(fromDist[0]?.pathname).toBe('/opt/pgbacula/dist/wasm/page-checksum.wasm');
    const fromSource = wasmKernelUrls('file:///opt/pgbacula/src/format/page-checksum-wasm.ts');
    expect(fromSource.map((u) => u.pathname)).toContain('/opt/pgbacula/dist/wasm/page-checksum.wasm');
  });

  it('createPageVerifier uses a given compiled module', () => {
    expect(createPageVerifier({ maxBytes: BLCKSZ, module: wasmModule }).kernel).toBe('wasm-simd');
  });
});

describe('page header (src/format/page.ts)', () => {
  it('reads every field of P2', () => {
    const page = pageP2();
    setStoredChecksum(page, 14289);
    const header = readPageHeader(page);
    expect(header).toEqual({
      pdLsn: 0x16b3f48n,
      pdChecksum: 14289,
      pdFlags: 0x0004,
      pdLower: 24,
      pdUpper: 8192,
      pdSpecial: 8192,
      pdPagesizeVersion: 0x2004,
      pdPruneXid: 0,
    });
    expect(pageSizeOf(header)).toBe(8192);
    expect(layoutVersionOf(header)).toBe(4);
    expect(pageHeaderIsSane(header)).toBe(true);
    expect(serverPageIsNew(header)).toBe(false);
    expect(storedChecksum(page)).toBe(14289);
  });

  it('reads both LSN halves and a header at an offset', () => {
    const buffer = new Uint8Array(2 * BLCKSZ);
    buffer.set([0x01, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x05], BLCKSZ); // 1/5000028
    expect(readPageHeader(buffer, BLCKSZ).pdLsn).toBe(0x1_0500_0028n);
    expect(() => readPageHeader(buffer, 2 * BLCKSZ - 10)).toThrow(PgbaculaError);
  });

  it('tells a sane header from an insane one', () => {
    const header = readPageHeader(pageP1());
    expect(pageHeaderIsSane({ ...header, pdFlags: 0x0008 })).toBe(false);
    expect(pageHeaderIsSane({ ...header, pdLower: 8000, pdUpper: 100 })).toBe(false);
    expect(pageHeaderIsSane({ ...header, pdSpecial: 8188 })).toBe(false);
    expect(pageHeaderIsSane({ ...header, pdSpecial: 16384, pdUpper: 8192 })).toBe(false);
  });

  it('new means all zero, not pd_upper = 0', () => {
    const page = new Uint8Array(BLCKSZ);
    expect(isAllZero(page)).toBe(true);
    expect(isNewPage(page)).toBe(true);
    page[8191] = 1;
    expect(serverPageIsNew(readPageHeader(page))).toBe(true);
    expect(isNewPage(page)).toBe(false);
    expect(isAllZero(new Uint8Array(new ArrayBuffer(16), 1, 7))).toBe(true);
  });

  it('computes relation-wide block numbers', () => {
    expect(absoluteBlockNumber(0, 5)).toBe(5);
    expect(absoluteBlockNumber(2, 7)).toBe(2 * 131072 + 7);
    expect(absoluteBlockNumber(1, 0, 65536)).toBe(65536);
    expect(() => absoluteBlockNumber(32768, 0)).toThrow(PgbaculaError);
  });
});
