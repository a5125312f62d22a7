/**
 * pgbacula's WAL summarizer (src/wal/block-refs.ts) on hand-built WAL: block reference headers in
 * every shape, records across pages and segments, and each special record in the layout of each
 * major (src/pg/versions.ts).
 */
import { describe, expect, it } from 'vitest';
import { NO_LIMIT, type BlockRefTable } from '../../src/format/block-ref-table.js';
import { SUPPORTED_MAJORS, versionFacts, type Major } from '../../src/pg/versions.js';
import { summarizeRange, summarizeSegment } from '../../src/wal/block-refs.js';
import { crc32cUpdate } from '../../src/format/crc32c.js';
import { SYNTH_SEG, WalWriter } from './wal-synth.js';

const SYS = 7311887020705307463n;
const SEG = BigInt(SYNTH_SEG);

interface BlockSpec {
  readonly id?: number;
  readonly fork?: number;
  /** Omitted: SAME_REL. */
  readonly rel?: readonly [number, number, number];
  readonly block: number;
  readonly data?: number;
  readonly image?: { readonly len: number; readonly bimgInfo: number; readonly holeLen?: boolean };
}

/** Fragment headers and payloads of a record (A.3, A.4), main data last. */
function body(blocks: readonly BlockSpec[], main?: Uint8Array, extra: number[] = []): Uint8Array {
  const hdr: number[] = [...extra];
  const payload: number[] = [];
  const u16 = (n: number) => hdr.push(n & 0xff, (n >> 8) & 0xff);
  const u32 = (n: number) => hdr.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  blocks.forEach((b, i) => {
    hdr.push(b.id ?? i);
    const data = b.data ?? 0;
    hdr.push((b.fork ?? 0) | (b.image ? 0x10 : 0) | (data > 0 ? 0x20 : 0) | (b.rel ? 0 : 0x80));
    u16(data);
    if (b.image) {
      u16(b.image.len);
      u16(100);
      hdr.push(b.image.bimgInfo);
      if (b.image.holeLen) u16(4000);
      for (let k = 0; k < b.image.len; k++) payload.push(k & 0xff);
    }
    if (b.rel) b.rel.forEach(u32);
    u32(b.block);
    for (let k = 0; k < data; k++) payload.push(7);
  });
  if (main) {
    if (main.length < 256) hdr.push(255, main.length);
    else {
      hdr.push(254);
      u32(main.length);
    }
    payload.push(...main);
  }
  return Uint8Array.from([...hdr, ...payload]);
}

function ints(...fields: (number | ['i64', bigint] | ['u8', number])[]): Uint8Array {
  const out: number[] = [];
  for (const f of fields) {
    if (Array.isArray(f) && f[0] === 'i64') {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, f[1], true);
      out.push(...b);
    } else if (Array.isArray(f)) out.push(f[1] as number);
    else out.push(f & 0xff, (f >>> 8) & 0xff, (f >>> 16) & 0xff, (f >>> 24) & 0xff);
  }
  return Uint8Array.from(out);
}


/** The table as plain data: "spc/db/rel/fork" → { limit, blocks }. */
function dump(t: BlockRefTable): Record<string, { limit: number; blocks: number[] }> {
  const out: Record<string, { limit: number; blocks: number[] }> = {};
  for (const [rf, e] of t.entries()) out[`${rf.spcOid}/${rf.dbOid}/${rf.relNumber}/${rf.fork}`] = { limit: e.limitBlock, blocks: [...e.blocksIn(0, 0xffffffff)] };
  return out;
}

function writer(major: Major, startSegno = 4n): WalWriter {
  return new WalWriter({ systemId: SYS, timeline: 1, magic: versionFacts(major).xlogPageMagic }, startSegno);
}

function summarizeAll(w: WalWriter, _major?: Major) {
  const files = [...w.files().entries()].map(([name, bytes]) => ({ segno: BigInt(`0x${name.slice(8, 16)}`) * 0x1000n + BigInt(`0x${name.slice(16)}`), bytes }));
  // 1 MiB segments: 4096 per xlogid.
  return summarizeRange(files, { timeline: 1, segmentSize: SYNTH_SEG, fromLsn: 0n, toLsn: 1n << 62n });
}

describe('block references', () => {
  it('marks every block reference but the free-space map, with SAME_REL, images with and without holes, data and origin fragments', () => {
    for (const major of [14, 15, 18] as const) {
      const facts = versionFacts(major);
      const pglz = facts.walImageCompressedMask === 0x02 ? 0x02 : 0x04;
      const w = writer(major);
      w.append(10, 0x00, 5, body([{ rel: [1663, 5, 16384], block: 7, data: 30 }, { block: 8, fork: 2 }, { rel: [1663, 5, 16390], fork: 1, block: 3 }]));
      // Full-page images: uncompressed with hole (no hole length), compressed with hole (u16 hole length), compressed without.
      w.append(0, 0xb0, 0, body([{ rel: [1663, 5, 16384], block: 100, image: { len: 4000, bimgInfo: 0x01 } }, { block: 101, image: { len: 900, bimgInfo: pglz | 0x01, holeLen: true } }, { block: 102, image: { len: 700, bimgInfo: pglz } }]));
      // A replication-origin fragment and (14+) a top-level xid fragment before the block references.
      w.append(11, 0x10, 9, body([{ rel: [1664, 0, 1262], block: 0xfffffffe, data: 2 }], ints(1, 2), [253, 1, 0, 252, 9, 0, 0, 0]));
      const s = summarizeAll(w, major);
      expect(s.untrusted, `${major}`).toBeUndefined();
      expect(s.endOfWal).toBe((w.pos + 7n) & ~7n);
      expect(s.records).toBe(3);
      expect(dump(s.table), `${major}`).toEqual({
        '1663/5/16384/0': { limit: NO_LIMIT, blocks: [7, 100, 101, 102] },
        '1663/5/16384/2': { limit: NO_LIMIT, blocks: [8] },
        '1664/0/1262/0': { limit: NO_LIMIT, blocks: [0xfffffffe] },
      });
    }
  });

  it('a block header that does not add up makes the range untrusted (never silently skipped)', () => {
    const w = writer(16);
    const b = body([{ rel: [1663, 5, 16384], block: 7, data: 30 }]);
    w.append(10, 0x00, 5, Uint8Array.from([...b, 0, 0, 0])); // 3 bytes nobody announced
    const s = summarizeAll(w, 16);
    expect(s.untrusted).toMatch(/does not decode/);
  });
});

describe('records across pages and segments', () => {
  it('decodes records split over pages, collects a crossing ordinary record in its first segment and skips its continuation in the next', () => {
    const w = writer(17, 8n);
    let n = 0;
    while (w.pos < 9n * SEG - 3000n) w.append(10, 0x00, 1, body([{ rel: [1663, 5, 20000], block: n++, data: 1500 }]));
    const crossing = w.append(10, 0x00, 2, body([{ rel: [1663, 5, 30000], block: 42, data: 6000 }]));
    expect(crossing < 9n * SEG && w.pos > 9n * SEG).toBe(true);
    w.append(10, 0x00, 3, body([{ rel: [1663, 5, 30000], block: 43, data: 10 }]));
    const files = [...w.files().values()];
    const s8 = summarizeSegment(files[0]!, { segno: 8n, timeline: 1, segmentSize: SYNTH_SEG });
    expect(s8.pendingTail).toBeUndefined();
    expect(s8.endOfWal).toBeUndefined();
    expect(s8.records).toBe(n + 1);
    expect(dump(s8.table)['1663/5/30000/0']).toEqual({ limit: NO_LIMIT, blocks: [42] });
    expect(dump(s8.table)['1663/5/20000/0']!.blocks).toHaveLength(n);
    const s9 = summarizeSegment(files[1]!, { segno: 9n, timeline: 1, segmentSize: SYNTH_SEG });
    expect(s9.records).toBe(1);
    expect(dump(s9.table)).toEqual({ '1663/5/30000/0': { limit: NO_LIMIT, blocks: [43] } });
    expect(s9.endOfWal).toBe((w.pos + 7n) & ~7n); // the zeros after the last record
  });

  it('a special record whose main data is in the next segment is a pending tail, resolved by summarizing both segments', () => {
    const w = writer(15, 8n);
    while (w.pos < 9n * SEG - 400n) w.append(10, 0x00, 1, body([{ rel: [1663, 5, 20000], block: 1, data: 300 }]));
    // A commit dropping 60 relations (720 bytes of locators): it crosses into segment 9.
    const rels = Array.from({ length: 60 }, (_, i) => [1663, 5, 40000 + i]).flat();
    const commit = w.append(1, 0x80 | 0x01, 77, body([], ints(['i64', 1n], 1 << 2, 60, ...rels)));
    expect(commit < 9n * SEG && w.pos > 9n * SEG).toBe(true);
    const files = [...w.files().values()];
    const s8 = summarizeSegment(files[0]!, { segno: 8n, timeline: 1, segmentSize: SYNTH_SEG });
    expect(s8.pendingTail).toBe(commit);
    expect(dump(s8.table)['1663/5/40000/0']).toBeUndefined();
    const both = summarizeRange([{ segno: 8n, bytes: files[0]! }, { segno: 9n, bytes: files[1]! }], { timeline: 1, segmentSize: SYNTH_SEG, fromLsn: 8n * SEG, toLsn: 9n * SEG });
    expect(both.pendingTail).toBeUndefined();
    expect(dump(both.table)['1663/5/40059/2']).toEqual({ limit: 0, blocks: [] });
    expect(dump(both.table)['1663/5/40059/1']).toBeUndefined();
  });

  it('counts only records starting in [fromLsn, toLsn), stops at a bad CRC and jumps over a switched segment', () => {
    const w = writer(16, 2n);
    w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 1 }]));
    const second = w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 2 }]));
    const third = w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 3 }]));
    w.switchSegment();
    w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 4 }]));
    const damaged = w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 5 }]));
    w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 6 }]));
    const files = [...w.files().values()];
    const segs = [{ segno: 2n, bytes: files[0]! }, { segno: 3n, bytes: files[1]! }];
    const mid = summarizeRange(segs, { timeline: 1, segmentSize: SYNTH_SEG, fromLsn: second, toLsn: third });
    expect(mid.records).toBe(1);
    expect(dump(mid.table)['1663/5/1/0']!.blocks).toEqual([2]);
    const at = Number(damaged % SEG) + 30;
    files[1]![at] = files[1]![at]! ^ 0xff;
    const all = summarizeRange(segs, { timeline: 1, segmentSize: SYNTH_SEG, fromLsn: 0n, toLsn: 1n << 40n });
    expect(dump(all.table)['1663/5/1/0']!.blocks).toEqual([1, 2, 3, 4]);
    expect(all.endOfWal).toBe(damaged);
    expect(all.endReason).toMatch(/bad record CRC/);
    // The foreign-timeline report: pages of timeline 1 read as timeline 2's range.
    const other = summarizeRange(segs, { timeline: 2, segmentSize: SYNTH_SEG, fromLsn: 0n, toLsn: 1n << 40n });
    expect(other.foreignTimeline?.timeline).toBe(1);
  });
});

describe('record boundaries', () => {
  it('a record whose headers are cut off by the end of the segment is a pending tail, even an ordinary one', () => {
    const w = writer(16, 8n);
    const target = 9n * SEG - 16n;
    while (target - w.pos > 200n) w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 1, data: 100 }]));
    const gap = Number(target - w.pos);
    w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 2, data: gap - 44 }]));
    expect(w.pos).toBe(target);
    const cut = w.append(10, 0x00, 1, body([{ rel: [1663, 5, 2], block: 77, data: 100 }]));
    const files = [...w.files().values()];
    const s8 = summarizeSegment(files[0]!, { segno: 8n, timeline: 1, segmentSize: SYNTH_SEG });
    expect(s8.pendingTail).toBe(cut);
    expect(dump(s8.table)['1663/5/2/0']).toBeUndefined();
    const both = summarizeRange([{ segno: 8n, bytes: files[0]! }, { segno: 9n, bytes: files[1]! }], { timeline: 1, segmentSize: SYNTH_SEG, fromLsn: 8n * SEG, toLsn: 9n * SEG });
    expect(both.pendingTail).toBeUndefined();
    expect(dump(both.table)['1663/5/2/0']!.blocks).toEqual([77]);
  });

  it('a full-page image crossing into the next segment is not pending: its block is known from its headers', () => {
    const w = writer(18, 8n);
    while (w.pos < 9n * SEG - 3000n) w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 1, data: 1000 }]));
    const fpi = w.append(0, 0xb0, 0, body([{ rel: [1663, 5, 4], block: 44, image: { len: 8000, bimgInfo: 0x02 } }]));
    expect(fpi < 9n * SEG && w.pos > 9n * SEG).toBe(true);
    const s8 = summarizeSegment([...w.files().values()][0]!, { segno: 8n, timeline: 1, segmentSize: SYNTH_SEG });
    expect(s8.pendingTail).toBeUndefined();
    expect(dump(s8.table)['1663/5/4/0']!.blocks).toEqual([44]);
  });

  it('a damaged record length neither allocates it nor reads past the input', () => {
    const w = writer(17, 4n);
    w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 1 }]));
    const bad = w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 2 }]));
    const seg = [...w.files().values()][0]!;
    const v = new DataView(seg.buffer, seg.byteOffset, seg.byteLength);
    const at = Number(bad % SEG);
    v.setUint32(at, 0xfffffff0, true);
    const huge = summarizeSegment(seg, { segno: 4n, timeline: 1, segmentSize: SYNTH_SEG });
    expect(huge.endOfWal).toBe(bad);
    expect(huge.endReason).toMatch(/invalid record length/);
    v.setUint32(at, 500 * 1024 * 1024, true); // plausible: read on until the pages stop continuing it
    const long = summarizeSegment(seg, { segno: 4n, timeline: 1, segmentSize: SYNTH_SEG });
    expect(long.endOfWal).toBe(bad);
    expect(long.endReason).toMatch(/a WAL page inside the record/);
    expect(dump(long.table)['1663/5/1/0']!.blocks).toEqual([1]);
  });

  it('a record abandoned by a crash (the next page says XLP_FIRST_IS_OVERWRITE_CONTRECORD) is skipped and reading goes on at that page', () => {
    const w = writer(15, 4n);
    const page = BigInt(8192);
    while (w.pos < 4n * SEG + 3n * page - 300n) w.append(10, 0x00, 1, body([{ rel: [1663, 5, 1], block: 1, data: 100 }]));
    w.append(10, 0x00, 1, body([{ rel: [1663, 5, 9], block: 9, data: 2000 }])); // crosses into the 4th page: abandoned below
    const files = [...w.files().values()];
    const seg = files[0]!;
    const p3 = Number(3n * page);
    const v = new DataView(seg.buffer, seg.byteOffset, seg.byteLength);
    seg.fill(0, p3 + 24, p3 + 8192);
    v.setUint16(p3 + 2, 0x0008, true);
    v.setUint32(p3 + 16, 0, true);
    // The new history: one ordinary record at the start of that page (xl_prev is not checked across the gap).
    const rec = body([{ rel: [1663, 5, 3], block: 33, data: 10 }]);
    const tot = 24 + rec.length;
    const r = new Uint8Array(tot);
    const rv = new DataView(r.buffer);
    rv.setUint32(0, tot, true);
    r[17] = 10;
    r.set(rec, 24);
    let crc = crc32cUpdate(0xffffffff, r, 24, tot);
    crc = (crc32cUpdate(crc, r, 0, 20) ^ 0xffffffff) >>> 0;
    rv.setUint32(20, crc, true);
    seg.set(r, p3 + 24);
    const s = summarizeSegment(seg, { segno: 4n, timeline: 1, segmentSize: SYNTH_SEG });
    expect(s.untrusted).toBeUndefined();
    expect(dump(s.table)['1663/5/9/0']).toBeUndefined();
    expect(dump(s.table)['1663/5/3/0']!.blocks).toEqual([33]);
    expect(s.endOfWal).toBe(4n * SEG + BigInt(p3 + 24 + ((tot + 7) & ~7)));
  });

  it('the visibility map\'s limit after a truncation is its own length: one vm block per 32672 heap blocks', () => {
    for (const [heap, vm] of [[0, 0], [1, 1], [32672, 1], [32673, 2], [100000, 4]] as const) {
      const w = writer(17);
      w.append(2, 0x20 | 0x01, 0, body([], ints(heap, 1663, 5, 500, 0x3)));
      const d = dump(summarizeAll(w).table);
      expect(d['1663/5/500/0']!.limit, `${heap}`).toBe(heap);
      expect(d['1663/5/500/2']!.limit, `${heap}`).toBe(vm);
    }
  });
});

describe('special records, per major', () => {
  for (const major of SUPPORTED_MAJORS) {
    it(`PostgreSQL ${major}`, () => {
      const facts = versionFacts(major);
      const w = writer(major);
      // Blocks first, so limits can be seen forgetting them.
      for (const b of [0, 5, 9, 12]) w.append(10, 0x00, 1, body([{ rel: [1663, 5, 500], block: b }, { block: b, fork: 2 }]));
      w.append(10, 0x00, 1, body([{ rel: [1663, 5, 600], block: 3 }]));
      // smgr create: vm fork → limit 0; fsm fork → nothing.
      w.append(2, 0x10 | 0x01, 0, body([], ints(1663, 5, 700, 2)));
      w.append(2, 0x10 | 0x01, 0, body([], ints(1663, 5, 701, 1)));
      // smgr truncate to 6 blocks, heap and vm flags.
      w.append(2, 0x20 | 0x01, 0, body([], ints(6, 1663, 5, 500, 0x1 | 0x2 | 0x4)));
      // Commit with DBINFO, 2 subxacts, dropping relation 600.
      w.append(1, 0x80 | 0x01, 9, body([], ints(['i64', 5n], 0b111, 5, 1663, 2, 11, 12, 1, 1663, 5, 600)));
      // Abort dropping relation 800: DBINFO present only where abort records carry it.
      const abortItems = facts.walXactAbortDbInfo ? ints(['i64', 5n], 0b101, 5, 1663, 1, 1663, 5, 800) : ints(['i64', 5n], 0b100, 1, 1663, 5, 800);
      w.append(1, 0x20 | 0x80 | 0x01, 10, body([], abortItems));
      // Commit prepared with no xinfo, abort prepared dropping 900.
      w.append(1, 0x30, 11, body([], ints(['i64', 5n])));
      w.append(1, 0x40 | 0x80 | 0x01, 12, body([], ints(['i64', 5n], 0b100, 1, 1663, 5, 900)));
      // Database create (file copy) of db 70000 in 1663; drop of db 70001 in tablespaces 1663 and 16500.
      const db = facts.walDbaseInfo;
      w.append(4, db.createFileCopy | 0x01, 0, body([], ints(70000, 1663, 1, 1663)));
      if (db.createWalLog !== undefined) w.append(4, db.createWalLog | 0x01, 0, body([], ints(70002, 1663)));
      if (facts.walDbaseDropTablespaceList) w.append(4, db.drop | 0x01, 0, body([], ints(70001, 2, 1663, 16500)));
      else {
        w.append(4, db.drop | 0x01, 0, body([], ints(70001, 1663)));
        w.append(4, db.drop | 0x01, 0, body([], ints(70001, 16500)));
      }
      // A parameter change announcing wal_level replica (1) at the major's offset: harmless.
      const param = new Array<number>(8).fill(10);
      param[facts.walParameterChangeWalLevelOffset / 4] = 1;
      w.append(0, 0x60, 0, body([], ints(...param)));
      const s = summarizeAll(w, major);
      expect(s.untrusted, `${major}`).toBeUndefined();
      const expected: Record<string, { limit: number; blocks: number[] }> = {
        '1663/5/500/0': { limit: 6, blocks: [0, 5] },
        '1663/5/500/2': { limit: 1, blocks: [0] }, // 6 heap blocks: one vm block
        '1663/5/600/0': { limit: 0, blocks: [] },
        '1663/5/600/2': { limit: 0, blocks: [] },
        '1663/5/600/3': { limit: 0, blocks: [] },
        '1663/5/700/2': { limit: 0, blocks: [] },
        '1663/5/800/0': { limit: 0, blocks: [] },
        '1663/5/800/2': { limit: 0, blocks: [] },
        '1663/5/800/3': { limit: 0, blocks: [] },
        '1663/5/900/0': { limit: 0, blocks: [] },
        '1663/5/900/2': { limit: 0, blocks: [] },
        '1663/5/900/3': { limit: 0, blocks: [] },
        '1663/70000/0/0': { limit: 0, blocks: [] },
        '1663/70001/0/0': { limit: 0, blocks: [] },
        '16500/70001/0/0': { limit: 0, blocks: [] },
      };
      if (db.createWalLog !== undefined) expected['1663/70002/0/0'] = { limit: 0, blocks: [] };
      expect(dump(s.table)).toEqual(expected);
      expect(s.table.databaseChanged(16500, 70001)).toBe(true);
    });

    it(`PostgreSQL ${major}: wal_level=minimal in the records that carry it makes the range untrusted`, () => {
      const facts = versionFacts(major);
      const param = new Array<number>(8).fill(10);
      param[facts.walParameterChangeWalLevelOffset / 4] = 0;
      const w = writer(major);
      w.append(0, 0x60, 0, body([], ints(...param)));
      expect(summarizeAll(w, major).untrusted).toMatch(/wal_level=minimal/);
      // Shutdown checkpoint, redo and end-of-recovery records: read from 17 on only.
      const ck = new Array<number>(22).fill(7);
      ck[5] = 0; // offset 20: CheckPoint.wal_level in 17+
      const w2 = writer(major);
      w2.append(0, 0x00, 0, body([], ints(...ck)));
      const endOfRecovery = ints(['i64', 1n], 2, 1, 0);
      w2.append(0, 0x90, 0, body([], endOfRecovery));
      const s2 = summarizeAll(w2, major);
      if (facts.walLevelInCheckpointRecords) expect(s2.untrusted, `${major}`).toMatch(/wal_level=minimal/);
      else expect(s2.untrusted, `${major}`).toBeUndefined();
      if (facts.walLevelInCheckpointRecords) {
        const w3 = writer(major);
        w3.append(0, facts.walLevelInCheckpointRecords.checkpointRedoInfo, 0, body([], ints(1)));
        expect(summarizeAll(w3, major).untrusted).toBeUndefined();
        w3.append(0, facts.walLevelInCheckpointRecords.checkpointRedoInfo, 0, body([], ints(0)));
        expect(summarizeAll(w3, major).untrusted).toMatch(/from 0\/[0-9A-F]+ on was written with wal_level=minimal/);
      }
    });
  }

  it('a record flagged as changing relation files outside block references, of a kind not decoded, makes the range untrusted', () => {
    const w = writer(18);
    w.append(5, 0x00 | 0x01, 0, body([], ints(1, 2)));
    expect(summarizeAll(w, 18).untrusted).toMatch(/resource manager 5, type 0x0\) changes relation files/);
    const ok = writer(18);
    ok.append(5, 0x00, 0, body([], ints(1, 2)));
    expect(summarizeAll(ok, 18).untrusted).toBeUndefined();
  });
});
