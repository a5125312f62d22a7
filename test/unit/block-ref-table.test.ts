import { describe, expect, it } from 'vitest';
import {
  BLOCKS_PER_CHUNK,
  BlockRefTable,
  BlockRefTableError,
  NO_LIMIT,
  parseBlockRefTable,
  serializeBlockRefTable,
  type RelFork,
} from '../../src/format/block-ref-table.js';
import { crc32c } from '../../src/format/crc32c.js';
import { seededRandom } from '../harness/seeded-random.js';

const rel = (relNumber: number, fork = 0, dbOid = 5, spcOid = 1663): RelFork => ({ spcOid, dbOid, relNumber, fork });

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  return Uint8Array.from(clean.match(/../g)!.map((b) => parseInt(b, 16)));
}

function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
}

/** Body bytes (magic + entries) closed with the sentinel and a correct CRC. */
function closeFile(body: Uint8Array): Uint8Array {
  const withSentinel = concat(body, new Uint8Array(24));
  return concat(withSentinel, u32le(crc32c(withSentinel)));
}

/** Replace bytes and fix the CRC, so a check other than the CRC is what refuses the file. */
function patched(file: Uint8Array, at: number, bytes: Uint8Array): Uint8Array {
  const out = file.slice();
  out.set(bytes, at);
  new DataView(out.buffer).setUint32(out.length - 4, crc32c(out.subarray(0, out.length - 4)), true);
  return out;
}

/** The table as plain data: [key, limit, blocks] in the table's own order. */
function dump(t: BlockRefTable): Array<[string, number, number[]]> {
  return [...t.entries()].map(([rf, e]) => [`${rf.spcOid}/${rf.dbOid}/${rf.relNumber}/${rf.fork}`, e.limitBlock, [...e.blocksIn(0, NO_LIMIT)]]);
}

/** PostgreSQL's rules over plain sets, to check the compact table against. */
class ModelTable {
  readonly entries = new Map<string, { rf: RelFork; limit: number; blocks: Set<number> }>();
  private get(rf: RelFork) {
    const k = `${rf.spcOid}/${rf.dbOid}/${rf.relNumber}/${rf.fork}`;
    let e = this.entries.get(k);
    if (!e) this.entries.set(k, (e = { rf, limit: NO_LIMIT, blocks: new Set() }));
    return e;
  }
  mark(rf: RelFork, b: number): void {
    this.get(rf).blocks.add(b);
  }
  limit(rf: RelFork, l: number): void {
    const e = this.get(rf);
    if (l >= e.limit) return;
    e.limit = l;
    for (const b of e.blocks) if (b >= l) e.blocks.delete(b);
  }
  dump(): Array<[string, number, number[]]> {
    const cmp = (a: RelFork, b: RelFork) => a.spcOid - b.spcOid || a.dbOid - b.dbOid || a.relNumber - b.relNumber || a.fork - b.fork;
    return [...this.entries.values()]
      .sort((a, b) => cmp(a.rf, b.rf))
      .map((e) => [`${e.rf.spcOid}/${e.rf.dbOid}/${e.rf.relNumber}/${e.rf.fork}`, e.limit, [...e.blocks].sort((x, y) => x - y)]);
  }
}

function expectRefused(bytes: Uint8Array, pattern: RegExp): void {
  let caught: unknown;
  try {
    parseBlockRefTable(bytes, 'summary "x.summary"');
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(BlockRefTableError);
  expect((caught as Error).message).toMatch(/^summary "x\.summary" /);
  expect((caught as Error).message).toMatch(pattern);
}

describe('the test vectors of a WAL summary file', () => {
  it('an empty table is the magic, a zero sentinel and the CRC-32C of those 28 bytes', () => {
    const bytes = serializeBlockRefTable(new BlockRefTable());
    const head = concat(hex('7b132b65'), new Uint8Array(24));
    expect([...bytes]).toEqual([...head, ...u32le(crc32c(head))]);
    const t = parseBlockRefTable(bytes);
    expect(t.entryCount).toBe(0);
    expect(t.blockCount).toBe(0);
  });

  it('the first bytes of a real PostgreSQL summary decode to the blocks they list, and are written back alike', () => {
    const body = hex(`7b132b65
      7f060000 05000000 df040000 00000000 ffffffff 01000000 0100 0e00
      7f060000 05000000 e1040000 00000000 ffffffff 01000000 0300 1000 3600 3700`);
    const file = closeFile(body);
    const t = parseBlockRefTable(file);
    expect(dump(t)).toEqual([
      ['1663/5/1247/0', NO_LIMIT, [14]],
      ['1663/5/1249/0', NO_LIMIT, [16, 54, 55]],
    ]);
    expect(t.entry(rel(1249))!.blockCount).toBe(3);
    expect(t.entry(rel(1249))!.blocksIn(20, 55)).toEqual(Uint32Array.of(54));
    expect(serializeBlockRefTable(t)).toEqual(file);

    const built = new BlockRefTable();
    for (const b of [55, 16, 54]) built.markBlock(rel(1249), b);
    built.markBlock(rel(1247), 14);
    expect(serializeBlockRefTable(built)).toEqual(file);
  });
});

describe('BlockRefTable', () => {
  it('keeps each block once and answers ranges in ascending order', () => {
    const t = new BlockRefTable();
    for (const b of [70000, 5, 65535, 5, 65536, 1, 200000, 70000]) t.markBlock(rel(16384), b);
    const e = t.entry(rel(16384))!;
    expect(e.blockCount).toBe(6);
    expect(t.blockCount).toBe(6);
    expect([...e.blocksIn(0, NO_LIMIT)]).toEqual([1, 5, 65535, 65536, 70000, 200000]);
    expect([...e.blocksIn(5, 65537)]).toEqual([5, 65535, 65536]);
    expect([...e.blocksIn(65536, 131072)]).toEqual([65536, 70000]);
    expect([...e.blocksIn(131072, 196608)]).toEqual([]);
    expect(e.limitBlock).toBe(NO_LIMIT);
    expect(t.entry(rel(16384, 2))).toBeUndefined();
    expect(t.entry(rel(16384, 0, 6))).toBeUndefined();
  });

  it('lists entries sorted by tablespace, database, relation and fork as unsigned numbers', () => {
    const t = new BlockRefTable();
    const forks = [rel(10, 2), rel(3_000_000_000, 0), rel(10, 0), rel(1, 0, 2_500_000_000), rel(1, 0, 1, 1664), rel(10, 3), rel(9, 0, 5, 1663)];
    for (const rf of forks) t.markBlock(rf, 1);
    expect(dump(t).map(([k]) => k)).toEqual(['1663/5/9/0', '1663/5/10/0', '1663/5/10/2', '1663/5/10/3', '1663/5/3000000000/0', '1663/2500000000/1/0', '1664/1/1/0']);
    expect(t.entryCount).toBe(7);
    expect(dump(parseBlockRefTable(serializeBlockRefTable(t)))).toEqual(dump(t));
  });

  it('a chunk turns into a bitmap at its 4096th block, and the file follows', () => {
    const t = new BlockRefTable();
    const rf = rel(16384);
    // Chunk 1, every 16th block: 4095 offsets still make an array.
    for (let i = 4094; i >= 0; i--) t.markBlock(rf, BLOCKS_PER_CHUNK + 16 * i);
    const asArray = serializeBlockRefTable(t);
    // magic, header, usage[2] = [0, 4095], 4095 offsets, sentinel, crc
    expect(asArray.length).toBe(4 + 24 + 4 + 2 * 4095 + 24 + 4);
    const v = new DataView(asArray.buffer);
    expect(v.getUint32(4 + 20, true)).toBe(2);
    expect(v.getUint16(28, true)).toBe(0);
    expect(v.getUint16(30, true)).toBe(4095);
    expect(v.getUint16(32, true)).toBe(0); // sorted: the lowest offset first
    const before = t.approximateBytes;
    t.markBlock(rf, BLOCKS_PER_CHUNK + 16 * 4095 + 3);
    const asBitmap = serializeBlockRefTable(t);
    expect(asBitmap.length).toBe(4 + 24 + 4 + 8192 + 24 + 4);
    const w = new DataView(asBitmap.buffer);
    expect(w.getUint16(30, true)).toBe(4096);
    for (let i = 0; i < 4095; i++) expect(w.getUint16(32 + 2 * i, true)).toBe(1);
    expect(w.getUint16(32 + 2 * 4095, true)).toBe(1 << 3);
    expect(t.entry(rf)!.blockCount).toBe(4096);
    expect(t.approximateBytes).toBeLessThanOrEqual(before);
    const back = parseBlockRefTable(asBitmap);
    expect(dump(back)).toEqual(dump(t));
    expect(serializeBlockRefTable(back)).toEqual(asBitmap);
    // A bitmap keeps its bytes after more blocks.
    back.markBlock(rf, BLOCKS_PER_CHUNK + 1);
    expect(back.entry(rf)!.blockCount).toBe(4097);
    expect(serializeBlockRefTable(back).length).toBe(asBitmap.length);
  });

  it('a chunk of 1024 to 4095 blocks is written as an array, whatever memory holds', () => {
    const t = new BlockRefTable();
    const rf = rel(16384);
    const random = seededRandom(5);
    const want = new Set<number>();
    while (want.size < 3000) {
      const b = random() % BLOCKS_PER_CHUNK;
      want.add(b);
      t.markBlock(rf, b);
    }
    const file = serializeBlockRefTable(t);
    expect(file.length).toBe(4 + 24 + 2 + 2 * 3000 + 24 + 4);
    const v = new DataView(file.buffer);
    expect(v.getUint16(28, true)).toBe(3000);
    const offsets = Array.from({ length: 3000 }, (_, k) => v.getUint16(30 + 2 * k, true));
    expect(offsets).toEqual([...want].sort((a, b) => a - b));
    expect(t.approximateBytes).toBeLessThan(16 * 1024);
    // A limit keeps it an array in the file; 4096 blocks make it a bitmap for good.
    t.setLimit(rf, 60000);
    const kept = [...want].filter((b) => b < 60000).length;
    expect(serializeBlockRefTable(t).length).toBe(4 + 24 + 2 + 2 * kept + 24 + 4);
    for (let b = 0; t.entry(rf)!.blockCount < 4096; b++) t.markBlock(rf, b);
    expect(serializeBlockRefTable(t).length).toBe(4 + 24 + 2 + 8192 + 24 + 4);
    t.setLimit(rf, 100);
    expect(serializeBlockRefTable(t).length).toBe(4 + 24 + 2 + 8192 + 24 + 4);
    expect(dump(parseBlockRefTable(serializeBlockRefTable(t)))).toEqual([['1663/5/16384/0', 100, [...Array(100).keys()]]]);
  });

  it('a limit forgets the blocks at and above it; blocks marked later are kept; only a lower limit counts', () => {
    const t = new BlockRefTable();
    const rf = rel(16384);
    for (let b = 0; b < 100; b++) t.markBlock(rf, b);
    for (let b = 70000; b < 75000; b++) t.markBlock(rf, b); // a bitmap in chunk 1
    t.setLimit(rf, 70500);
    expect(t.entry(rf)!.limitBlock).toBe(70500);
    expect(t.entry(rf)!.blockCount).toBe(100 + 500);
    t.setLimit(rf, 50);
    const e = t.entry(rf)!;
    expect(e.limitBlock).toBe(50);
    expect([...e.blocksIn(0, NO_LIMIT)]).toEqual([...Array(50).keys()]);
    t.markBlock(rf, 70);
    t.markBlock(rf, 65536 + 3);
    t.setLimit(rf, 60); // higher than the limit: nothing changes
    expect(e.limitBlock).toBe(50);
    expect([...e.blocksIn(40, NO_LIMIT)]).toEqual([...Array(10).keys()].map((i) => 40 + i).concat([70, 65539]));
    t.setLimit(rf, 0);
    expect(e.blockCount).toBe(0);
    expect(t.blockCount).toBe(0);
    const file = serializeBlockRefTable(t);
    // Only the header: limit 0, no chunks.
    expect(file.length).toBe(4 + 24 + 24 + 4);
    expect(dump(parseBlockRefTable(file))).toEqual([['1663/5/16384/0', 0, []]]);
  });

  it('a limit on a fork not seen yet makes an entry with that limit and no blocks', () => {
    const t = new BlockRefTable();
    t.setLimit(rel(16390, 2), 7);
    t.setLimit(rel(0, 0, 16400), 0);
    expect(dump(t)).toEqual([
      ['1663/5/16390/2', 7, []],
      ['1663/16400/0/0', 0, []],
    ]);
    expect(t.databaseChanged(1663, 16400)).toBe(true);
    expect(t.databaseChanged(1663, 5)).toBe(false);
    expect(t.databaseChanged(1664, 16400)).toBe(false);
    t.markBlock(rel(0, 2, 5), 1); // relNumber 0 on another fork is not the database marker
    expect(t.databaseChanged(1663, 5)).toBe(false);
  });

  it('a limit inside a bitmap chunk keeps it a bitmap, as PostgreSQL writes it', () => {
    const t = new BlockRefTable();
    const rf = rel(16384);
    for (let b = 0; b < 10000; b++) t.markBlock(rf, b);
    t.setLimit(rf, 20);
    expect(t.entry(rf)!.blockCount).toBe(20);
    const file = serializeBlockRefTable(t);
    expect(file.length).toBe(4 + 24 + 2 + 8192 + 24 + 4);
    const back = parseBlockRefTable(file);
    expect(dump(back)).toEqual([['1663/5/16384/0', 20, [...Array(20).keys()]]]);
    expect(serializeBlockRefTable(back)).toEqual(file);
  });

  it('merging applies each entry as setLimit then its blocks, so the order of the merged tables matters', () => {
    const a = new BlockRefTable();
    a.markBlock(rel(1), 10);
    a.markBlock(rel(1), 3);
    a.markBlock(rel(2), 100000);
    const b = new BlockRefTable();
    b.setLimit(rel(1), 5);
    b.markBlock(rel(1), 8);
    b.markBlock(rel(3), 1);

    const ab = new BlockRefTable();
    ab.merge(a);
    ab.merge(b);
    expect(dump(ab)).toEqual([
      ['1663/5/1/0', 5, [3, 8]],
      ['1663/5/2/0', NO_LIMIT, [100000]],
      ['1663/5/3/0', NO_LIMIT, [1]],
    ]);
    const ba = new BlockRefTable();
    ba.merge(b);
    ba.merge(a);
    expect(dump(ba)).toEqual([
      ['1663/5/1/0', 5, [3, 8, 10]],
      ['1663/5/2/0', NO_LIMIT, [100000]],
      ['1663/5/3/0', NO_LIMIT, [1]],
    ]);
    expect(ab.blockCount).toBe(4);
    expect(ba.blockCount).toBe(5);
    // The merged tables are not shared: marking the result leaves the source alone.
    ab.markBlock(rel(2), 100001);
    expect(a.entry(rel(2))!.blockCount).toBe(1);
  });

  it('merging bitmaps and arrays gives the union', () => {
    const a = new BlockRefTable();
    const b = new BlockRefTable();
    const model = new ModelTable();
    const random = seededRandom(7);
    for (let i = 0; i < 30000; i++) {
      const blk = random() % 200000;
      (i % 3 ? a : b).markBlock(rel(1), blk);
      model.mark(rel(1), blk);
    }
    for (let i = 0; i < 3000; i++) {
      const blk = random() % 1000000;
      (i % 2 ? a : b).markBlock(rel(2), blk);
      model.mark(rel(2), blk);
    }
    a.merge(b);
    expect(dump(a)).toEqual(model.dump());
    expect(a.blockCount).toBe([...model.entries.values()].reduce((n, e) => n + e.blocks.size, 0));
  });

  it('agrees with a plain-set model over random operations, through files and merges', () => {
    const random = seededRandom(11);
    const forks = [rel(16384), rel(16384, 2), rel(16385), rel(16385, 0, 16400), rel(16386, 3, 5, 1700000)];
    const t = new BlockRefTable();
    const model = new ModelTable();
    for (let round = 0; round < 20; round++) {
      const piece = new BlockRefTable();
      const pieceModel = new ModelTable();
      for (let i = 0; i < 5000; i++) {
        const rf = forks[random() % forks.length]!;
        const r = random() % 1000;
        if (r < 3) {
          const l = random() % 300000;
          piece.setLimit(rf, l);
          pieceModel.limit(rf, l);
        } else {
          // Dense near the start of a fork, sparse far out.
          const b = r < 700 ? random() % 9000 : random() % 400000;
          piece.markBlock(rf, b);
          pieceModel.mark(rf, b);
        }
      }
      expect(dump(piece)).toEqual(pieceModel.dump());
      const file = serializeBlockRefTable(piece);
      const back = parseBlockRefTable(file);
      expect(dump(back)).toEqual(pieceModel.dump());
      expect(serializeBlockRefTable(back)).toEqual(file);
      t.merge(back);
      for (const e of pieceModel.entries.values()) {
        model.limit(e.rf, e.limit);
        for (const b of e.blocks) model.mark(e.rf, b);
      }
      expect(dump(t)).toEqual(model.dump());
    }
    for (const [rf, e] of t.entries()) {
      const all = [...model.entries.values()].find((m) => m.rf.relNumber === rf.relNumber && m.rf.fork === rf.fork && m.rf.dbOid === rf.dbOid)!;
      const want = [...all.blocks].filter((b) => b >= 60000 && b < 131072).sort((x, y) => x - y);
      expect([...e.blocksIn(60000, 131072)]).toEqual(want);
    }
  });

  it('refuses block numbers, limits and forks that a file cannot hold', () => {
    const t = new BlockRefTable();
    expect(() => t.markBlock(rel(1), -1)).toThrow(BlockRefTableError);
    expect(() => t.markBlock(rel(1), 1.5)).toThrow(BlockRefTableError);
    expect(() => t.markBlock(rel(1), NO_LIMIT)).toThrow(/not a valid block number/);
    expect(() => t.setLimit(rel(1), 2 ** 32)).toThrow(BlockRefTableError);
    expect(() => t.markBlock(rel(1, 4), 1)).toThrow(/fork 4/);
    expect(() => t.markBlock(rel(-1), 1)).toThrow(/relNumber/);
    expect(t.entryCount).toBe(0);
    t.markBlock(rel(1), NO_LIMIT - 1);
    expect([...t.entry(rel(1))!.blocksIn(0, NO_LIMIT)]).toEqual([NO_LIMIT - 1]);
    expect(dump(parseBlockRefTable(serializeBlockRefTable(t)))).toEqual(dump(t));
  });

  it('2*10^7 blocks changed in ranges of a few relations take about one bit each', () => {
    const t = new BlockRefTable();
    const forks = [rel(16384), rel(16385), rel(16386), rel(16386, 2)];
    let marked = 0;
    // Ranges of 5 000 to 200 000 blocks, the forks interleaved as WAL interleaves them.
    const random = seededRandom(3);
    const next = forks.map(() => 0);
    while (marked < 2e7) {
      const f = random() % forks.length;
      const len = 5000 + (random() % 195000);
      const start = next[f]! + (random() % 20000);
      const n = Math.min(len, 2e7 - marked);
      for (let b = start; b < start + n; b++) t.markBlock(forks[f]!, b);
      next[f] = start + n;
      marked += n;
    }
    expect(t.blockCount).toBe(2e7);
    const covered = next.reduce((a, b) => a + b, 0);
    // One bit per block of the covered ranges, plus the array chunks at range edges.
    expect(t.approximateBytes).toBeLessThan(covered / 8 + 4 * 1024 * 1024);
    expect(t.approximateBytes).toBeLessThan(8 * 1024 * 1024);
  });
});

describe('parseBlockRefTable refuses damaged files', () => {
  function sample(): Uint8Array {
    const t = new BlockRefTable();
    t.markBlock(rel(16384), 3);
    t.markBlock(rel(16384), 1);
    for (let b = 0; b < 5000; b++) t.markBlock(rel(16385), 65536 + b);
    t.setLimit(rel(16386, 2), 4);
    return serializeBlockRefTable(t);
  }

  it('a wrong magic number', () => {
    const f = sample();
    f[0] = 0x7c;
    expectRefused(f, /wrong magic number 0x652B137C \(expected 0x652B137B\)/);
    expectRefused(new Uint8Array(0), /ends unexpectedly/);
  });

  it('a wrong checksum', () => {
    const f = sample();
    f[30] = f[30]! ^ 0x01; // a block offset of the first entry
    expectRefused(f, /wrong checksum: expected [0-9A-F]{8}, found [0-9A-F]{8}/);
    const h = sample();
    h[1000] = h[1000]! ^ 0x40; // inside the bitmap of the second entry
    expectRefused(h, /wrong checksum/);
    const g = sample();
    g[g.length - 1] = g[g.length - 1]! ^ 0x80;
    expectRefused(g, /wrong checksum/);
  });

  it('every truncation', () => {
    const f = sample();
    for (let n = 0; n < f.length; n++) {
      let caught: unknown;
      try {
        parseBlockRefTable(f.subarray(0, n), 'summary "x.summary"');
      } catch (e) {
        caught = e;
      }
      expect(caught, `${n} bytes`).toBeInstanceOf(BlockRefTableError);
      expect((caught as Error).message).toMatch(/^summary "x\.summary" (ends unexpectedly|has a wrong checksum)/);
    }
    expect(() => parseBlockRefTable(f)).not.toThrow();
  });

  it('bytes after the checksum', () => {
    expectRefused(concat(sample(), Uint8Array.of(0)), /has 1 bytes after its checksum/);
  });

  it('a chunk usage above 4096', () => {
    const f = sample();
    // The first entry (16384) has one chunk: its usage sits right after the header.
    expect(new DataView(f.buffer).getUint16(28, true)).toBe(2);
    expectRefused(patched(f, 28, Uint8Array.of(0x01, 0x10)), /chunk 0 has usage 4097, more than 4096/);
  });

  it('entries out of order or repeated, and bad forks', () => {
    const one = hex('7f060000 05000000 02000000 00000000 ffffffff 00000000');
    const two = hex('7f060000 05000000 01000000 00000000 ffffffff 00000000');
    expectRefused(closeFile(concat(hex('7b132b65'), one, two)), /not in ascending order/);
    expectRefused(closeFile(concat(hex('7b132b65'), one, one)), /not in ascending order/);
    expectRefused(closeFile(concat(hex('7b132b65'), hex('7f060000 05000000 02000000 04000000 ffffffff 00000000'))), /fork 4 is not 0 to 3/);
    expectRefused(closeFile(concat(hex('7b132b65'), hex('7f060000 05000000 02000000 00000000 ffffffff 01000100'))), /65537 chunks/);
    expect(dump(parseBlockRefTable(closeFile(concat(hex('7b132b65'), two, one))))).toEqual([
      ['1663/5/1/0', NO_LIMIT, []],
      ['1663/5/2/0', NO_LIMIT, []],
    ]);
  });
});
