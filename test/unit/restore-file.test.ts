import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { restoreFile, type RestoreFileTask } from '../../workers/restore-file.js';
import { hashContent } from '../../src/format/content-hash.js';
import { createLz4EncodeScratch, encodeBlocks, encodeFrame, encodeFrameEnd, encodeFrameHeader } from '../../src/format/lz4-frame.js';
import { loadKernels } from '../../src/format/kernels.js';
import { seededRandom } from '../harness/seeded-random.js';

const kernels = loadKernels();
const scratch = mkdtempSync(join(tmpdir(), 'pgbacula-restore-file-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;

/** Half random, half repeated: some blocks compress, some are stored raw. */
function content(length: number, seed: number): Uint8Array {
  const r = seededRandom(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i >> 12) % 2 === 0 ? r() & 0xff : i & 7;
  return out;
}

/** An LZ4 frame as a backup writes one: each range compressed on its own, between one header and one end mark. */
function framed(raw: Uint8Array, rangeSize: number): Uint8Array {
  const s = createLz4EncodeScratch(kernels, rangeSize);
  const parts: Uint8Array[] = [encodeFrameHeader()];
  for (let at = 0; at < raw.length; at += rangeSize) parts.push(...encodeBlocks(raw.subarray(at, Math.min(at + rangeSize, raw.length)), kernels, s));
  parts.push(encodeFrameEnd());
  return Buffer.concat(parts);
}

function task(raw: Uint8Array, stored: Uint8Array, encoding: 'raw' | 'lz4', rangeSize: number, target = true): RestoreFileTask {
  const storedPath = join(scratch, `stored-${++n}`);
  writeFileSync(storedPath, stored);
  return {
    storedPath,
    encoding,
    ...(target ? { targetPath: join(scratch, `target-${n}`) } : {}),
    size: raw.length,
    expectedHash: hashContent(raw, rangeSize, (d) => kernels.hash(d)),
    rangeSize,
    mode: 0o640,
    mtimeMs: 1_700_000_000_000,
    label: 'pgdata/base/5/16384',
  };
}

describe('restoreFile', () => {
  const cases: [string, number, number][] = [
    ['an empty file', 0, 1 << 20],
    ['a file of one range', 300_000, 1 << 20],
    ['a file of many ranges, the last one short', 5 * 65536 + 1234, 65536],
    ['ranges larger than a read', 3 * (1 << 20) + 17, 1 << 20],
  ];
  for (const [what, length, rangeSize] of cases) {
    for (const encoding of ['raw', 'lz4'] as const) {
      it(`${encoding}: ${what} is written whole, hash checked, mode and time set`, () => {
        const raw = content(length, length + 1);
        const t = task(raw, encoding === 'lz4' ? framed(raw, rangeSize) : raw, encoding, rangeSize);
        expect(restoreFile(t)).toEqual({ ok: true, bytes: length });
        expect(Buffer.compare(readFileSync(t.targetPath!), Buffer.from(raw))).toBe(0);
        const st = statSync(t.targetPath!);
        expect(st.mode & 0o777).toBe(0o640);
        expect(st.mtimeMs).toBe(1_700_000_000_000);
      });
    }
  }

  it('reads LZ4 frames of other shapes (content checksum, one frame of the whole file) the same', () => {
    const raw = content(2 * 65536 + 99, 7);
    for (const stored of [encodeFrame(raw, kernels, { contentChecksum: true }), encodeFrame(raw, kernels)]) {
      const t = task(raw, stored, 'lz4', 65536);
      expect(restoreFile(t)).toEqual({ ok: true, bytes: raw.length });
      expect(Buffer.compare(readFileSync(t.targetPath!), Buffer.from(raw))).toBe(0);
    }
  });

  it('checks only, writing nothing, without a target', () => {
    const raw = content(200_000, 3);
    const t = task(raw, framed(raw, 65536), 'lz4', 65536, false);
    expect(restoreFile(t)).toEqual({ ok: true, bytes: raw.length });
  });

  describe('refuses a damaged stored file and leaves no target behind', () => {
    const raw = content(4 * 65536, 11);
    const refused = (t: RestoreFileTask, problem: RegExp) => {
      const r = restoreFile(t);
      expect(r.ok).toBe(false);
      expect(r.targetErrno).toBeUndefined();
      expect(r.problem).toMatch(problem);
      expect(existsSync(t.targetPath!)).toBe(false);
    };
    it('a changed byte (raw and LZ4 stored raw)', () => {
      const bad = Uint8Array.from(raw);
      bad[70_000] = bad[70_000]! ^ 1;
      refused(task(raw, bad, 'raw', 65536), /^content hash [0-9a-f]{16} differs from the manifest's/);
      const t = task(raw, framed(raw, 65536), 'lz4', 65536);
      const stored = readFileSync(t.storedPath);
      stored[stored.length - 100] = stored[stored.length - 100]! ^ 1;
      writeFileSync(t.storedPath, stored);
      refused(t, /content hash|lz4 frame/);
    });
    it('cut short, or longer than the manifest says', () => {
      refused(task(raw, raw.subarray(0, raw.length - 5), 'raw', 65536), /^holds \d+ bytes, the manifest says/);
      refused(task(raw, Buffer.concat([raw, new Uint8Array(5)]), 'raw', 65536), /^holds more than the \d+ bytes the manifest says/);
      const f = framed(raw, 65536);
      refused(task(raw, f.subarray(0, f.length - 40), 'lz4', 65536), /lz4 frame/);
      refused(task(raw, Buffer.concat([f, f]), 'lz4', 65536), /lz4 frame|holds more than/);
    });
    it('not an LZ4 frame at all', () => {
      refused(task(raw, raw, 'lz4', 65536), /lz4 frame/);
    });
  });
});
