import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import {
  HASH_ALGORITHM,
  kernelModeFromEnv,
  loadKernels,
  nativeAddonCandidates,
  type Kernels,
} from '../../src/format/kernels.js';
import { seededRandom } from '../harness/seeded-random.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const addonPath = join(repoRoot, 'native', 'build', 'pgbacula_kernels.node');


function randomBytes(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = random() & 0xff;
  return bytes;
}

/** Text-like bytes (what a heap of md5 rows looks like): compressible, not trivially. */
function textBytes(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const bytes = new Uint8Array(length);
  const words = ['postgres', 'backup', 'bacula', 'relation', '0123456789abcdef', ' ', '\n', 'row '];
  let at = 0;
  while (at < length) {
    const word = words[random() % words.length] ?? ' ';
    for (let i = 0; i < word.length && at < length; i++) bytes[at++] = word.charCodeAt(i);
  }
  return bytes;
}

/** Lengths at every edge of XXH3's code paths (0, 1–3, 4–8, 9–16, 17–128, 129–240, long). */
const HASH_LENGTHS = [
  0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 63, 64, 65, 127, 128, 129, 200, 239, 240, 241, 255, 256, 511, 1024,
  1025, 4095, 8192, 65536 + 7, 1024 * 1024 + 13,
];

let kinds: Kernels[] = [];
let workDir = '';

beforeAll(() => {
  // Idempotent and fast when up to date; fails the suite when the addon cannot be built here.
  execFileSync('bash', [join(repoRoot, 'native', 'kernels', 'build.sh'), '--quiet'], { stdio: 'inherit' });
  kinds = [loadKernels('native'), loadKernels('fallback')];
  workDir = mkdtempSync(join(tmpdir(), 'pgbacula-kernels-'));
});

afterAll(() => {
  if (workDir !== '') rmSync(workDir, { recursive: true, force: true });
});

describe('loadKernels', () => {
  it('loads the native addon and the fallback, each naming its hash algorithm', () => {
    const [native, fallback] = kinds;
    expect(native?.kind).toBe('native');
    expect(native?.source).toBe(addonPath);
    expect(native?.fallbackReason).toBeUndefined();
    expect(fallback?.kind).toBe('fallback');
    expect(fallback?.fallbackReason).toBe('PGBACULA_KERNELS=fallback');
    for (const kernels of kinds) expect(kernels.hashAlgorithm).toBe(HASH_ALGORITHM);
    expect(HASH_ALGORITHM).toBe('xxh3-64');
  });

  it('caches one set per mode and thread', () => {
    expect(loadKernels('native')).toBe(loadKernels('native'));
    expect(loadKernels('fallback')).toBe(loadKernels('fallback'));
  });

  it('reads PGBACULA_KERNELS', () => {
    expect(kernelModeFromEnv({})).toBe('auto');
    expect(kernelModeFromEnv({ PGBACULA_KERNELS: '' })).toBe('auto');
    expect(kernelModeFromEnv({ PGBACULA_KERNELS: 'auto' })).toBe('auto');
    expect(kernelModeFromEnv({ PGBACULA_KERNELS: 'fallback' })).toBe('fallback');
    expect(kernelModeFromEnv({ PGBACULA_KERNELS: 'native' })).toBe('native');
    expect(() => kernelModeFromEnv({ PGBACULA_KERNELS: 'wasm' })).toThrow(PgbaculaError);
  });

  it('follows PGBACULA_KERNELS by default (auto → native here)', () => {
    const expected = process.env.PGBACULA_KERNELS === 'fallback' ? 'fallback' : 'native';
    expect(loadKernels().kind).toBe(expected);
  });

  it('looks for native/build in every directory above the module (src/ and dist/src/ layouts)', () => {
    const fromSource = nativeAddonCandidates(new URL('../../src/format/kernels.ts', import.meta.url).href);
    const fromDist = nativeAddonCandidates(new URL('../../dist/src/format/kernels.js', import.meta.url).href);
    expect(fromSource).toContain(addonPath);
    expect(fromDist).toContain(addonPath);
    expect(fromSource[0]).toBe(join(repoRoot, 'src', 'format', 'native', 'build', 'pgbacula_kernels.node'));
  });
});

describe('hashes', () => {
  it('match the xxHash reference values for empty input', () => {
    for (const kernels of kinds) {
      expect(kernels.hash(new Uint8Array(0))).toBe(0x2d06800538d394c2n); // XXH3_64bits("")
      expect(kernels.xxh32(new Uint8Array(0))).toBe(0x02cc5d05); // XXH32("", 0)
      expect(kernels.xxh32(new TextEncoder().encode('abc'))).toBe(0x32d153ff);
      expect(kernels.hash(new TextEncoder().encode('abc'))).toBe(0x78af5f94892f3950n);
    }
  });

  it('match xxhsum -H3 and -H0 (Debian package xxhash) at every XXH3 length class', () => {
    const files = HASH_LENGTHS.map((length, index) => {
      const path = join(workDir, `hash-${length}`);
      writeFileSync(path, index % 2 === 0 ? randomBytes(length, length + 1) : textBytes(length, length + 1));
      return { path, length };
    });
    const parse = (algorithm: string): Map<string, string> => {
      const out = execFileSync('xxhsum', [algorithm, ...files.map((f) => f.path)], { encoding: 'utf8' });
      const result = new Map<string, string>();
      for (const line of out.trim().split('\n')) {
        const bsd = /^XXH3 \((.+)\) = ([0-9a-f]{16})$/.exec(line);
        const gnu = /^([0-9a-f]+) {2}(.+)$/.exec(line);
        if (bsd?.[1] !== undefined && bsd[2] !== undefined) result.set(bsd[1], bsd[2]);
        else if (gnu?.[1] !== undefined && gnu[2] !== undefined) result.set(gnu[2], gnu[1]);
        else throw new Error(`unexpected xxhsum line: ${line}`);
      }
      return result;
    };
    const xxh3 = parse('-H3');
    const xxh32 = parse('-H0');
    expect(xxh3.size).toBe(files.length);
    for (const { path, length } of files) {
      const bytes = readFileSync(path);
      for (const kernels of kinds) {
        expect(kernels.hash(bytes).toString(16).padStart(16, '0'), `${kernels.kind} xxh3 of ${length} bytes`).toBe(xxh3.get(path));
        expect(kernels.xxh32(bytes).toString(16).padStart(8, '0'), `${kernels.kind} xxh32 of ${length} bytes`).toBe(xxh32.get(path));
      }
    }
  });

  it('are the same in both kinds for many random and text inputs, at any offset in a buffer', () => {
    const random = seededRandom(7);
    const big = randomBytes(3 * 1024 * 1024, 99);
    const text = textBytes(3 * 1024 * 1024, 98);
    const [native, fallback] = kinds as [Kernels, Kernels];
    for (let i = 0; i < 400; i++) {
      const source = i % 2 === 0 ? big : text;
      const length = i < 300 ? random() % 2048 : random() % (2 * 1024 * 1024);
      const start = random() % (source.length - length);
      const data = source.subarray(start, start + length);
      expect(fallback.hash(data)).toBe(native.hash(data));
      const seed = random();
      expect(fallback.xxh32(data, seed)).toBe(native.xxh32(data, seed));
    }
  });

  it('streaming equals one-shot, for any split, and reset starts over', () => {
    const data = textBytes(5 * 1024 * 1024 + 333, 5);
    const random = seededRandom(11);
    for (const kernels of kinds) {
      const expected = kernels.hash(data);
      const expected32 = kernels.xxh32(data, 17);
      const hasher = kernels.createHasher();
      const hasher32 = kernels.createXxh32(17);
      for (let round = 0; round < 4; round++) {
        hasher.reset();
        hasher32.reset();
        let at = 0;
        while (at < data.length) {
          const step = round === 0 ? 1 + (random() % 300) : 1 + (random() % (1 << (10 + round * 4)));
          const piece = data.subarray(at, Math.min(at + step, data.length));
          hasher.update(piece);
          hasher32.update(piece);
          at += piece.length;
          if (round === 0 && at > 100_000) {
            hasher.update(data.subarray(at));
            hasher32.update(data.subarray(at));
            break;
          }
        }
        expect(hasher.digest(), `${kernels.kind} round ${round}`).toBe(expected);
        expect(hasher32.digest(), `${kernels.kind} round ${round}`).toBe(expected32);
      }
      hasher.reset();
      expect(hasher.digest()).toBe(0x2d06800538d394c2n);
    }
  });

  it('native streaming states survive being copied to a buffer of another alignment', async () => {
    const addon = (await import('node:module')).createRequire(import.meta.url)(addonPath) as {
      hashStateBytes: number;
      xxh3(data: Uint8Array): bigint;
      xxh3Init(state: Uint8Array): void;
      xxh3Update(state: Uint8Array, data: Uint8Array): void;
      xxh3Digest(state: Uint8Array): bigint;
      xxh32Digest(state: Uint8Array): number;
    };
    const data = randomBytes(100_000, 3);
    const state = new Uint8Array(addon.hashStateBytes);
    addon.xxh3Init(state);
    addon.xxh3Update(state, data.subarray(0, 50_001));
    for (const shift of [1, 7, 33]) {
      const moved = new Uint8Array(addon.hashStateBytes + shift).subarray(shift);
      moved.set(state);
      addon.xxh3Update(moved, data.subarray(50_001));
      expect(addon.xxh3Digest(moved)).toBe(addon.xxh3(data));
    }
    expect(() => addon.xxh3Digest(new Uint8Array(addon.hashStateBytes))).toThrow(/not initialized by xxh3Init/);
    expect(() => addon.xxh32Digest(state)).toThrow(/not initialized by xxh32Init/);
    expect(() => addon.xxh3Init(new Uint8Array(16))).toThrow(/at least/);
  });

  it('hash and compress bytes that live in WebAssembly memory (where the workers read ranges)', () => {
    const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } } })
      .WebAssembly;
    const memory = new wasm.Memory({ initial: 48 }); // 3 MiB
    const data = textBytes(1024 * 1024, 31);
    const inWasm = new Uint8Array(memory.buffer, 4096, data.length);
    inWasm.set(data);
    for (const kernels of kinds) {
      expect(kernels.hash(inWasm)).toBe(kernels.hash(data));
      const dst = new Uint8Array(kernels.lz4CompressBound(data.length));
      const size = kernels.lz4CompressBlock(inWasm, dst);
      const out = new Uint8Array(memory.buffer, 4096 + data.length, data.length);
      expect(kernels.lz4DecompressBlock(dst.subarray(0, size), out)).toBe(data.length);
      expect(Buffer.from(out).equals(Buffer.from(data))).toBe(true);
    }
  });

  it('reject what is not a Uint8Array', () => {
    const native = loadKernels('native');
    expect(() => native.hash(new Uint16Array(4) as unknown as Uint8Array)).toThrow(/Uint8Array/);
    expect(() => native.hash('text' as unknown as Uint8Array)).toThrow(/Uint8Array/);
  });
});

describe('lz4 blocks', () => {
  const inputs: Array<[string, Uint8Array]> = [
    ['empty', new Uint8Array(0)],
    ['one byte', new Uint8Array([42])],
    ['15 bytes', textBytes(15, 1)],
    ['64 KiB of text', textBytes(65536, 2)],
    ['64 KiB random', randomBytes(65536, 3)],
    ['1 MiB of zeros', new Uint8Array(1024 * 1024)],
    ['4 MiB of text', textBytes(4 * 1024 * 1024, 4)],
  ];

  it('compress in one kind and decompress in the other to the same bytes', () => {
    for (const [name, raw] of inputs) {
      for (const encoder of kinds) {
        const compressed = new Uint8Array(encoder.lz4CompressBound(raw.length));
        const size = encoder.lz4CompressBlock(raw, compressed);
        expect(size, `${encoder.kind} ${name}`).toBeGreaterThan(0);
        for (const decoder of kinds) {
          const out = new Uint8Array(raw.length + 100);
          const n = decoder.lz4DecompressBlock(compressed.subarray(0, size), out);
          expect(n, `${encoder.kind} → ${decoder.kind} ${name}`).toBe(raw.length);
          expect(Buffer.from(out.subarray(0, n)).equals(Buffer.from(raw)), `${encoder.kind} → ${decoder.kind} ${name}`).toBe(true);
        }
      }
    }
  });

  it('return 0 when the block does not fit, so the caller stores it raw', () => {
    const raw = randomBytes(65536, 8);
    for (const kernels of kinds) {
      expect(kernels.lz4CompressBlock(raw, new Uint8Array(raw.length - 1))).toBe(0);
      expect(kernels.lz4CompressBlock(raw, new Uint8Array(0))).toBe(0);
      expect(kernels.lz4CompressBlock(new Uint8Array(65536), new Uint8Array(1000))).toBeGreaterThan(0);
    }
  });

  it('compress into a view inside a larger buffer without touching the bytes around it', () => {
    const raw = textBytes(100_000, 9);
    for (const kernels of kinds) {
      const area = new Uint8Array(200_000).fill(0xee);
      const size = kernels.lz4CompressBlock(raw, area.subarray(1000, 1000 + kernels.lz4CompressBound(raw.length)));
      expect(area.subarray(0, 1000).every((b) => b === 0xee)).toBe(true);
      expect(area.subarray(1000 + size).every((b) => b === 0xee)).toBe(true);
    }
  });

  it('native acceleration trades ratio for speed and stays decodable', () => {
    const native = loadKernels('native');
    const raw = textBytes(1024 * 1024, 12);
    const dst = new Uint8Array(native.lz4CompressBound(raw.length));
    const fast = native.lz4CompressBlock(raw, dst, 1);
    const faster = native.lz4CompressBlock(raw, dst, 20);
    expect(faster).toBeGreaterThan(fast);
    const out = new Uint8Array(raw.length);
    expect(loadKernels('fallback').lz4DecompressBlock(dst.subarray(0, faster), out)).toBe(raw.length);
    expect(Buffer.from(out).equals(Buffer.from(raw))).toBe(true);
  });

  it('throw a REPOSITORY error for corrupt blocks and for output beyond dst', () => {
    const raw = textBytes(200_000, 13);
    for (const kernels of kinds) {
      const compressed = new Uint8Array(kernels.lz4CompressBound(raw.length));
      const size = kernels.lz4CompressBlock(raw, compressed);
      const block = compressed.subarray(0, size);
      const tooSmall = (): number => kernels.lz4DecompressBlock(block, new Uint8Array(raw.length - 1));
      expect(tooSmall).toThrow(PgbaculaError);
      expect(tooSmall).toThrow(/lz4 block of \d+ bytes is corrupt or decodes to more than/);
      expect(() => kernels.lz4DecompressBlock(block.subarray(0, size - 10), new Uint8Array(raw.length))).toThrow(PgbaculaError);
      expect(() => kernels.lz4DecompressBlock(new Uint8Array(0), new Uint8Array(10))).toThrow(PgbaculaError);
      // An offset of 0 (or beyond the output start) is never valid.
      expect(() => kernels.lz4DecompressBlock(new Uint8Array([0x0f, 0x00, 0x00, 0x00]), new Uint8Array(100))).toThrow(
        PgbaculaError,
      );
      try {
        tooSmall();
      } catch (error) {
        expect((error as PgbaculaError).code).toBe('REPOSITORY');
      }
    }
  });

  it('decode a linked block against the preceding output (dict)', () => {
    const text = textBytes(200_000, 14);
    const first = text.subarray(0, 100_000);
    // The second block repeats the first: with the first as dictionary it is mostly matches.
    const second = text.subarray(0, 100_000).slice();
    second[5] = 0x21;
    // Compress the second block with lz4 -BD through the CLI and cut its second block out.
    const input = join(workDir, 'linked.raw');
    writeFileSync(input, Buffer.concat([first, second]));
    const frame = execFileSync('lz4', ['-q', '-BD', '-B4', '--no-frame-crc', '-c', input], { stdio: 'pipe' });
    // Header 7 bytes; first block record; second block record.
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const size1 = view.getUint32(7, true) & 0x7fffffff;
    const at2 = 7 + 4 + size1;
    const field2 = view.getUint32(at2, true);
    expect(field2 & 0x80000000).toBe(0);
    const block2 = frame.subarray(at2 + 4, at2 + 4 + field2);
    const firstBlockLength = 65536;
    const dict = Buffer.concat([first, second]).subarray(0, firstBlockLength);
    for (const kernels of kinds) {
      const out = new Uint8Array(65536);
      const n = kernels.lz4DecompressBlock(block2, out, dict);
      expect(n).toBe(65536);
      expect(Buffer.from(out).equals(Buffer.concat([first, second]).subarray(65536, 131072))).toBe(true);
      expect(() => kernels.lz4DecompressBlock(block2, new Uint8Array(65536))).toThrow(PgbaculaError);
    }
  });
});

describe('the native addon in worker threads', () => {
  const workerSource = `
    const { parentPort, workerData } = require('node:worker_threads');
    const addon = require(workerData.addonPath);
    const data = new Uint8Array(workerData.data);
    const dst = new Uint8Array(addon.lz4CompressBound(data.length));
    let hash = 0n, size = 0;
    for (let round = 0; round < workerData.rounds; round++) {
      hash = addon.xxh3(data);
      size = addon.lz4CompressBlock(data, dst);
    }
    const state = new Uint8Array(addon.hashStateBytes);
    addon.xxh3Init(state);
    addon.xxh3Update(state, data);
    // Transfer the compressed bytes in a buffer we own (no copy by postMessage).
    const out = new ArrayBuffer(size);
    new Uint8Array(out).set(dst.subarray(0, size));
    parentPort.postMessage({ hash, streamed: addon.xxh3Digest(state), size, compressed: out }, [out]);
  `;

  function runWorker(data: Uint8Array, rounds: number): Promise<{ hash: bigint; streamed: bigint; size: number; compressed: ArrayBuffer }> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(workerSource, {
        eval: true,
        workerData: { addonPath, data: data.slice().buffer, rounds },
      });
      worker.once('message', (message) => resolve(message as { hash: bigint; streamed: bigint; size: number; compressed: ArrayBuffer }));
      worker.once('error', reject);
      worker.once('exit', (code) => {
        if (code !== 0) reject(new Error(`worker exited with ${code}`));
      });
    });
  }

  it('loads and works in two threads at once, and again after they exit', async () => {
    const native = loadKernels('native');
    const a = textBytes(2 * 1024 * 1024, 21);
    const b = randomBytes(1024 * 1024, 22);
    const results = await Promise.all([runWorker(a, 20), runWorker(b, 20)]);
    for (const [data, result] of [
      [a, results[0]],
      [b, results[1]],
    ] as const) {
      expect(result.hash).toBe(native.hash(data));
      expect(result.streamed).toBe(native.hash(data));
      const out = new Uint8Array(data.length);
      expect(native.lz4DecompressBlock(new Uint8Array(result.compressed), out)).toBe(data.length);
      expect(Buffer.from(out).equals(Buffer.from(data))).toBe(true);
    }
    // The per-thread state of exited workers is gone; new threads and this one still work.
    const again = await runWorker(a, 1);
    expect(again.hash).toBe(native.hash(a));
    expect(native.hash(b)).toBe(results[1].hash);
  });
});
