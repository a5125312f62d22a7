/**
 * Loader of the WebAssembly SIMD page-checksum kernel (`wasm/page-checksum.wat`, assembled by
 * `scripts/build-wasm.mjs` into `dist/wasm/page-checksum.wasm`) and {@link createPageVerifier}, which
 * picks it or falls back to the pure-JS kernel of `page-checksum.ts`.
 *
 * Why WASM: data already in the module's linear memory is checked at about 5× the pure-JS speed,
 * and a file range can be read straight into that memory, so read, verify and hash
 * share one buffer with no copy.
 *
 * Memory layout of one instance (one per worker thread):
 *
 *     [0, maxBytes)                              input: pages, read there by the caller
 *     [maxBytes, maxBytes + 8·maxBytes/BLCKSZ)   results: per failing page u32 index, u16 computed,
 *                                                u16 stored (checksums(): one u16 per page)
 *
 * The only I/O in this module is reading the .wasm file, once per thread.
 */

import { readFileSync } from 'node:fs';
import { PgbaculaError } from '../errors.js';
import {
  checkCapacity,
  checkVerifierOptions,
  checkVerifyRange,
  createJsPageVerifier,
  type PageChecksumFailure,
  type PageVerifier,
  type PageVerifierOptions,
} from './page-checksum.js';

/** Opaque handle of a compiled `WebAssembly.Module`; it may be posted to worker threads. */
export interface CompiledWasmModule {
  readonly __compiledWasmModule?: never;
}

// The part of the WebAssembly JS API used here: lib ES2023 and @types/node 20 do not declare it.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => CompiledWasmModule;
  Instance: new (module: CompiledWasmModule, imports: object) => { readonly exports: unknown };
}

interface PageChecksumExports {
  memory: WasmMemory;
  pageChecksum(offset: number, pageSize: number, blkno: number): number;
  verifyPages(offset: number, pageCount: number, firstBlkno: number, pageSize: number, out: number): number;
  checksumPages(offset: number, pageCount: number, firstBlkno: number, pageSize: number, out: number): void;
  newPages(): number;
}

const WASM_PAGE_BYTES = 65536;
/** Bytes per failure record in the result area. */
const FAILURE_RECORD_BYTES = 8;
const WASM_FILE_NAME = 'page-checksum.wasm';

/** `undefined` when this Node runs without WebAssembly (e.g. `--jitless`). */
const wasmApi = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

/**
 * Where the assembled kernel may be, relative to this module's own URL: `dist/wasm/` is
 * `../../wasm/` from `dist/src/format/` (the built package), and `../../dist/wasm/` from
 * `src/format/` (sources run by the test runner after a build).
 */
export function wasmKernelUrls(moduleUrl: string = import.meta.url): URL[] {
  return [new URL(`../../wasm/${WASM_FILE_NAME}`, moduleUrl), new URL(`../../dist/wasm/${WASM_FILE_NAME}`, moduleUrl)];
}

/** Compiles the kernel from its bytes (synchronously: the module is under 2 kB). */
export function compilePageChecksumModule(bytes: Uint8Array): CompiledWasmModule {
  if (wasmApi === undefined) {
    throw new PgbaculaError('PREREQUISITE', 'this Node.js runs without WebAssembly', {
      hint: 'Do not start node with --jitless.',
    });
  }
  try {
    return new wasmApi.Module(bytes);
  } catch (error) {
    // A CPU without SSE4.1 (V8's floor for WebAssembly SIMD) ends here.
    throw new PgbaculaError('PREREQUISITE', 'the WebAssembly SIMD page checksum kernel does not compile here', {
      cause: error,
    });
  }
}

export type WasmKernelAvailability =
  | { available: true; module: CompiledWasmModule; url: string }
  | { available: false; reason: string };

let availability: WasmKernelAvailability | undefined;

/** Loads and compiles the kernel once per thread; says why not when it cannot. */
export function wasmKernelAvailability(): WasmKernelAvailability {
  if (availability !== undefined) return availability;
  const urls = wasmKernelUrls();
  let bytes: Uint8Array | undefined;
  let url: URL | undefined;
  for (const candidate of urls) {
    try {
      bytes = readFileSync(candidate);
      url = candidate;
      break;
    } catch {
      // Try the next location.
    }
  }
  if (bytes === undefined || url === undefined) {
    availability = {
      available: false,
      reason: `${WASM_FILE_NAME} not found at ${urls.map((u) => u.pathname).join(' or ')}; run npm run build`,
    };
    return availability;
  }
  try {
    availability = { available: true, module: compilePageChecksumModule(bytes), url: url.href };
  } catch (error) {
    availability = { available: false, reason: error instanceof Error ? error.message : String(error) };
  }
  return availability;
}

export interface WasmPageVerifierOptions extends PageVerifierOptions {
  /** A compiled kernel (e.g. posted from the main thread); by default the one next to this module. */
  module?: CompiledWasmModule;
}

/** The WebAssembly SIMD verifier. Throws `E_PREREQUISITE` when the kernel cannot be loaded. */
export function createWasmPageVerifier(options: WasmPageVerifierOptions): PageVerifier {
  const blockSize = checkVerifierOptions(options);
  let module = options.module;
  if (module === undefined) {
    const loaded = wasmKernelAvailability();
    if (!loaded.available) {
      throw new PgbaculaError('PREREQUISITE', `the WebAssembly page checksum kernel is unavailable: ${loaded.reason}`);
    }
    module = loaded.module;
  }
  if (wasmApi === undefined) {
    throw new PgbaculaError('PREREQUISITE', 'this Node.js runs without WebAssembly');
  }
  const kernel = new wasmApi.Instance(module, {}).exports as PageChecksumExports;
  const memory = kernel.memory;

  let maxBytes = 0;
  let resultOffset = 0;
  let inputView = new Uint8Array(0);

  function reserve(wanted: number): void {
    const needed = wanted + (wanted / blockSize) * FAILURE_RECORD_BYTES;
    const havePages = memory.buffer.byteLength / WASM_PAGE_BYTES;
    const needPages = Math.ceil(needed / WASM_PAGE_BYTES);
    if (needPages > havePages) memory.grow(needPages - havePages);
    maxBytes = wanted;
    resultOffset = wanted;
    inputView = new Uint8Array(memory.buffer, 0, maxBytes);
  }
  reserve(options.maxBytes);

  return {
    kernel: 'wasm-simd',
    blockSize,
    get maxBytes() {
      return maxBytes;
    },
    get input() {
      return inputView;
    },
    verify(byteLength, firstBlkno) {
      const pageCount = checkVerifyRange(byteLength, firstBlkno, blockSize, maxBytes);
      // i32 parameters: block numbers above 2^31 arrive as their two's complement, which is the
      // same 32 bits the kernel mixes in.
      const failureCount = kernel.verifyPages(0, pageCount, firstBlkno, blockSize, resultOffset);
      const newPages = kernel.newPages();
      const failures: PageChecksumFailure[] = [];
      if (failureCount > 0) {
        const records = new DataView(memory.buffer, resultOffset, failureCount * FAILURE_RECORD_BYTES);
        for (let i = 0; i < failureCount; i++) {
          const at = i * FAILURE_RECORD_BYTES;
          const pageIndex = records.getUint32(at, true);
          failures.push({
            pageIndex,
            blkno: firstBlkno + pageIndex,
            computed: records.getUint16(at + 4, true),
            stored: records.getUint16(at + 6, true),
          });
        }
      }
      return { checkedPages: pageCount - newPages, newPages, failures };
    },
    checksums(byteLength, firstBlkno) {
      const pageCount = checkVerifyRange(byteLength, firstBlkno, blockSize, maxBytes);
      kernel.checksumPages(0, pageCount, firstBlkno, blockSize, resultOffset);
      return new Uint16Array(memory.buffer.slice(resultOffset, resultOffset + pageCount * 2));
    },
    ensureCapacity(wanted) {
      checkCapacity(wanted, blockSize);
      if (wanted > maxBytes) reserve(wanted);
    },
  };
}

/**
 * The verifier to use: WebAssembly SIMD when its kernel loads here, else the pure-JS one (same
 * results, about a fifth of the speed). {@link wasmKernelAvailability} tells why it fell back.
 */
export function createPageVerifier(options: WasmPageVerifierOptions): PageVerifier {
  if (options.module !== undefined || wasmKernelAvailability().available) return createWasmPageVerifier(options);
  return createJsPageVerifier(options);
}
