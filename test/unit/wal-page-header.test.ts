import { describe, expect, it } from 'vitest';
import { versionFacts } from '../../src/pg/versions.js';
import { parseLsn } from '../../src/wal/lsn.js';
import {
  majorOfXlogPageMagic,
  parseWalPageHeader,
  validateWalSegment,
  walPageHeaderProblems,
  XLP_FIRST_IS_CONTRECORD,
  XLP_LONG_HEADER,
} from '../../src/wal/page-header.js';

const MiB = 1024 * 1024;
const SYSID = 7711887020705307463n; // above 2^53: must survive as bigint

/** A synthetic segment laid out as the server writes one (native little-endian headers). */
function segment(o: { start: bigint; size: number; magic: number; tli?: number; sysid?: bigint; validPages?: number }): Buffer {
  const buf = Buffer.alloc(o.size);
  const pages = o.validPages ?? o.size / 8192;
  for (let p = 0; p < pages; p++) {
    const off = p * 8192;
    buf.writeUInt16LE(o.magic, off);
    buf.writeUInt16LE(p === 0 ? XLP_LONG_HEADER : XLP_FIRST_IS_CONTRECORD, off + 2);
    buf.writeUInt32LE(o.tli ?? 1, off + 4);
    buf.writeBigUInt64LE(o.start + BigInt(off), off + 8);
    buf.writeUInt32LE(p === 0 ? 0 : 100, off + 16);
    if (p === 0) {
      buf.writeBigUInt64LE(o.sysid ?? SYSID, off + 24);
      buf.writeUInt32LE(o.size, off + 32);
      buf.writeUInt32LE(8192, off + 36);
    }
  }
  return buf;
}

describe('WAL page headers', () => {
  it('decodes the long header of a segment start', () => {
    const start = parseLsn('0/1F000000');
    const h = parseWalPageHeader(segment({ start, size: MiB, magic: 0xd118 }));
    expect(h).toEqual({
      magic: 0xd118, info: XLP_LONG_HEADER, timeline: 1, pageAddr: start, remLen: 0,
      long: { systemId: SYSID, segmentSize: MiB, blockSize: 8192 },
    });
    expect(parseWalPageHeader(Buffer.alloc(10))).toBeUndefined();
  });

  it('maps every supported magic back to its major', () => {
    for (const m of [10, 11, 12, 13, 14, 15, 16, 17, 18] as const) expect(majorOfXlogPageMagic(versionFacts(m).xlogPageMagic)).toBe(m);
    expect(majorOfXlogPageMagic(0xd093)).toBeUndefined(); // 9.6
  });

  it('names the problem: another major, another system, another size, a stale page', () => {
    const start = parseLsn('2A/8C000000');
    const seg = segment({ start, size: 16 * MiB, magic: versionFacts(15).xlogPageMagic, validPages: 4 });
    const first = { pageAddr: start, firstPageOfSegment: true, systemId: SYSID, segmentSize: 16 * MiB, maxTimeline: 1 } as const;
    expect(walPageHeaderProblems(seg, 0, { ...first, major: 15 })).toEqual([]);
    expect(walPageHeaderProblems(seg, 0, { ...first, major: 16 })).toEqual([
      'the WAL page at 2A/8C000000 has magic 0xD110 (PostgreSQL 15), expected 0xD113 (PostgreSQL 16)',
    ]);
    expect(walPageHeaderProblems(seg, 0, { ...first, major: 15, systemId: '7000000000000000001' })).toEqual([
      `the WAL segment at 2A/8C000000 belongs to system ${SYSID}, not 7000000000000000001`,
    ]);
    expect(walPageHeaderProblems(seg, 0, { ...first, major: 15, segmentSize: 64 * MiB })[0]).toContain('16777216-byte segments, not 67108864');
    expect(walPageHeaderProblems(seg, 8192, { pageAddr: start + 16384n, major: 15 })[0]).toContain('claims address 2A/8C002000');
    expect(walPageHeaderProblems(seg, 8192, { pageAddr: start + 8192n, major: 15, firstPageOfSegment: true })).toContain(
      'the first WAL page of the segment at 2A/8C002000 has no long header',
    );
    expect(walPageHeaderProblems(seg, 0, { pageAddr: start, major: 15 })).toContain(
      'the WAL page at 2A/8C000000 has a long header but does not start a segment',
    );
    const t2 = segment({ start, size: MiB, magic: 0xd118, tli: 2 });
    expect(walPageHeaderProblems(t2, 0, { ...first, segmentSize: MiB, major: 18, maxTimeline: 1 })[0]).toContain('timeline 2, newer than timeline 1');
    const flags = Buffer.from(seg.subarray(0, 40));
    flags.writeUInt16LE(0x0012, 2);
    expect(walPageHeaderProblems(flags, 0, { ...first, major: 15 })[0]).toContain('unknown flag bits 0x0012');
  });

  it('validates whole segments, complete and partial', () => {
    for (const size of [MiB, 16 * MiB, 64 * MiB]) {
      const start = BigInt(size) * 0x19n;
      const full = segment({ start, size, magic: 0xd116 });
      const ok = validateWalSegment(full, { segmentStart: start, segmentSize: size, systemId: SYSID, major: 17, timeline: 1 });
      expect(ok).toEqual({ ok: true, problems: [], validPages: size / 8192, totalPages: size / 8192 });
      // A switched segment: valid pages, then zeros (headers included, 11+) — complete and valid.
      const switched = segment({ start, size, magic: 0xd116, validPages: 3 });
      expect(validateWalSegment(switched, { segmentStart: start, segmentSize: size, systemId: SYSID, major: 17, timeline: 1 })).toMatchObject({ ok: true, validPages: 3 });
      expect(validateWalSegment(switched, { segmentStart: start, segmentSize: size, systemId: SYSID, major: 17, timeline: 1, partial: true })).toMatchObject({ ok: true, validPages: 3 });
      // Something non-zero after the zero tail is mixed content.
      const mixed = Buffer.from(switched);
      full.copy(mixed, 5 * 8192, 5 * 8192, 6 * 8192);
      const m = validateWalSegment(mixed, { segmentStart: start, segmentSize: size, systemId: SYSID, major: 17, timeline: 1 });
      expect(m.ok).toBe(false);
      expect(m.problems[0]).toContain('follows zeroed pages');
      // A stale page (recycled file: an older address) fails a complete segment, ends a .partial.
      const stale = Buffer.from(full);
      stale.writeBigUInt64LE(start - BigInt(size) + 4n * 8192n, 4 * 8192 + 8);
      const st = validateWalSegment(stale, { segmentStart: start, segmentSize: size, systemId: SYSID, major: 17, timeline: 1 });
      expect(st.ok).toBe(false);
      expect(st.problems[0]).toContain('stale or recycled');
      expect(validateWalSegment(stale, { segmentStart: start, segmentSize: size, systemId: SYSID, major: 17, timeline: 1, partial: true })).toMatchObject({ ok: true, validPages: 4 });
      // Another major or system is refused on the first page.
      expect(validateWalSegment(full, { segmentStart: start, segmentSize: size, systemId: SYSID, major: 16, timeline: 1 }).problems[0]).toContain('PostgreSQL 17), expected 0xD113 (PostgreSQL 16)');
      expect(validateWalSegment(full, { segmentStart: start, segmentSize: size, systemId: SYSID + 1n, major: 17, timeline: 1 }).ok).toBe(false);
      const wrongPlace = validateWalSegment(full, { segmentStart: start + BigInt(size), segmentSize: size, systemId: SYSID, major: 17, timeline: 1 });
      expect(wrongPlace.ok).toBe(false);
      expect(validateWalSegment(full.subarray(1), { segmentStart: start, segmentSize: size, systemId: SYSID, major: 17, timeline: 1 }).problems[0]).toContain(`expected ${size}`);
    }
  });
});
