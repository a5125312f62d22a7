import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import {
  createLz4EncodeScratch,
  decodeFrame,
  encodeBlocks,
  encodeFrame,
  encodeFrameEnd,
  encodeFrameHeader,
  LZ4_FRAME_BLOCK_BYTES,
  Lz4FrameDecoder,
  parseFrameDescriptor,
  xxh32Small,
} from '../../src/format/lz4-frame.js';
import { loadKernels, type Kernels } from '../../src/format/kernels.js';
import { seededRandom } from '../harness/seeded-random.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const MiB = 1024 * 1024;


function randomBytes(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i + 4 <= length; i += 4) new DataView(bytes.buffer).setUint32(i, random(), true);
  for (let i = length - (length % 4); i < length; i++) bytes[i] = random() & 0xff;
  return bytes;
}

function repetitiveBytes(length: number): Uint8Array {
  const pattern = new TextEncoder().encode('INSERT INTO pgbench_accounts VALUES (1, 1, 0, ');
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = pattern[i % pattern.length] ?? 0;
  return bytes;
}

/** Heap-like 8 kB pages: a header, line pointers, and rows of an int and 32 hex characters. */
function pageLikeBytes(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const bytes = new Uint8Array(length);
  for (let page = 0; page * 8192 < length; page++) {
    const base = page * 8192;
    let upper = 8192;
    let lower = 24;
    while (upper - 64 >= lower + 4 && base + upper <= length) {
      upper -= 64;
      if (base + lower + 4 <= length) new DataView(bytes.buffer).setUint32(base + lower, upper | (1 << 15) | (64 << 17), true);
      lower += 4;
      bytes[base + upper] = 0xe1;
      bytes[base + upper + 22] = 24;
      for (let i = 0; i < 32; i++) bytes[base + upper + 29 + i] = '0123456789abcdef'.charCodeAt(random() & 15);
    }
  }
  return bytes;
}

const SIZES = [0, 1, 15, 64 * 1024, 4 * MiB, 8 * MiB, 8 * MiB + 1];
const PATTERNS: Array<[string, (length: number) => Uint8Array]> = [
  ['random', (length) => randomBytes(length, length + 3)],
  ['zeros', (length) => new Uint8Array(length)],
  ['repetitive', repetitiveBytes],
  ['pages', (length) => pageLikeBytes(length, 5)],
];

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The whole frame of `raw` compressed in independent ranges, as workers would. */
function frameFromRanges(raw: Uint8Array, rangeBytes: number, kernels: Kernels, contentSize = false): Uint8Array {
  const scratch = createLz4EncodeScratch(kernels, rangeBytes);
  const parts: Uint8Array[] = [encodeFrameHeader(contentSize ? { contentSize: raw.length } : {})];
  for (let start = 0; start < raw.length; start += rangeBytes) {
    parts.push(...encodeBlocks(raw.subarray(start, start + rangeBytes), kernels, scratch));
  }
  parts.push(encodeFrameEnd());
  return concat(parts);
}

function expectFrameError(run: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected an error matching ${pattern}`).toBeInstanceOf(PgbaculaError);
  expect((caught as PgbaculaError).code).toBe('REPOSITORY');
  expect((caught as PgbaculaError).message).toMatch(pattern);
}

let kinds: Kernels[] = [];
let workDir = '';

beforeAll(() => {
  execFileSync('bash', [join(repoRoot, 'native', 'kernels', 'build.sh'), '--quiet'], { stdio: 'inherit' });
  kinds = [loadKernels('native'), loadKernels('fallback')];
  workDir = mkdtempSync(join(tmpdir(), 'pgbacula-lz4-'));
});

afterAll(() => {
  if (workDir !== '') rmSync(workDir, { recursive: true, force: true });
});

function lz4Cli(args: string[], input: Uint8Array): Buffer {
  return execFileSync('lz4', args, { input, maxBuffer: 64 * MiB, stdio: 'pipe' });
}

describe('xxh32Small (frame descriptor checksum)', () => {
  it('equals the kernels XXH32 at every length up to 100 and for seeds', () => {
    const bytes = randomBytes(100, 1);
    for (const kernels of kinds) {
      for (let length = 0; length <= 100; length++) {
        expect(xxh32Small(bytes.subarray(0, length))).toBe(kernels.xxh32(bytes.subarray(0, length)));
        expect(xxh32Small(bytes.subarray(0, length), 0x9747b28c)).toBe(kernels.xxh32(bytes.subarray(0, length), 0x9747b28c));
      }
    }
  });
});

describe('frame header', () => {
  it('writes magic, FLG 0x60 (version 01, independent blocks), BD 0x70 (4 MiB) and HC', () => {
    const header = encodeFrameHeader();
    expect([...header]).toEqual([0x04, 0x22, 0x4d, 0x18, 0x60, 0x70, (xxh32Small(Uint8Array.of(0x60, 0x70)) >>> 8) & 0xff]);
    // The header of `lz4 -1 --no-frame-crc` for the same choices (its default is independent 4 MiB
    // blocks; it picks smaller blocks for an input that fits in one).
    const cli = lz4Cli(['-1', '--no-frame-crc', '-c'], repetitiveBytes(5 * MiB));
    expect([...cli.subarray(0, 7)]).toEqual([...header]);
  });

  it('writes the content size and checksum flags when asked, and parses back', () => {
    const header = encodeFrameHeader({ contentSize: 12_345_678_901n, contentChecksum: true });
    expect(header.length).toBe(15);
    expect(header[4]).toBe(0x6c);
    const descriptor = parseFrameDescriptor(header.subarray(4));
    expect(descriptor).toEqual({
      descriptorBytes: 11,
      blockIndependence: true,
      blockChecksum: false,
      contentChecksum: true,
      contentSize: 12_345_678_901n,
      blockMaxBytes: 4 * MiB,
    });
    const cli = lz4Cli(['-1', '--content-size', '-c'], new Uint8Array(0));
    expect(parseFrameDescriptor(cli.subarray(4)).contentSize).toBe(undefined); // stdin: size unknown
  });
});

describe('round trips', () => {
  it.each(SIZES)('%i bytes of every pattern, through both kinds in both directions', (size) => {
    for (const [name, make] of PATTERNS) {
      const raw = make(size);
      for (const encoder of kinds) {
        const frame = encodeFrame(raw, encoder);
        for (const decoder of kinds) {
          const decoded = decodeFrame(frame, decoder);
          expect(decoded.length, `${name} ${encoder.kind} → ${decoder.kind}`).toBe(raw.length);
          expect(same(decoded, raw), `${name} ${encoder.kind} → ${decoder.kind}`).toBe(true);
        }
      }
    }
  });

  it('stores incompressible blocks raw and compressible ones compressed, every block at most 4 MiB', () => {
    for (const kernels of kinds) {
      const raw = concat([randomBytes(4 * MiB, 1), new Uint8Array(4 * MiB), randomBytes(1000, 2)]);
      const records = encodeBlocks(raw, kernels, createLz4EncodeScratch(kernels, 8 * MiB));
      expect(records.length).toBe(3);
      const fields = records.map((record) => new DataView(record.buffer, record.byteOffset).getUint32(0, true));
      expect(fields[0]).toBe((0x80000000 | (4 * MiB)) >>> 0);
      expect((fields[1] ?? 0) & 0x80000000).toBe(0);
      expect(fields[1]).toBeLessThan(100_000);
      expect(fields[2]).toBe((0x80000000 | 1000) >>> 0);
      for (const record of records) expect(record.length - 4).toBeLessThanOrEqual(LZ4_FRAME_BLOCK_BYTES);
    }
  });

  it('returns the records of a range as views of one exactly sized, transferable ArrayBuffer', () => {
    for (const kernels of kinds) {
      const raw = pageLikeBytes(9 * MiB, 3);
      const records = encodeBlocks(raw, kernels, createLz4EncodeScratch(kernels, MiB)); // the scratch grows
      expect(records.length).toBe(3);
      const buffer = records[0]?.buffer;
      expect(records.every((record) => record.buffer === buffer)).toBe(true);
      expect(buffer?.byteLength).toBe(records.reduce((sum, record) => sum + record.length, 0));
      expect(encodeBlocks(new Uint8Array(0), kernels, createLz4EncodeScratch(kernels, 0))).toEqual([]);
    }
  });

  it('joins ranges compressed independently (as by different workers) into one valid frame', () => {
    const raw = concat([pageLikeBytes(10 * MiB, 8), randomBytes(3 * MiB + 77, 9)]);
    for (const [index, encoder] of kinds.entries()) {
      for (const rangeBytes of [8 * MiB, 5 * MiB + 1, 1 * MiB]) {
        const frame = frameFromRanges(raw, rangeBytes, encoder, index === 0);
        for (const decoder of kinds) expect(same(decodeFrame(frame, decoder), raw)).toBe(true);
      }
    }
  });

  it('streams: any split of the input gives the same content, in blocks of at most 4 MiB', () => {
    const raw = concat([pageLikeBytes(5 * MiB, 10), repetitiveBytes(300_000)]);
    const random = seededRandom(4);
    for (const kernels of kinds) {
      const frame = encodeFrame(raw, kernels, { contentChecksum: true, contentSize: raw.length });
      for (const maxPiece of [1, 7, 4096, 3 * MiB]) {
        const pieces: Uint8Array[] = [];
        const decoder = new Lz4FrameDecoder(kernels, (content) => {
          expect(content.length).toBeLessThanOrEqual(LZ4_FRAME_BLOCK_BYTES);
          pieces.push(content.slice());
        });
        let at = 0;
        // One-byte pieces over the whole frame would take long: split the first 64 KiB finely.
        while (at < frame.length) {
          const step = at < 65536 ? 1 + (random() % maxPiece) : 1 + (random() % Math.max(maxPiece, 65536));
          decoder.push(frame.subarray(at, Math.min(at + step, frame.length)));
          at += step;
        }
        decoder.end();
        expect(decoder.bytesRead).toBe(frame.length);
        expect(decoder.framesRead).toBe(1);
        expect(same(concat(pieces), raw)).toBe(true);
      }
    }
  });
});

describe('compatibility with the lz4 CLI (Debian package lz4)', () => {
  const raw = concat([pageLikeBytes(6 * MiB, 11), randomBytes(2 * MiB + 5, 12), repetitiveBytes(3 * MiB)]);

  it('lz4 -d reads our frames to identical bytes (with and without content size and checksum)', () => {
    for (const kernels of kinds) {
      const frames = [
        frameFromRanges(raw, 8 * MiB, kernels),
        frameFromRanges(raw, 3 * MiB, kernels, true),
        encodeFrame(raw, kernels, { contentChecksum: true }),
        encodeFrame(raw, kernels, { contentChecksum: true, contentSize: raw.length, acceleration: 8 }),
        encodeFrame(new Uint8Array(0), kernels),
        encodeFrame(Uint8Array.of(7), kernels, { contentSize: 1 }),
      ];
      for (const [index, frame] of frames.entries()) {
        const expected = index === 4 ? new Uint8Array(0) : index === 5 ? Uint8Array.of(7) : raw;
        const path = join(workDir, `ours-${kernels.kind}-${index}.lz4`);
        writeFileSync(path, frame);
        execFileSync('lz4', ['-t', '-q', path], { stdio: 'pipe' });
        const decoded = execFileSync('lz4', ['-d', '-c', path], { maxBuffer: 64 * MiB, stdio: 'pipe' });
        expect(same(decoded, expected), `${kernels.kind} frame ${index}`).toBe(true);
      }
    }
  });

  const cliVariants: string[][] = [
    ['-1'],
    ['-9'],
    ['-12'],
    ['--fast=5'],
    ['-1', '--content-size'],
    ['-1', '-BD'],
    ['-9', '-BD', '-B4'],
    ['-1', '-BX'],
    ['-1', '-BX', '-BD', '-B5', '--content-size'],
    ['-1', '--no-frame-crc'],
    ['-1', '-B4'],
    ['-1', '-B6'],
  ];

  it.each(cliVariants.map((args) => [args.join(' ')]))('our decoder reads lz4 %s', (joined) => {
    const args = joined.split(' ');
    const input = join(workDir, 'cli-input');
    writeFileSync(input, raw);
    // From a file, so that --content-size can record the size.
    const frame = execFileSync('lz4', [...args, '-c', input], { maxBuffer: 64 * MiB, stdio: 'pipe' });
    for (const kernels of kinds) {
      expect(same(decodeFrame(frame, kernels), raw), `${kernels.kind}`).toBe(true);
      // And incrementally, in pieces that cut blocks, sizes and checksums anywhere.
      const pieces: Uint8Array[] = [];
      const decoder = new Lz4FrameDecoder(kernels, (content) => pieces.push(content.slice()));
      for (let at = 0; at < frame.length; at += 99_991) decoder.push(frame.subarray(at, at + 99_991));
      decoder.end();
      expect(same(concat(pieces), raw), `${kernels.kind} incremental`).toBe(true);
    }
    if (args.includes('--content-size')) {
      expect(parseFrameDescriptor(frame.subarray(4)).contentSize).toBe(BigInt(raw.length));
    }
  });

  it('reads concatenated frames and skips skippable frames, as lz4 -d does', () => {
    const a = repetitiveBytes(100_000);
    const b = randomBytes(5000, 3);
    const skippable = new Uint8Array(8 + 10);
    new DataView(skippable.buffer).setUint32(0, 0x184d2a53, true);
    new DataView(skippable.buffer).setUint32(4, 10, true);
    for (const kernels of kinds) {
      const stream = concat([lz4Cli(['-1', '-c'], a), skippable, encodeFrame(b, kernels), encodeFrame(new Uint8Array(0), kernels)]);
      const expected = concat([a, b]);
      expect(same(decodeFrame(stream, kernels), expected)).toBe(true);
      const path = join(workDir, 'concatenated.lz4');
      writeFileSync(path, stream);
      expect(same(execFileSync('lz4', ['-d', '-c', path], { stdio: 'pipe' }), expected)).toBe(true);
    }
  });

  it('refuses the legacy format (lz4 -l) clearly', () => {
    const legacy = lz4Cli(['-l', '-c'], repetitiveBytes(1000));
    for (const kernels of kinds) expectFrameError(() => decodeFrame(legacy, kernels), /at byte 0: this is the legacy lz4 format \(lz4 -l\)/);
  });
});

describe('damaged frames', () => {
  const raw = concat([pageLikeBytes(4 * MiB, 21), pageLikeBytes(MiB, 22)]);

  function frameWith(kernels: Kernels, options: Parameters<typeof encodeFrame>[2] = {}): Uint8Array {
    return encodeFrame(raw, kernels, options);
  }

  it('names the offset of a bad magic number, and of garbage after a frame', () => {
    for (const kernels of kinds) {
      const frame = frameWith(kernels);
      const bad = frame.slice();
      bad[0] = 0x05;
      expectFrameError(() => decodeFrame(bad, kernels), /at byte 0: magic number 0x184d2205 is not an lz4 frame's/);
      expectFrameError(() => decodeFrame(concat([frame, Uint8Array.of(1, 2, 3, 4)]), kernels), new RegExp(`at byte ${frame.length}: magic number`));
      expectFrameError(() => decodeFrame(new Uint8Array(0), kernels), /at byte 0: the stream is empty/);
    }
  });

  it('checks the header checksum, version, reserved bits and dictionary flag', () => {
    for (const kernels of kinds) {
      const frame = frameWith(kernels);
      const badHc = frame.slice();
      badHc[6] = (badHc[6] ?? 0) ^ 0xff;
      expectFrameError(() => decodeFrame(badHc, kernels), /at byte 6: header checksum 0x[0-9a-f]{2} does not match/);

      const withFlg = (flg: number, bd = 0x70): Uint8Array => {
        const header = Uint8Array.of(0x04, 0x22, 0x4d, 0x18, flg, bd, 0);
        header[6] = (xxh32Small(header.subarray(4, 6)) >>> 8) & 0xff;
        return concat([header, encodeFrameEnd()]);
      };
      expectFrameError(() => decodeFrame(withFlg(0x80 | 0x20), kernels), /at byte 4: frame version 2 is not 1/);
      expectFrameError(() => decodeFrame(withFlg(0x62), kernels), /at byte 4: a reserved FLG bit is set/);
      expectFrameError(() => decodeFrame(withFlg(0x60, 0x71), kernels), /at byte 5: a reserved BD bit is set/);
      expectFrameError(() => decodeFrame(withFlg(0x60, 0x30), kernels), /at byte 5: block maximum size id 3 is not 4 to 7/);
      const dict = concat([Uint8Array.of(0x04, 0x22, 0x4d, 0x18, 0x61, 0x70, 1, 2, 3, 4, 0), encodeFrameEnd()]);
      dict[10] = (xxh32Small(dict.subarray(4, 10)) >>> 8) & 0xff;
      expectFrameError(() => decodeFrame(dict, kernels), /at byte 4: the frame needs a preset dictionary/);
      expect(same(decodeFrame(withFlg(0x60, 0x40), kernels), new Uint8Array(0))).toBe(true);
    }
  });

  it('names the offset where a truncated frame ends', () => {
    for (const kernels of kinds) {
      const frame = frameWith(kernels, { contentChecksum: true });
      const firstBlock = new DataView(frame.buffer).getUint32(7, true) & 0x7fffffff;
      const cases: Array<[number, RegExp]> = [
        [2, /at byte 2: the stream is truncated: it ends inside a frame magic number/],
        [5, /at byte 5: the stream is truncated: it ends inside the frame descriptor/],
        [7, /at byte 7: the stream is truncated: it ends inside a block size or the end mark/],
        [9, /at byte 9: the stream is truncated: it ends inside a block size or the end mark/],
        [7 + 4 + 100, /at byte 111: the stream is truncated: it ends inside the block record that starts at byte 7/],
        [7 + 4 + firstBlock, new RegExp(`at byte ${11 + firstBlock}: the stream is truncated: it ends inside a block size`)],
        [frame.length - 4, new RegExp(`at byte ${frame.length - 4}: the stream is truncated: it ends inside the content checksum`)],
        [frame.length - 1, new RegExp(`at byte ${frame.length - 1}: the stream is truncated: it ends inside the content checksum`)],
      ];
      for (const [length, pattern] of cases) expectFrameError(() => decodeFrame(frame.subarray(0, length), kernels), pattern);
    }
  });

  it('detects damaged blocks, checksums, sizes and content sizes', () => {
    for (const kernels of kinds) {
      const frame = frameWith(kernels, { contentChecksum: true });
      // A damaged compressed block either fails to decode or changes the content checksum.
      const flipped = frame.slice();
      flipped[7 + 4 + 5000] = (flipped[7 + 4 + 5000] ?? 0) ^ 0x55;
      expectFrameError(() => decodeFrame(flipped, kernels), /at byte (7: the compressed block|\d+: content checksum)/);
      // A damaged content checksum.
      const badSum = frame.slice();
      badSum[badSum.length - 1] = (badSum[badSum.length - 1] ?? 0) ^ 1;
      expectFrameError(() => decodeFrame(badSum, kernels), new RegExp(`at byte ${frame.length - 4}: content checksum 0x[0-9a-f]{8} does not match`));
      // A block size over the maximum.
      const oversized = frame.slice();
      new DataView(oversized.buffer).setUint32(7, 4 * MiB + 1, true);
      expectFrameError(() => decodeFrame(oversized, kernels), /at byte 7: block size 4194305 is over the frame's block maximum 4194304/);
      // Content size in the header that the blocks do not match.
      const small = concat([encodeFrameHeader({ contentSize: 10 }), ...encodeBlocks(raw.subarray(0, 11), kernels, createLz4EncodeScratch(kernels, 11)), encodeFrameEnd()]);
      expectFrameError(() => decodeFrame(small, kernels), /at byte 15: the blocks decode to more than the content size 10/);
      const large = concat([encodeFrameHeader({ contentSize: 12 }), ...encodeBlocks(raw.subarray(0, 11), kernels, createLz4EncodeScratch(kernels, 11)), encodeFrameEnd()]);
      expectFrameError(() => decodeFrame(large, kernels), /the frame decodes to 11 bytes, its header says 12/);
    }
  });

  it('checks block checksums of lz4 -BX frames', () => {
    const input = join(workDir, 'bx-input');
    writeFileSync(input, raw);
    const frame = execFileSync('lz4', ['-1', '-BX', '--no-frame-crc', '-c', input], { maxBuffer: 64 * MiB, stdio: 'pipe' });
    const firstBlock = new DataView(frame.buffer, frame.byteOffset).getUint32(7, true) & 0x7fffffff;
    const damaged = Uint8Array.from(frame);
    damaged[7 + 4 + firstBlock] = (damaged[7 + 4 + firstBlock] ?? 0) ^ 1; // first byte of its checksum
    for (const kernels of kinds) {
      expect(same(decodeFrame(frame, kernels), raw)).toBe(true);
      expectFrameError(() => decodeFrame(damaged, kernels), new RegExp(`at byte ${11 + firstBlock}: block checksum 0x[0-9a-f]{8} does not match`));
    }
  });

  it('labels the stream in messages when given a name', () => {
    const kernels = kinds[0] as Kernels;
    expectFrameError(() => decodeFrame(Uint8Array.of(1, 2, 3, 4), kernels, { label: 'base/5/16384' }), /^lz4 frame of base\/5\/16384 is not valid at byte 0/);
  });

});
