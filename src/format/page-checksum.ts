/**
 * PostgreSQL data page checksum, pure JavaScript reference kernel, and the
 * {@link PageVerifier} interface shared with the WebAssembly SIMD kernel
 * (`page-checksum-wasm.ts`), of which this is the fallback.
 *
 * The algorithm (PostgreSQL's `src/include/storage/checksum_impl.h`, unchanged 9.3 → 18): 32 lanes of
 * FNV-1a-like mixing over the page read as little-endian uint32 words, row by row (a row is 32
 * words = 128 bytes; lane j takes word j of every row), with `pd_checksum` (bytes 8–9) taken as
 * zero; two finishing rounds of mixing with 0; the lanes XOR-ed together, XOR the relation-wide block
 * number, then `% 65535 + 1`.
 */

import { PgbaculaError } from '../errors.js';
import { DEFAULT_BLOCK_SIZE } from './page.js';

// The kernel reads these two through private bindings: V8 (Node 20) does not constant-fold an
// *exported* module binding in optimized code, and reading one in the inner loop halved the speed.
const N_SUMS = 32;
const PRIME = 16777619;

/** `N_SUMS`: number of parallel lanes. */
export const CHECKSUM_LANES = N_SUMS;

/** `FNV_PRIME` of `checksum_impl.h`. */
export const FNV_PRIME = PRIME;

/**
 * `checksumBaseOffsets[N_SUMS]` of `checksum_impl.h`: the seed of each lane. These must be exact —
 * a kernel with 3 of 32 wrong fails every real page; the real-cluster test guards them.
 */
export const CHECKSUM_BASE_OFFSETS: readonly number[] = Object.freeze([
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c,
  0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb,
  0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4,
  0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
]);

/** Bytes per row of the algorithm: one uint32 word per lane. */
const ROW_BYTES = N_SUMS * 4;

/** The largest valid `BlockNumber`; 0xFFFFFFFF is `InvalidBlockNumber`. */
const MAX_BLOCK_NUMBER = 0xfffffffe;

/** PostgreSQL's possible `BLCKSZ` values (configure `--with-blocksize`, in kB: 1, 2, 4, 8, 16, 32). */
const VALID_BLOCK_SIZES: readonly number[] = [1024, 2048, 4096, 8192, 16384, 32768];

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

const SEEDS = Int32Array.from(CHECKSUM_BASE_OFFSETS);

/** Per-thread scratch: an aligned copy for pages that are not 4-byte aligned. */
let alignedScratch = new Int32Array(DEFAULT_BLOCK_SIZE / 4);

/** One mixing step of a lane: `t = s ^ v; s = t * FNV_PRIME ^ (t >>> 17)`. */
function mix(state: number, value: number): number {
  const t = state ^ value;
  return Math.imul(t, PRIME) ^ (t >>> 17);
}

/**
 * Checksum of the page made of `wordsPerPage` words of `words` from `start`, as `checksum_impl.h`'s
 * `pg_checksum_page` computes it; `pd_checksum` (low half of word 2) is masked, never written.
 *
 * The lanes are independent until the final fold, so they are computed 8 at a time, each group
 * walking the page's rows down one 32-byte column: 8 states stay in registers and 8 independent
 * multiply chains overlap (measured 1.5–2× faster than one pass keeping the 32 states in an array).
 */
function checksumWords(words: Int32Array, start: number, wordsPerPage: number, blkno: number): number {
  const end = start + wordsPerPage;
  let folded = 0;
  for (let lane = 0; lane < N_SUMS; lane += 8) {
    let s0 = SEEDS[lane]!;
    let s1 = SEEDS[lane + 1]!;
    let s2 = SEEDS[lane + 2]!;
    let s3 = SEEDS[lane + 3]!;
    let s4 = SEEDS[lane + 4]!;
    let s5 = SEEDS[lane + 5]!;
    let s6 = SEEDS[lane + 6]!;
    let s7 = SEEDS[lane + 7]!;
    // Row 0, word 2 carries pd_checksum in its low 16 bits (bytes 8–9, little-endian).
    const word2Mask = lane === 0 ? 0xffff0000 | 0 : -1;
    let i = start + lane;
    s0 = mix(s0, words[i]!);
    s1 = mix(s1, words[i + 1]!);
    s2 = mix(s2, words[i + 2]! & word2Mask);
    s3 = mix(s3, words[i + 3]!);
    s4 = mix(s4, words[i + 4]!);
    s5 = mix(s5, words[i + 5]!);
    s6 = mix(s6, words[i + 6]!);
    s7 = mix(s7, words[i + 7]!);
    for (i += N_SUMS; i < end; i += N_SUMS) {
      s0 = mix(s0, words[i]!);
      s1 = mix(s1, words[i + 1]!);
      s2 = mix(s2, words[i + 2]!);
      s3 = mix(s3, words[i + 3]!);
      s4 = mix(s4, words[i + 4]!);
      s5 = mix(s5, words[i + 5]!);
      s6 = mix(s6, words[i + 6]!);
      s7 = mix(s7, words[i + 7]!);
    }
    // Two finishing rounds mixing in 0, then fold the lanes.
    folded ^= mix(mix(s0, 0), 0) ^ mix(mix(s1, 0), 0) ^ mix(mix(s2, 0), 0) ^ mix(mix(s3, 0), 0);
    folded ^= mix(mix(s4, 0), 0) ^ mix(mix(s5, 0), 0) ^ mix(mix(s6, 0), 0) ^ mix(mix(s7, 0), 0);
  }
  return (((folded ^ blkno) >>> 0) % 65535) + 1;
}

function allZeroWords(words: Int32Array, start: number, count: number): boolean {
  const end = start + count;
  for (let i = start; i < end; i++) {
    if (words[i] !== 0) return false;
  }
  return true;
}

function requireLittleEndianHost(): void {
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new PgbaculaError('PREREQUISITE', 'page checksums are implemented for little-endian hosts only', {
      hint: 'Run pgbacula on x86-64 or arm64.',
    });
  }
}

function requireBlockNumber(blkno: number): void {
  if (!Number.isInteger(blkno) || blkno < 0 || blkno > MAX_BLOCK_NUMBER) {
    throw new PgbaculaError('INTERNAL', `block number ${blkno} is not a valid BlockNumber`);
  }
}

/**
 * The data checksum PostgreSQL would store in `page` as block `blkno` (relation-wide: segment number × RELSEG_SIZE + block in the segment):
 * a value 1…65535. Bytes 8–9 of `page` are ignored and left untouched. `page.length` is the block size.
 */
export function pageChecksum(page: Uint8Array, blkno: number): number {
  requireLittleEndianHost();
  requireBlockNumber(blkno);
  if (page.length === 0 || page.length % ROW_BYTES !== 0) {
    throw new PgbaculaError('INTERNAL', `a page of ${page.length} bytes is not a whole number of 128-byte rows`);
  }
  const wordsPerPage = page.length >>> 2;
  if (page.byteOffset % 4 === 0) {
    return checksumWords(new Int32Array(page.buffer, page.byteOffset, wordsPerPage), 0, wordsPerPage, blkno);
  }
  if (alignedScratch.length < wordsPerPage) alignedScratch = new Int32Array(wordsPerPage);
  new Uint8Array(alignedScratch.buffer, 0, page.length).set(page);
  return checksumWords(alignedScratch, 0, wordsPerPage, blkno);
}

// ---------------------------------------------------------------------------------------------
// The verifier interface, implemented here in JS and in page-checksum-wasm.ts with WASM SIMD.

/** One page whose stored checksum differs from the computed one. */
export interface PageChecksumFailure {
  /** Index of the page in the verified range (0 = the page at byte 0 of `input`). */
  pageIndex: number;
  /** Relation-wide block number used for the checksum: `firstBlkno + pageIndex`. */
  blkno: number;
  /** `pd_checksum` as found in the page. */
  stored: number;
  /** What the checksum should be for these bytes. */
  computed: number;
}

export interface PageVerifyResult {
  /** Pages whose checksum was computed and compared (every page that is not all zero). */
  checkedPages: number;
  /** All-zero pages: the only pages accepted without a checksum (a project rule). */
  newPages: number;
  failures: PageChecksumFailure[];
}

export type PageChecksumKernel = 'wasm-simd' | 'js';

/**
 * Checks many pages in one call. The caller reads a file range straight into {@link input} (no
 * copy), then calls {@link verify}. One verifier per thread; it is not reentrant.
 */
export interface PageVerifier {
  readonly kernel: PageChecksumKernel;
  readonly blockSize: number;
  /** Capacity of {@link input} in bytes, a multiple of {@link blockSize}. */
  readonly maxBytes: number;
  /**
   * The input area, `maxBytes` long. Take it again after {@link ensureCapacity}: growing may replace
   * the underlying memory and detach views taken before.
   */
  readonly input: Uint8Array;
  /** Verifies the `byteLength / blockSize` pages at the start of {@link input}; page i is block `firstBlkno + i`. */
  verify(byteLength: number, firstBlkno: number): PageVerifyResult;
  /** The computed checksum of each page at the start of {@link input} (all-zero pages included). */
  checksums(byteLength: number, firstBlkno: number): Uint16Array;
  /** Grows the input area to at least `maxBytes`, keeping its contents. */
  ensureCapacity(maxBytes: number): void;
}

export interface PageVerifierOptions {
  /** Capacity of the input area, a positive multiple of the block size (e.g. 8 MiB). */
  maxBytes: number;
  /** `BLCKSZ` of the cluster (pg_control `blcksz`); 8192 unless PostgreSQL was built otherwise. */
  blockSize?: number;
}

/** Validates verifier options; returns the block size. Shared by both kernels. */
export function checkVerifierOptions(options: PageVerifierOptions): number {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!VALID_BLOCK_SIZES.includes(blockSize)) {
    throw new PgbaculaError('INTERNAL', `block size ${blockSize} is not one PostgreSQL can be built with`);
  }
  checkCapacity(options.maxBytes, blockSize);
  return blockSize;
}

/** Validates a capacity in bytes for the given block size. */
export function checkCapacity(maxBytes: number, blockSize: number): void {
  if (!Number.isInteger(maxBytes) || maxBytes <= 0 || maxBytes % blockSize !== 0 || maxBytes > 2 ** 30) {
    throw new PgbaculaError(
      'INTERNAL',
      `page verifier capacity ${maxBytes} is not a positive multiple of the block size ${blockSize} up to 1 GiB`,
    );
  }
}

/** Validates one `verify`/`checksums` call; returns the page count. Shared by both kernels. */
export function checkVerifyRange(
  byteLength: number,
  firstBlkno: number,
  blockSize: number,
  maxBytes: number,
): number {
  if (!Number.isInteger(byteLength) || byteLength < 0 || byteLength > maxBytes || byteLength % blockSize !== 0) {
    throw new PgbaculaError(
      'INTERNAL',
      `cannot verify ${byteLength} bytes: not a whole number of ${blockSize}-byte pages within the ${maxBytes}-byte input area`,
    );
  }
  const pageCount = byteLength / blockSize;
  requireBlockNumber(firstBlkno);
  if (pageCount > 0) requireBlockNumber(firstBlkno + pageCount - 1);
  return pageCount;
}

/** The pure-JS verifier: the fallback where WebAssembly SIMD is unavailable, and the test oracle. */
export function createJsPageVerifier(options: PageVerifierOptions): PageVerifier {
  requireLittleEndianHost();
  const blockSize = checkVerifierOptions(options);
  const wordsPerPage = blockSize >>> 2;
  let maxBytes = options.maxBytes;
  let input = new Uint8Array(maxBytes);
  let words = new Int32Array(input.buffer);

  return {
    kernel: 'js',
    blockSize,
    get maxBytes() {
      return maxBytes;
    },
    get input() {
      return input;
    },
    verify(byteLength, firstBlkno) {
      const pageCount = checkVerifyRange(byteLength, firstBlkno, blockSize, maxBytes);
      const failures: PageChecksumFailure[] = [];
      let newPages = 0;
      for (let pageIndex = 0; pageIndex < pageCount; pageIndex++) {
        const start = pageIndex * wordsPerPage;
        const stored = words[start + 2]! & 0xffff;
        // A computed checksum is never 0, so only a page storing 0 can be all zero.
        if (stored === 0 && allZeroWords(words, start, wordsPerPage)) {
          newPages++;
          continue;
        }
        const blkno = firstBlkno + pageIndex;
        const computed = checksumWords(words, start, wordsPerPage, blkno);
        if (computed !== stored) failures.push({ pageIndex, blkno, stored, computed });
      }
      return { checkedPages: pageCount - newPages, newPages, failures };
    },
    checksums(byteLength, firstBlkno) {
      const pageCount = checkVerifyRange(byteLength, firstBlkno, blockSize, maxBytes);
      const result = new Uint16Array(pageCount);
      for (let pageIndex = 0; pageIndex < pageCount; pageIndex++) {
        result[pageIndex] = checksumWords(words, pageIndex * wordsPerPage, wordsPerPage, firstBlkno + pageIndex);
      }
      return result;
    },
    ensureCapacity(wanted) {
      checkCapacity(wanted, blockSize);
      if (wanted <= maxBytes) return;
      const grown = new Uint8Array(wanted);
      grown.set(input);
      input = grown;
      words = new Int32Array(grown.buffer);
      maxBytes = wanted;
    },
  };
}
