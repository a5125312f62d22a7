/**
 * The hash and compression kernels of the worker pipeline, and {@link loadKernels}, which picks the
 * native addon or falls back to npm packages.
 *
 * - native: `native/build/pgbacula_kernels.node` (native/kernels/kernels.c, built by
 *   native/kernels/build.sh) over Debian's liblz4 and libxxhash. It writes into memory the caller
 *   owns and allocates nothing per call (measured with npm run bench:kernels: ≈ 1,220 MB/s lz4 per
 *   thread against lz4-napi's 520, and its outputs can go straight into a transferable ArrayBuffer).
 * - fallback: `lz4-napi` (lz4_flex; its compressSync output is a raw LZ4 block behind a 4-byte
 *   little-endian raw size, which we strip or add) and `@node-rs/xxhash` (XXH3 and XXH32).
 *
 * Both kinds compute the SAME hash, {@link HASH_ALGORITHM} (XXH3 64-bit, seed 0): hashes are
 * stored in manifests and compared across machines, so a machine without the addon must agree
 * with one that has it. XXH3 rather than XXH64: natively it is about 2.5× faster here (libxxhash
 * dispatches to AVX2/AVX-512), and the fallback's XXH3 is faster than xxhash-wasm's XXH64 too.
 * Both kinds produce standard LZ4 blocks that either kind (and the lz4 CLI) decodes; the bytes of a
 * compressed block may differ between kinds (different compressors), never the decoded content.
 *
 * Env PGBACULA_KERNELS: `fallback` forces the fallback, `native` makes a missing addon an error,
 * unset or `auto` takes the addon when it loads. One set of kernels per thread: the addon keeps a
 * per-thread LZ4 state, so import and load this module in each worker.
 */

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PgbaculaError } from '../errors.js';

export type KernelKind = 'native' | 'fallback';
export type KernelMode = 'auto' | KernelKind;
/** The content hash of the repository and manifests. Changing it is a format change. */
export type HashAlgorithm = 'xxh3-64';
export const HASH_ALGORITHM: HashAlgorithm = 'xxh3-64';

/** An incremental hash whose state lives with its owner (one per task, not shared by threads). */
export interface StreamingHash<T> {
  /** Starts over, as if just created. */
  reset(): void;
  update(data: Uint8Array): void;
  /** The hash of everything since the last reset; more updates may follow. */
  digest(): T;
}

export interface Kernels {
  readonly kind: KernelKind;
  readonly hashAlgorithm: HashAlgorithm;
  /** The addon's path (native) or the packages used (fallback), for logs. */
  readonly source: string;
  /** Why the native addon is not used (fallback only). */
  readonly fallbackReason: string | undefined;

  /** Worst-case size of an LZ4 block holding `length` bytes (LZ4_compressBound). */
  lz4CompressBound(length: number): number;
  /**
   * Compresses `src` into one raw LZ4 block written at `dst[0]`; returns its size, or 0 when it
   * does not fit in `dst` (store `src` raw then). `acceleration` (≥ 1, default 1 as `lz4 -1`)
   * trades ratio for speed; the fallback ignores it.
   */
  lz4CompressBlock(src: Uint8Array, dst: Uint8Array, acceleration?: number): number;
  /**
   * Decodes one raw LZ4 block into `dst[0..]`; returns the decoded size. `dict` is the output (at
   * most 64 KiB) that precedes the block in a frame of linked blocks. Corrupt input or output
   * beyond `dst` throws {@link PgbaculaError} REPOSITORY.
   */
  lz4DecompressBlock(src: Uint8Array, dst: Uint8Array, dict?: Uint8Array): number;

  /** {@link HASH_ALGORITHM} of `data`, as an unsigned 64-bit bigint. */
  hash(data: Uint8Array): bigint;
  /** {@link HASH_ALGORITHM} over data that arrives in pieces; same result as {@link hash}. */
  createHasher(): StreamingHash<bigint>;
  /** XXH32 (LZ4 frame header, block and content checksums). */
  xxh32(data: Uint8Array, seed?: number): number;
  createXxh32(seed?: number): StreamingHash<number>;
  /**
   * Starts writing the dirty pages of `fd`'s range `[offset, offset + length)` (length 0: to the
   * end of the file) without waiting for them: the addon only. Throws the errno's name as `code`.
   */
  startWriteback?(fd: number, offset: number, length: number): void;
}

// ---- native ----------------------------------------------------------------------------------

const ADDON_FILE = 'pgbacula_kernels.node';
const ADDON_ABI_VERSION = 1;

/** What native/kernels/kernels.c exports (ABI version 1). */
interface NativeAddon {
  readonly abiVersion: number;
  readonly hashStateBytes: number;
  readonly lz4VersionNumber: number;
  readonly xxhashVersionNumber: number;
  lz4CompressBound(length: number): number;
  lz4CompressBlock(src: Uint8Array, dst: Uint8Array, acceleration?: number): number;
  lz4DecompressBlock(src: Uint8Array, dst: Uint8Array, dict?: Uint8Array): number;
  xxh3(data: Uint8Array): bigint;
  xxh64(data: Uint8Array, seed?: bigint): bigint;
  xxh32(data: Uint8Array, seed?: number): number;
  xxh3Init(state: Uint8Array): void;
  xxh3Update(state: Uint8Array, data: Uint8Array): void;
  xxh3Digest(state: Uint8Array): bigint;
  xxh32Init(state: Uint8Array, seed?: number): void;
  xxh32Update(state: Uint8Array, data: Uint8Array): void;
  xxh32Digest(state: Uint8Array): number;
  /** Present in addons built with page_verify.c. */
  pageChecksum?(page: Uint8Array, blkno: number): number;
  verifyRanges?(paths: readonly string[], ranges: Float64Array, blockSize: number, threads: number): Promise<NativeVerifyResult>;
  /** Present in addons built with walk_dir.c. */
  walkDir?(path: string): NativeWalkedDir;
  /** sync_file_range(fd, offset, length, WRITE): the range's dirty pages sent to the disk, not waited for. */
  startWriteback?(fd: number, offset: number, length: number): void;
  /** syncfs(fd) on libuv's pool; rejects with the errno's name as `code`. */
  syncFileSystem?(fd: number): Promise<void>;
}

/**
 * One directory as the addon's walkDir lists it (native/kernels/walk_dir.c), and as
 * workers/walk-dir.ts returns it: entries sorted by name, names joined by NUL, the rest in columns
 * (kind 0 file, 1 directory, 2 symbolic link, 3 other; mode bits; mtime in ms).
 */
export interface NativeWalkedDir {
  readonly names: string;
  readonly kinds: Uint8Array;
  readonly sizes: Float64Array;
  readonly modes: Uint16Array;
  readonly mtimes: Float64Array;
  /** Link targets by entry index (symbolic links only). */
  readonly links: Readonly<Record<number, string>>;
}

/** What the addon's verifyRanges reports (native/kernels/page_verify.c). */
export interface NativeVerifyResult {
  readonly pages: number;
  readonly newPages: number;
  readonly tornPages: number;
  readonly bytes: number;
  readonly failures: ReadonlyArray<{ readonly file: number; readonly blkno: number; readonly stored: number; readonly computed: number }>;
  readonly failuresDropped: number;
  /** Problems beyond the 10,000 listed (each one a file that could not be read). */
  readonly problemsDropped: number;
  readonly problems: ReadonlyArray<{ readonly file: number; readonly error: string; readonly vanished: boolean }>;
}

/** Page checksums of relation files on native threads, off the JS thread. */
export interface NativePageVerifier {
  pageChecksum(page: Uint8Array, blkno: number): number;
  verifyRanges(paths: readonly string[], ranges: Float64Array, blockSize: number, threads: number): Promise<NativeVerifyResult>;
}

const require = createRequire(import.meta.url);

/**
 * Where the addon may be: `native/build/` in this module's directory or any directory above it.
 * This module runs as `src/format/kernels.ts` under the test runner and as
 * `dist/src/format/kernels.js` when built, so the repository root is two or three levels up.
 */
export function nativeAddonCandidates(moduleUrl: string = import.meta.url): string[] {
  const candidates: string[] = [];
  let directory = dirname(fileURLToPath(moduleUrl));
  for (;;) {
    candidates.push(join(directory, 'native', 'build', ADDON_FILE));
    const parent = dirname(directory);
    if (parent === directory) return candidates;
    directory = parent;
  }
}

type AddonLoad = { ok: true; addon: NativeAddon; path: string } | { ok: false; reason: string };

function loadNativeAddon(): AddonLoad {
  const candidates = nativeAddonCandidates();
  const path = candidates.find((candidate) => existsSync(candidate));
  if (path === undefined) {
    return {
      ok: false,
      reason: `${ADDON_FILE} not found in native/build above ${dirname(fileURLToPath(import.meta.url))}; run native/kernels/build.sh`,
    };
  }
  let addon: NativeAddon;
  try {
    addon = require(path) as NativeAddon;
  } catch (error) {
    return { ok: false, reason: `${path} does not load: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (addon.abiVersion !== ADDON_ABI_VERSION) {
    return {
      ok: false,
      reason: `${path} has ABI version ${String(addon.abiVersion)}, this code needs ${ADDON_ABI_VERSION}; rebuild it with native/kernels/build.sh`,
    };
  }
  return { ok: true, addon, path };
}

/** An Error of the addon (ERR_PGBACULA_LZ4_CORRUPT) or of lz4-napi, as our error. */
function corruptBlock(error: unknown, srcLength: number, dstLength: number): PgbaculaError {
  const detail = error instanceof Error ? error.message : String(error);
  return new PgbaculaError(
    'REPOSITORY',
    `lz4 block of ${srcLength} bytes is corrupt or decodes to more than ${dstLength} bytes: ${detail}`,
    { cause: error },
  );
}

function nativeKernels(addon: NativeAddon, path: string): Kernels {
  const stateBytes = addon.hashStateBytes;
  return {
    kind: 'native',
    hashAlgorithm: HASH_ALGORITHM,
    source: path,
    fallbackReason: undefined,
    lz4CompressBound: (length) => addon.lz4CompressBound(length),
    lz4CompressBlock: (src, dst, acceleration) => addon.lz4CompressBlock(src, dst, acceleration),
    lz4DecompressBlock(src, dst, dict) {
      try {
        return addon.lz4DecompressBlock(src, dst, dict);
      } catch (error) {
        throw corruptBlock(error, src.length, dst.length);
      }
    },
    hash: (data) => addon.xxh3(data),
    createHasher() {
      const state = new Uint8Array(stateBytes);
      addon.xxh3Init(state);
      return {
        reset: () => addon.xxh3Init(state),
        update: (data) => addon.xxh3Update(state, data),
        digest: () => addon.xxh3Digest(state),
      };
    },
    ...(addon.startWriteback ? { startWriteback: (fd: number, offset: number, length: number) => addon.startWriteback!(fd, offset, length) } : {}),
    xxh32: (data, seed = 0) => addon.xxh32(data, seed),
    createXxh32(seed = 0) {
      const state = new Uint8Array(stateBytes);
      addon.xxh32Init(state, seed);
      return {
        reset: () => addon.xxh32Init(state, seed),
        update: (data) => addon.xxh32Update(state, data),
        digest: () => addon.xxh32Digest(state),
      };
    },
  };
}

// ---- fallback --------------------------------------------------------------------------------

/** The part of `lz4-napi` used here. */
interface Lz4Napi {
  compressSync(data: Buffer): Buffer;
  uncompressSync(data: Uint8Array, dict?: Uint8Array): Buffer;
}

/** The part of `@node-rs/xxhash` used here (its one-shot `xxh3.xxh64` is slow: use the class). */
interface NodeRsXxhash {
  xxh32(input: Uint8Array, seed?: number): number;
  Xxh32: new (seed?: number) => { update(input: Uint8Array): unknown; digest(): number; reset(seed?: number): void };
  xxh3: {
    Xxh3: { withSeed(seed?: bigint): { update(input: Uint8Array): unknown; digest(): bigint; reset(): void } };
  };
}

/** Bytes of the raw-size prefix lz4_flex's `compress_prepend_size` puts before the block. */
const LZ4_NAPI_SIZE_PREFIX = 4;
/** liblz4's LZ4_MAX_INPUT_SIZE. */
const LZ4_MAX_INPUT_SIZE = 0x7e000000;

function lz4CompressBound(length: number): number {
  if (!Number.isInteger(length) || length < 0 || length > LZ4_MAX_INPUT_SIZE) {
    throw new RangeError(`length must be an integer from 0 to ${LZ4_MAX_INPUT_SIZE}`);
  }
  return length + Math.floor(length / 255) + 16;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function requirePackage<T>(name: string): T {
  try {
    return require(name) as T;
  } catch (error) {
    throw new PgbaculaError('PREREQUISITE', `the fallback kernels need the npm package ${name}, which does not load`, {
      hint: 'Run npm install in the pgbacula directory, or build the native kernels with native/kernels/build.sh.',
      cause: error,
    });
  }
}

function fallbackKernels(reason: string): Kernels {
  const lz4 = requirePackage<Lz4Napi>('lz4-napi');
  const xxhash = requirePackage<NodeRsXxhash>('@node-rs/xxhash');
  const oneShot = xxhash.xxh3.Xxh3.withSeed();
  return {
    kind: 'fallback',
    hashAlgorithm: HASH_ALGORITHM,
    source: 'npm lz4-napi + @node-rs/xxhash',
    fallbackReason: reason,
    lz4CompressBound,
    lz4CompressBlock(src, dst) {
      // lz4_flex has no acceleration setting.
      const prefixed = lz4.compressSync(asBuffer(src));
      const blockLength = prefixed.length - LZ4_NAPI_SIZE_PREFIX;
      if (blockLength > dst.length) return 0;
      dst.set(prefixed.subarray(LZ4_NAPI_SIZE_PREFIX));
      return blockLength;
    },
    lz4DecompressBlock(src, dst, dict) {
      // lz4_flex wants the raw size in front; it accepts an upper bound and returns the true size.
      const prefixed = Buffer.allocUnsafe(LZ4_NAPI_SIZE_PREFIX + src.length);
      prefixed.writeUInt32LE(dst.length, 0);
      prefixed.set(src, LZ4_NAPI_SIZE_PREFIX);
      let decoded: Buffer;
      try {
        if (src.length === 0) throw new Error('an lz4 block has at least one byte');
        decoded = dict === undefined || dict.length === 0 ? lz4.uncompressSync(prefixed) : lz4.uncompressSync(prefixed, dict);
      } catch (error) {
        throw corruptBlock(error, src.length, dst.length);
      }
      dst.set(decoded);
      return decoded.length;
    },
    hash(data) {
      oneShot.reset();
      oneShot.update(data);
      return oneShot.digest();
    },
    createHasher() {
      const state = xxhash.xxh3.Xxh3.withSeed();
      return {
        reset: () => state.reset(),
        update: (data) => void state.update(data),
        digest: () => state.digest(),
      };
    },
    xxh32: (data, seed = 0) => xxhash.xxh32(data, seed),
    createXxh32(seed = 0) {
      const state = new xxhash.Xxh32(seed);
      return {
        reset: () => state.reset(seed),
        update: (data) => void state.update(data),
        digest: () => state.digest(),
      };
    },
  };
}

// ---- loader ----------------------------------------------------------------------------------

export function kernelModeFromEnv(env: NodeJS.ProcessEnv = process.env): KernelMode {
  const value = env.PGBACULA_KERNELS;
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if (value === 'native' || value === 'fallback') return value;
  throw new PgbaculaError('PARAM_INVALID', `PGBACULA_KERNELS has the unknown value ${JSON.stringify(value)}`, {
    hint: 'Set it to auto, native or fallback, or unset it.',
  });
}

const loaded = new Map<KernelMode, Kernels>();

/**
 * The addon's page verifier, when the kernel mode allows the addon and it was built with one;
 * undefined otherwise (callers use the worker pipeline then).
 */
export function nativePageVerifier(mode: KernelMode = kernelModeFromEnv()): NativePageVerifier | undefined {
  if (mode === 'fallback') return undefined;
  const native = loadNativeAddon();
  if (!native.ok || typeof native.addon.verifyRanges !== 'function' || typeof native.addon.pageChecksum !== 'function') return undefined;
  const addon = native.addon;
  return { pageChecksum: (page, blkno) => addon.pageChecksum!(page, blkno), verifyRanges: (p, r, b, t) => addon.verifyRanges!(p, r, b, t) };
}

/**
 * The addon's directory lister, when the kernel mode allows the addon and it was built with one:
 * a directory's names never become separate strings on a JavaScript heap.
 */
export function nativeDirWalker(mode: KernelMode = kernelModeFromEnv()): ((path: string) => NativeWalkedDir) | undefined {
  if (mode === 'fallback') return undefined;
  const native = loadNativeAddon();
  if (!native.ok || typeof native.addon.walkDir !== 'function') return undefined;
  const addon = native.addon;
  return (path) => addon.walkDir!(path);
}

/**
 * The addon's syncfs (on libuv's pool), when the kernel mode allows the addon and it was built
 * with it: a restore then syncs each file system it wrote to once instead of fsyncing every file.
 */
export function nativeFileSystemSync(mode: KernelMode = kernelModeFromEnv()): ((fd: number) => Promise<void>) | undefined {
  if (mode === 'fallback') return undefined;
  const native = loadNativeAddon();
  if (!native.ok || typeof native.addon.syncFileSystem !== 'function' || typeof native.addon.startWriteback !== 'function') return undefined;
  const addon = native.addon;
  return (fd) => addon.syncFileSystem!(fd);
}

/**
 * The kernels of this thread, loaded once per mode: the native addon when it loads (mode `auto`,
 * the default from env PGBACULA_KERNELS), else the fallback. Mode `native` throws when the addon
 * is unavailable; mode `fallback` never tries it.
 */
export function loadKernels(mode: KernelMode = kernelModeFromEnv()): Kernels {
  const cached = loaded.get(mode);
  if (cached !== undefined) return cached;
  let kernels: Kernels;
  if (mode === 'fallback') {
    kernels = fallbackKernels('PGBACULA_KERNELS=fallback');
  } else {
    const native = loadNativeAddon();
    if (native.ok) {
      kernels = nativeKernels(native.addon, native.path);
    } else if (mode === 'native') {
      throw new PgbaculaError('PREREQUISITE', `the native kernels are unavailable: ${native.reason}`, {
        hint: 'Install build-essential, liblz4-dev and libxxhash-dev and run native/kernels/build.sh, or unset PGBACULA_KERNELS.',
      });
    } else {
      kernels = fallbackKernels(native.reason);
    }
  }
  loaded.set(mode, kernels);
  return kernels;
}
