import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { combineFile, type CombineFileTask, type CombineSource } from '../../workers/combine-file.js';
import { encodeIncrementalHeader } from '../../src/format/incremental-file.js';
import { fileRanges, hashContent, hashHex } from '../../src/format/content-hash.js';
import { createLz4EncodeScratch, encodeBlocks, encodeFrameEnd, encodeFrameHeader } from '../../src/format/lz4-frame.js';
import { loadKernels } from '../../src/format/kernels.js';
import { seededRandom } from '../harness/seeded-random.js';

const kernels = loadKernels();
const scratch = mkdtempSync(join(tmpdir(), 'pgbacula-combine-file-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let fileNo = 0;

const BS = 8192;
const BPS = 1024;

/** A page whose every byte says which backup and block it is. */
function page(backup: number, block: number, bs = BS): Uint8Array {
  const p = new Uint8Array(bs);
  for (let i = 0; i < bs; i++) p[i] = (backup * 37 + block * 11 + (i >> 3)) & 0xff;
  new DataView(p.buffer).setUint32(0, backup, true);
  new DataView(p.buffer).setUint32(4, block, true);
  return p;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** What a backup stored, before encoding. */
type Image = { kind: 'full'; backup: number; blocks: number; bytes: Uint8Array } | { kind: 'incremental'; backup: number; listed: number[]; truncation: number; bytes: Uint8Array };

function fullImage(backup: number, blocks: number, bs = BS): Image {
  return { kind: 'full', backup, blocks, bytes: concat(Array.from({ length: blocks }, (_, b) => page(backup, b, bs))) };
}

function incrementalImage(backup: number, listed: number[], truncation: number, bs = BS, bps = BPS): Image {
  const header = encodeIncrementalHeader(Uint32Array.from(listed), truncation, bs, bps);
  return { kind: 'incremental', backup, listed, truncation, bytes: concat([header, ...listed.map((b) => page(backup, b, bs))]) };
}

/** An LZ4 frame made as the backup makes one: the records of each piece, between one header and one end mark. */
function lz4Frame(raw: Uint8Array, piece: number, contentChecksum = false): Uint8Array {
  const s = createLz4EncodeScratch(kernels, piece);
  const records: Uint8Array[] = [];
  for (let at = 0; at < raw.length; at += piece) records.push(...encodeBlocks(raw.subarray(at, Math.min(at + piece, raw.length)), kernels, s));
  return concat([encodeFrameHeader({ contentChecksum }), ...records, encodeFrameEnd(contentChecksum ? kernels.xxh32(raw, 0) : undefined)]);
}

interface Stored {
  encoding?: 'raw' | 'lz4';
  rangeSize?: number;
  /** Change the stored bytes after the manifest's size and hash were taken. */
  damage?: (stored: Uint8Array) => Uint8Array;
  lz4Piece?: number;
  /** Record the manifest's per-range hashes (LZ4 then compressed range by range, as the backup does). */
  rangeHashes?: boolean;
  /** LZ4: a frame with a content checksum (a shape the restore must decode whole). */
  contentChecksum?: boolean;
}

function rangeHashesOf(bytes: Uint8Array, rangeSize: number): string {
  return fileRanges(bytes.length, rangeSize).map(([off, len]) => hashHex(kernels.hash(bytes.subarray(off, off + len)))).join('');
}

function store(image: Image, o: Stored = {}): CombineSource {
  const encoding = o.encoding ?? 'raw';
  const rangeSize = o.rangeSize ?? 1024 * 1024;
  const piece = o.rangeHashes ? rangeSize : (o.lz4Piece ?? 20000);
  let bytes = encoding === 'lz4' ? lz4Frame(image.bytes, piece, o.contentChecksum) : image.bytes;
  if (o.damage) bytes = o.damage(bytes.slice());
  const storedPath = join(scratch, `stored-${++fileNo}${encoding === 'lz4' ? '.lz4' : ''}`);
  writeFileSync(storedPath, bytes);
  return {
    storedPath,
    encoding,
    kind: image.kind,
    size: image.bytes.length,
    expectedHash: hashContent(image.bytes, rangeSize, (d) => kernels.hash(d)),
    rangeSize,
    ...(o.rangeHashes && fileRanges(image.bytes.length, rangeSize).length > 1 ? { rangeHashes: rangeHashesOf(image.bytes, rangeSize) } : {}),
    label: `backup-${image.backup}/base/5/16384`,
  };
}

function task(sources: CombineSource[], target: string | undefined, bs = BS, bps = BPS): CombineFileTask {
  return { sources, ...(target ? { targetPath: target } : {}), blockSize: bs, blocksPerSegment: bps, mode: 0o640, mtimeMs: 1_700_000_000_000, label: 'base/5/16384' };
}

function newTarget(): string {
  return join(scratch, `target-${++fileNo}`);
}

/** The reconstruction block by block, straight from the rule: newest holder wins; nothing else is shared with the worker. */
function reference(images: readonly Image[], bs = BS): { bytes: Uint8Array; from: number[]; zeros: number } {
  const newest = images[0]!;
  if (newest.kind !== 'incremental') throw new Error('newest must be incremental');
  const length = Math.max(newest.truncation, newest.listed.length ? newest.listed[newest.listed.length - 1]! + 1 : 0);
  const out = new Uint8Array(length * bs);
  const from = images.map(() => 0);
  let zeros = 0;
  for (let b = 0; b < length; b++) {
    let got: Uint8Array | undefined;
    for (let k = 0; k < images.length && !got; k++) {
      const im = images[k]!;
      if (im.kind === 'incremental') {
        const i = im.listed.indexOf(b);
        if (i >= 0 && (k === 0 || b < newest.truncation)) {
          const headerLength = im.bytes.length - im.listed.length * bs;
          got = im.bytes.subarray(headerLength + i * bs, headerLength + (i + 1) * bs);
          from[k]!++;
        }
      } else {
        if (b < newest.truncation && b < im.blocks) {
          got = im.bytes.subarray(b * bs, (b + 1) * bs);
          from[k]!++;
        }
        break;
      }
    }
    if (got) out.set(got, b * bs);
    else zeros++;
  }
  return { bytes: out, from, zeros };
}

function expectCombines(images: Image[], options: Stored[] = [], bs = BS, bps = BPS): void {
  const sources = images.map((im, i) => store(im, options[i] ?? {}));
  const target = newTarget();
  const r = combineFile(task(sources, target, bs, bps));
  const ref = reference(images, bs);
  expect(r.problem).toBeUndefined();
  expect(r.ok).toBe(true);
  expect(r.bytes).toBe(ref.bytes.length);
  expect(r.blocksFrom).toEqual(ref.from);
  expect(r.zeroBlocks).toBe(ref.zeros);
  const written = readFileSync(target);
  expect(written.length).toBe(ref.bytes.length);
  expect(Buffer.compare(written, Buffer.from(ref.bytes.buffer, ref.bytes.byteOffset, ref.bytes.length))).toBe(0);
}

describe('combineFile', () => {
  it('rebuilds a full backup and one incremental file: changed blocks from the incremental, the rest from the full', () => {
    const full = fullImage(0, 10);
    const incr = incrementalImage(1, [2, 7], 10);
    const sources = [store(incr), store(full)];
    const target = newTarget();
    const r = combineFile(task(sources, target));
    expect(r).toEqual({ ok: true, bytes: 10 * BS, blocksFrom: [2, 8], zeroBlocks: 0 });
    const out = readFileSync(target);
    for (let b = 0; b < 10; b++) {
      const want = b === 2 || b === 7 ? page(1, b) : page(0, b);
      expect(Buffer.compare(out.subarray(b * BS, (b + 1) * BS), Buffer.from(want))).toBe(0);
    }
    const st = statSync(target);
    expect(st.mode & 0o777).toBe(0o640);
    expect(st.mtimeMs).toBe(1_700_000_000_000);
  });

  it('takes each block from the newest backup that holds it, across three incrementals', () => {
    const images = [incrementalImage(3, [1, 4, 9], 12), incrementalImage(2, [1, 2, 9, 11], 12), incrementalImage(1, [0, 1, 2, 3, 4], 12), fullImage(0, 12)];
    expectCombines(images);
    expect(reference(images).from).toEqual([3, 2, 2, 5]);
  });

  it('cuts what the newest truncation length drops from older backups', () => {
    // The newest is 4 blocks long: block 5 of the older incremental and blocks 4.. of the full are gone.
    const images = [incrementalImage(2, [1], 4), incrementalImage(1, [2, 5], 8), fullImage(0, 8)];
    const sources = images.map((im) => store(im));
    const target = newTarget();
    const r = combineFile(task(sources, target));
    expect(r).toEqual({ ok: true, bytes: 4 * BS, blocksFrom: [1, 1, 2], zeroBlocks: 0 });
    expectCombines(images);
  });

  it('writes zero pages for blocks past the full copy that no backup holds', () => {
    // Extended from 3 to 8 blocks; only block 6 was WAL-logged: 3, 4, 5 and 7 are zero pages.
    const images = [incrementalImage(1, [6], 8), fullImage(0, 3)];
    const sources = images.map((im) => store(im));
    const target = newTarget();
    const r = combineFile(task(sources, target));
    expect(r).toEqual({ ok: true, bytes: 8 * BS, blocksFrom: [1, 3], zeroBlocks: 4 });
    const out = readFileSync(target);
    for (const b of [3, 4, 5, 7]) expect(out.subarray(b * BS, (b + 1) * BS).every((x) => x === 0)).toBe(true);
    expect(Buffer.compare(out.subarray(6 * BS, 7 * BS), Buffer.from(page(1, 6)))).toBe(0);
  });

  it('counts the newest file\'s blocks past its own truncation length (they extend the file)', () => {
    expectCombines([incrementalImage(2, [3, 9], 5), incrementalImage(1, [4, 6], 9), fullImage(0, 9)]);
    expect(reference([incrementalImage(2, [3, 9], 5), incrementalImage(1, [4, 6], 9), fullImage(0, 9)]).zeros).toBe(4);
  });

  it('rebuilds a file larger than one write: runs of blocks from each source cross the 8 MiB write boundary', () => {
    // 2,600 blocks (≈ 20 MiB): the runs of the full copy, of each incremental and of zero pages
    // (past the full copy) are cut wherever a write fills, in raw and in LZ4-framed sources.
    const blocks = 2600;
    const rnd = seededRandom(11);
    const pick = (n: number) => [...new Set(Array.from({ length: n }, () => rnd() % blocks))].sort((a, b) => a - b);
    const contiguous = Array.from({ length: 1200 }, (_, i) => 900 + i);
    const images = [incrementalImage(2, pick(300), blocks, BS, 4096), incrementalImage(1, [...new Set([...contiguous, ...pick(100)])].sort((a, b) => a - b), blocks, BS, 4096), fullImage(0, 2000)];
    expectCombines(images, [{}, { encoding: 'lz4', lz4Piece: 3 * BS + 5 }, { encoding: 'lz4' }], BS, 4096);
    expectCombines(images, [{ encoding: 'lz4' }, {}, {}], BS, 4096);
    expect(reference(images).zeros).toBeGreaterThan(0);
  });

  it('an incremental file of no block gives the full copy cut to its truncation length', () => {
    const full = fullImage(0, 9);
    const sources = [store(incrementalImage(1, [], 6)), store(full)];
    const target = newTarget();
    const r = combineFile(task(sources, target));
    expect(r).toEqual({ ok: true, bytes: 6 * BS, blocksFrom: [0, 6], zeroBlocks: 0 });
    expect(Buffer.compare(readFileSync(target), Buffer.from(full.bytes.subarray(0, 6 * BS)))).toBe(0);
  });

  it('an empty result (truncated to nothing) is an empty file', () => {
    const sources = [store(incrementalImage(1, [], 0)), store(fullImage(0, 4))];
    const target = newTarget();
    expect(combineFile(task(sources, target))).toEqual({ ok: true, bytes: 0, blocksFrom: [0, 0], zeroBlocks: 0 });
    expect(statSync(target).size).toBe(0);
  });

  it('reads LZ4 sources and files of many hash ranges and read chunks', () => {
    const images = [incrementalImage(2, [0, 50, 51, 52, 199, 250], 260), incrementalImage(1, Array.from({ length: 90 }, (_, i) => i * 2 + 1), 240), fullImage(0, 230)];
    expectCombines(images, [{ encoding: 'lz4', rangeSize: 16384 }, { rangeSize: 16384 }, { encoding: 'lz4', rangeSize: 16384, lz4Piece: 65536 + 7 }]);
    expectCombines(images, [{ rangeSize: 3000 }, { encoding: 'lz4', rangeSize: 16384, lz4Piece: 4096 }, { rangeSize: 16384 }]);
  });

  it('reads LZ4 frames of 4 MiB blocks (a segment larger than one frame block)', () => {
    const images = [incrementalImage(1, [3, 300, 599, 700], 700, BS, 131072), fullImage(0, 600)];
    expectCombines(images, [{ encoding: 'lz4', lz4Piece: 8 * 1024 * 1024 }, { encoding: 'lz4', rangeSize: 1 << 20, lz4Piece: 8 * 1024 * 1024 }], BS, 131072);
  });

  it('other block sizes and segment sizes', () => {
    const bs = 1024;
    const images = [incrementalImage(2, [5, 15], 16, bs, 16), incrementalImage(1, [0, 5, 6], 16, bs, 16), fullImage(0, 10, bs)];
    expectCombines(images, [{ encoding: 'lz4', rangeSize: 4096 }], bs, 16);
  });

  it('checks only, writing nothing, when no target is given', () => {
    const images = [incrementalImage(2, [3], 8), incrementalImage(1, [1, 3, 5], 8), fullImage(0, 6)];
    const sources = images.map((im, i) => store(im, { encoding: i === 1 ? 'lz4' : 'raw', rangeSize: 16384 }));
    const r = combineFile(task(sources, undefined));
    expect(r).toEqual({ ok: true, bytes: 8 * BS, blocksFrom: [1, 2, 3], zeroBlocks: 2 });
    // …and still finds a damaged block it did not need.
    const damaged = images.map((im, i) => store(im, i === 2 ? { damage: (b) => ((b[3 * BS + 100]! ^= 1), b) } : {}));
    const bad = combineFile(task(damaged, undefined));
    expect(bad.ok).toBe(false);
    expect(bad.problem).toContain('backup-0/base/5/16384');
    expect(bad.problem).toContain('content hash');
  });

  it('matches the reference on 200 random chains', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = seededRandom(seed);
      const pick = (n: number) => random() % n;
      const bs = [512, 1024, 8192][pick(3)]!;
      const bps = 8 + pick(60);
      const depth = 1 + pick(4);
      const images: Image[] = [];
      for (let k = depth; k >= 1; k--) {
        const listed = Array.from({ length: bps }, (_, b) => b).filter(() => pick(4) === 0);
        images.push(incrementalImage(k, listed, pick(bps + 1), bs, bps));
      }
      images.push(fullImage(0, pick(bps + 1), bs));
      const options: Stored[] = images.map(() => ({
        encoding: pick(2) ? 'lz4' : 'raw',
        rangeSize: [bs, 3000, 16384, 1 << 20][pick(4)]!,
        lz4Piece: [777, 4096, 65536][pick(3)]!,
        rangeHashes: pick(2) === 1,
      }));
      try {
        expectCombines(images, options, bs, bps);
      } catch (e) {
        throw new Error(`seed ${seed}: ${(e as Error).message}`);
      }
    }
  });

  describe('refuses a damaged backup, naming it, and leaves no target behind', () => {
    const images = () => [incrementalImage(2, [1, 3], 6), incrementalImage(1, [2, 3, 4], 6), fullImage(0, 6)];
    function refused(options: Stored[], expected: RegExp): void {
      const sources = images().map((im, i) => store(im, options[i] ?? {}));
      const target = newTarget();
      const r = combineFile(task(sources, target));
      expect(r.ok).toBe(false);
      expect(r.targetErrno).toBeUndefined();
      expect(r.problem).toMatch(expected);
      expect(existsSync(target)).toBe(false);
    }

    it('a changed byte in a block that was used', () => {
      refused([{ damage: (b) => ((b[BS + 10]! ^= 0x40), b) }], /^backup-2\/base\/5\/16384: content hash [0-9a-f]{16} differs/);
    });
    it('a changed byte in a block that was passed over (overridden by a newer backup)', () => {
      refused([{}, {}, { damage: (b) => ((b[3 * BS]! ^= 1), b) }], /^backup-0\/base\/5\/16384: content hash/);
    });
    it('a changed byte in an LZ4 source of many ranges', () => {
      refused([{}, { encoding: 'lz4', rangeSize: 4096, damage: (b) => ((b[b.length - 100]! ^= 0x01), b) }], /^backup-1\/base\/5\/16384: /);
    });
    it('a raw incremental file cut short', () => {
      refused([{}, { damage: (b) => b.subarray(0, b.length - 100) }], /^backup-1\/base\/5\/16384: ends after/);
    });
    it('a raw full copy cut short', () => {
      refused([{}, {}, { damage: (b) => b.subarray(0, b.length - BS) }], /^backup-0\/base\/5\/16384: (ends after|holds)/);
    });
    it('an LZ4 frame cut short', () => {
      refused([{ encoding: 'lz4', damage: (b) => b.subarray(0, b.length - 50) }], /^backup-2\/base\/5\/16384: lz4 frame/);
    });
    it('a full copy longer than its manifest says', () => {
      refused([{}, {}, { damage: (b) => concat([b, new Uint8Array(10)]) }], /^backup-0\/base\/5\/16384: holds \d+ bytes, the manifest says/);
    });
    it('a bad magic number', () => {
      refused([{}, { damage: (b) => ((b[0] = 0), b) }], /^backup-1\/base\/5\/16384: .*bad magic number/);
    });
    it('a block list out of order', () => {
      refused([{ damage: (b) => (new DataView(b.buffer, b.byteOffset).setUint32(16, 0, true), b) }], /^backup-2\/base\/5\/16384: .*not ascending/);
    });
    it('a block count beyond a segment', () => {
      refused([{ damage: (b) => (new DataView(b.buffer, b.byteOffset).setUint32(4, 0xffffff, true), b) }], /^backup-2\/base\/5\/16384: .*more than a segment/);
    });
    it('a header whose block count disagrees with the manifest size', () => {
      // Two blocks listed, but the header now says one: the manifest's size is for two.
      refused([{ damage: (b) => (new DataView(b.buffer, b.byteOffset).setUint32(4, 1, true), b) }], /^backup-2\/base\/5\/16384: its header lists 1 blocks/);
    });
    it('a missing stored file', () => {
      const sources = images().map((im) => store(im));
      rmSync(sources[1]!.storedPath);
      const target = newTarget();
      const r = combineFile(task(sources, target));
      expect(r.ok).toBe(false);
      expect(r.problem).toMatch(/^backup-1\/base\/5\/16384: stored file is missing or unreadable: ENOENT/);
      expect(existsSync(target)).toBe(false);
    });
    it('a wrong hash in the manifest', () => {
      const sources = images().map((im) => store(im));
      const target = newTarget();
      const r = combineFile(task([sources[0]!, { ...sources[1]!, expectedHash: '0123456789abcdef' }, sources[2]!], target));
      expect(r.problem).toMatch(/^backup-1\/base\/5\/16384: content hash [0-9a-f]{16} differs from the manifest's 0123456789abcdef/);
      expect(existsSync(target)).toBe(false);
    });
  });

  describe('with the manifest\'s range hashes: ranges that give no block are passed over unread', () => {
    // 64 blocks in ranges of 8 blocks; the incrementals replace all of ranges 2 and 5 (blocks
    // 16–23 and 40–47) and a few blocks elsewhere: the full copy's ranges 2 and 5 give nothing.
    const R = 8 * BS;
    const images = () => [
      incrementalImage(2, [3, ...Array.from({ length: 8 }, (_, i) => 40 + i)], 64),
      incrementalImage(1, [...Array.from({ length: 8 }, (_, i) => 16 + i), 30], 64),
      fullImage(0, 64),
    ];
    /** Damage to the full copy's stored bytes at content offset `at` (raw) or in the LZ4 record holding it. */
    const inFull = (encoding: 'raw' | 'lz4', at: number): Stored => ({
      encoding,
      rangeSize: R,
      rangeHashes: true,
      damage: (b) => {
        if (encoding === 'raw') b[at] = b[at]! ^ 0x55;
        else {
          // Range r's records start after the 7-byte header and the earlier ranges' records; make
          // the first record of the range undecodable (a size field far past the data).
          let pos = 7;
          for (let r = 0; r < Math.floor(at / R); r++) pos += 4 + (new DataView(b.buffer, b.byteOffset).getUint32(pos, true) & 0x7fffffff);
          b.fill(0xff, pos + 4, pos + 64);
        }
        return b;
      },
    });

    for (const encoding of ['raw', 'lz4'] as const) {
      it(`${encoding}: restores the same bytes, and damage only in ranges passed over does not stop it (a check still finds it)`, () => {
        expectCombines(images(), [{ encoding, rangeSize: R, rangeHashes: true }, { encoding, rangeSize: R, rangeHashes: true }, { encoding, rangeSize: R, rangeHashes: true }]);
        const options = [{ encoding, rangeSize: R, rangeHashes: true }, { encoding, rangeSize: R, rangeHashes: true }, inFull(encoding, 2 * R + 100)];
        expectCombines(images(), options);
        const sources = images().map((im, i) => store(im, options[i]));
        const check = combineFile(task(sources, undefined));
        expect(check.ok).toBe(false);
        expect(check.problem).toMatch(/^backup-0\/base\/5\/16384: /);
      });

      it(`${encoding}: damage in a range that gives a block is refused, naming the bytes`, () => {
        const sources = images().map((im, i) => store(im, i === 2 ? inFull(encoding, 3 * R + 5) : { encoding, rangeSize: R, rangeHashes: true }));
        const target = newTarget();
        const r = combineFile(task(sources, target));
        expect(r.ok).toBe(false);
        expect(r.problem).toMatch(encoding === 'raw' ? new RegExp(`^backup-0/base/5/16384: bytes ${3 * R} to ${4 * R} have content hash [0-9a-f]{16}, the manifest's is`) : /^backup-0\/base\/5\/16384: /);
        expect(existsSync(target)).toBe(false);
      });

      it(`${encoding}: a stored file cut short inside its last range, passed over, is refused`, () => {
        // The last range (blocks 56–63) replaced by the newest backup.
        const im = [incrementalImage(2, Array.from({ length: 8 }, (_, i) => 56 + i), 64), fullImage(0, 64)];
        const sources = im.map((x, i) => store(x, { encoding, rangeSize: R, rangeHashes: true, ...(i === 1 ? { damage: (b: Uint8Array) => b.subarray(0, b.length - 1000) } : {}) }));
        const target = newTarget();
        const r = combineFile(task(sources, target));
        expect(r.ok).toBe(false);
        expect(r.problem).toMatch(/^backup-0\/base\/5\/16384: .*(ends|lz4 frame)/);
        expect(existsSync(target)).toBe(false);
      });
    }

    it('refuses range hashes that do not make the content hash', () => {
      const sources = images().map((im) => store(im, { rangeSize: R, rangeHashes: true }));
      const full = sources[2]!;
      const edited = `${'0'.repeat(16)}${full.rangeHashes!.slice(16)}`;
      const r = combineFile(task([sources[0]!, sources[1]!, { ...full, rangeHashes: edited }], newTarget()));
      expect(r.ok).toBe(false);
      expect(r.problem).toMatch(/^backup-0\/base\/5\/16384: the manifest's range hashes make the content hash/);
    });

    it('reads a frame of another shape (content checksum) whole, and still restores it', () => {
      expectCombines(images(), [{}, {}, { encoding: 'lz4', rangeSize: R, rangeHashes: true, contentChecksum: true }]);
      const damaged = images().map((im, i) => store(im, i === 2 ? { encoding: 'lz4', rangeSize: R, rangeHashes: true, contentChecksum: true, damage: (b) => ((b[b.length - 300]! ^= 1), b) } : {}));
      expect(combineFile(task(damaged, newTarget())).ok).toBe(false);
    });
  });

  it('refuses a chain of the wrong shape', () => {
    const full = store(fullImage(0, 4));
    const incr = store(incrementalImage(1, [1], 4));
    const incr2 = store(incrementalImage(2, [2], 4));
    for (const [sources, problem] of [
      [[incr], /got 1 source/],
      [[full, incr], /newest source .* is not an incremental file/],
      [[incr2, incr], /no whole copy/],
      [[incr2, full, incr, full], /whole copy .* before its end/],
    ] as const) {
      const r = combineFile(task([...sources], newTarget()));
      expect(r.ok).toBe(false);
      expect(r.problem).toMatch(problem);
    }
  });

  it('keeps a target that cannot be written apart from a damaged backup', () => {
    const sources = [store(incrementalImage(1, [1], 4)), store(fullImage(0, 4))];
    const r = combineFile(task(sources, join(scratch, 'no-such-dir', 'target')));
    expect(r.ok).toBe(false);
    expect(r.targetErrno).toBe('ENOENT');
    expect(r.problem).toMatch(/^cannot write /);
  });
});
