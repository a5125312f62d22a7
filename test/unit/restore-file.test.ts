import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { restoreBatch, restoreFile, type RestoreFileTask } from '../../workers/restore-file.js';
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

  describe('files stored one after another in a bundle', () => {
    /** A bundle of the given stored files, with a region task for each (encoding by index: even raw, odd lz4). */
    function bundle(raws: Uint8Array[], rangeSize = 65536): { tasks: RestoreFileTask[]; path: string; bytes: Buffer } {
      const path = join(scratch, `bundle-${++n}`);
      const parts: Uint8Array[] = [];
      const tasks: RestoreFileTask[] = [];
      let offset = 0;
      raws.forEach((raw, i) => {
        const encoding = i % 2 === 0 ? 'raw' : 'lz4';
        const stored = encoding === 'raw' ? raw : framed(raw, rangeSize);
        parts.push(stored);
        tasks.push({
          storedPath: path,
          region: { offset, length: stored.length },
          encoding,
          targetPath: join(scratch, `bundled-${n}-${i}`),
          size: raw.length,
          expectedHash: hashContent(raw, rangeSize, (d) => kernels.hash(d)),
          rangeSize,
          mode: 0o600,
          mtimeMs: 1_700_000_000_000,
          label: `pgdata/base/5/${16384 + i}`,
        });
        offset += stored.length;
      });
      const bytes = Buffer.concat(parts);
      writeFileSync(path, bytes);
      return { tasks, path, bytes };
    }
    const raws = [content(8192, 1), content(24_576, 2), new Uint8Array(0), content(0, 4), content(100_000, 5), content(3, 6)];

    it('each file is read from its region only, in one batch, hashes checked', () => {
      const b = bundle(raws);
      const results = restoreBatch({ tasks: b.tasks });
      expect(results).toEqual(raws.map((r) => ({ ok: true, bytes: r.length })));
      raws.forEach((raw, i) => expect(Buffer.compare(readFileSync(b.tasks[i]!.targetPath!), Buffer.from(raw))).toBe(0));
    });

    it('a region that runs past the end of a cut bundle, or bytes of a neighbour read as its own, are refused per file', () => {
      const b = bundle(raws);
      writeFileSync(b.path, b.bytes.subarray(0, b.bytes.length - 2));
      const results = restoreBatch({ tasks: b.tasks });
      expect(results.slice(0, -1).every((r) => r.ok)).toBe(true);
      expect(results.at(-1)).toMatchObject({ ok: false, problem: expect.stringMatching(/the file ends without the frame's end mark/) });
      expect(existsSync(b.tasks.at(-1)!.targetPath!)).toBe(false);
      const one = bundle([content(10, 1)]);
      writeFileSync(one.path, one.bytes.subarray(0, 8));
      expect(restoreBatch({ tasks: one.tasks })).toEqual([{ ok: false, problem: 'holds 8 bytes, the manifest says 10', bytes: 8 }]);
      // A region shifted by a byte: raw content fails its hash, an LZ4 frame fails to parse.
      const c = bundle(raws);
      const shifted = c.tasks.map((t) => ({ ...t, region: { offset: t.region!.offset + 1, length: t.region!.length } }));
      const r = restoreBatch({ tasks: [shifted[0]!, shifted[1]!] });
      expect(r[0]).toMatchObject({ ok: false, problem: expect.stringMatching(/^content hash|^holds/) });
      expect(r[1]).toMatchObject({ ok: false, problem: expect.stringMatching(/lz4 frame/) });
    });

    it('an LZ4 region longer than its frame (bytes after the end mark) is refused', () => {
      const b = bundle(raws);
      const t = { ...b.tasks[1]!, region: { offset: b.tasks[1]!.region!.offset, length: b.tasks[1]!.region!.length + 1 } };
      expect(restoreFile(t)).toMatchObject({ ok: false, problem: expect.stringMatching(/follow the frame's end mark|lz4 frame/) });
    });

    it('a missing bundle fails each of its files, and the batch goes on with the next', () => {
      const b = bundle(raws.slice(0, 2));
      const other = bundle([content(500, 9)]);
      rmSync(b.path);
      const results = restoreBatch({ tasks: [...b.tasks, ...other.tasks] });
      expect(results.map((r) => r.ok)).toEqual([false, false, true]);
      expect(results[0]!.problem).toMatch(/stored file is missing or unreadable: ENOENT/);
    });

    it('a bundled file is copied out, never moved, even from a repository the restore may consume', () => {
      const b = bundle(raws.slice(0, 1));
      expect(restoreFile({ ...b.tasks[0]!, move: true })).toEqual({ ok: true, bytes: raws[0]!.length });
      expect(readFileSync(b.path).length).toBe(b.bytes.length);
    });
  });
});
