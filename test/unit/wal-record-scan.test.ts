import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/format/crc32c.js';
import { pgTimeToIso, scanSegmentRecords } from '../../src/wal/record-scan.js';
import { BLCKSZ, SYNTH_SEG, WalWriter } from './wal-synth.js';

const SYS = 7311887020705307463n;

describe('CRC-32C', () => {
  it('matches the CRC-32C check values (docs/postgresql-facts.md, "Test vectors")', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });
});

describe('scanSegmentRecords', () => {
  const t = (s: number) => new Date(Date.UTC(2026, 10, 26, 12, 0, s, 250));

  it('finds every commit and restore point, in order, with exact times and LSNs', () => {
    const w = new WalWriter({ systemId: SYS, timeline: 1 }, 5n);
    const c1 = w.commit(700, t(1));
    w.blockRecord(701, 300);
    const rp = w.restorePoint('before-migration', t(2));
    const c2 = w.commit(702, t(3));
    const files = w.files();
    const bytes = files.get('000000010000000000000005')!;
    const r = scanSegmentRecords(bytes, { segmentStart: 5n * BigInt(SYNTH_SEG), segmentSize: SYNTH_SEG });
    expect(r.records).toBe(4);
    expect(r.stoppedBecause).toBeUndefined();
    expect(r.firstTimed).toMatchObject({ lsn: c1, kind: 'commit', xid: 700 });
    expect(r.lastXact).toMatchObject({ lsn: c2, kind: 'commit', xid: 702 });
    expect(pgTimeToIso(r.lastXact!.pgTime)).toBe('2026-11-26T12:00:03.250000Z');
    expect(r.restorePoints).toEqual([expect.objectContaining({ lsn: rp, name: 'before-migration', kind: 'restore-point' })]);
    expect(r.lastTimed!.lsn).toBe(c2);
    expect(r.endLsn).toBe(w.pos);
    expect(r.switched).toBe(false);
  });

  it('reassembles records split across pages (header included) and skips a continuation from the previous segment', () => {
    const w = new WalWriter({ systemId: SYS, timeline: 3 }, 8n);
    // Fill the first segment up to a few bytes before its end, then a record that crosses into segment 9.
    while (w.pos < 9n * BigInt(SYNTH_SEG) - 200n) w.blockRecord(1, 3000);
    const crossing = w.blockRecord(2, 5000);
    expect(crossing < 9n * BigInt(SYNTH_SEG)).toBe(true);
    expect(w.pos > 9n * BigInt(SYNTH_SEG)).toBe(true);
    // In segment 9: a commit whose 24-byte header is split by a page boundary.
    while (w.pos % BigInt(BLCKSZ) !== BigInt(BLCKSZ) - 16n) {
      const room = Number(BigInt(BLCKSZ) - 16n - (w.pos % BigInt(BLCKSZ)));
      if (room >= 64) w.blockRecord(3, Math.min(2000, room - 48));
      else w.commit(4, t(4), Math.max(0, room - 34 - 8));
    }
    const split = w.commit(9, t(9), 40);
    const last = w.commit(10, t(10));
    const files = w.files();
    const s8 = scanSegmentRecords(files.get('000000030000000000000008')!, { segmentStart: 8n * BigInt(SYNTH_SEG), segmentSize: SYNTH_SEG });
    expect(s8.crossesEnd).toBe(true);
    expect(s8.stoppedBecause).toBeUndefined();
    const s9 = scanSegmentRecords(files.get('000000030000000000000009')!, { segmentStart: 9n * BigInt(SYNTH_SEG), segmentSize: SYNTH_SEG });
    expect(s9.stoppedBecause).toBeUndefined();
    const commits = [s9.firstTimed, s9.lastXact].map((x) => x?.xid);
    expect(commits.at(-1)).toBe(10);
    expect(s9.lastXact!.lsn).toBe(last);
    expect(split % BigInt(BLCKSZ) > BigInt(BLCKSZ) - 24n).toBe(true); // the header really was split
    expect(s9.endLsn).toBe(w.pos);
  });

  it('stops at a switch, and at a damaged record (bad CRC) without reporting anything after it', () => {
    const w = new WalWriter({ systemId: SYS, timeline: 1 }, 2n);
    w.commit(1, t(1));
    w.switchSegment();
    w.commit(2, t(2));
    const damagedAt = w.commit(3, t(3));
    w.commit(4, t(4));
    const files = w.files();
    const s2 = scanSegmentRecords(files.get('000000010000000000000002')!, { segmentStart: 2n * BigInt(SYNTH_SEG), segmentSize: SYNTH_SEG });
    expect(s2.switched).toBe(true);
    expect(s2.lastXact!.xid).toBe(1);
    const seg3 = files.get('000000010000000000000003')!;
    const at = Number(damagedAt % BigInt(SYNTH_SEG)) + 30;
    seg3[at] = seg3[at]! ^ 0xff;
    const s3 = scanSegmentRecords(seg3, { segmentStart: 3n * BigInt(SYNTH_SEG), segmentSize: SYNTH_SEG });
    expect(s3.lastXact!.xid).toBe(2);
    expect(s3.stoppedBecause).toMatch(/bad record CRC/);
    // Valid WAL ends with the record before the damaged one (which starts MAXALIGNed after it).
    expect(s3.endLsn <= damagedAt && s3.endLsn > damagedAt - 8n).toBe(true);
  });

  it('refuses a segment whose first page is not the expected one', () => {
    const w = new WalWriter({ systemId: SYS, timeline: 1 }, 2n);
    w.commit(1, t(1));
    const bytes = w.files().get('000000010000000000000002')!;
    const r = scanSegmentRecords(bytes, { segmentStart: 3n * BigInt(SYNTH_SEG), segmentSize: SYNTH_SEG });
    expect(r.records).toBe(0);
    expect(r.stoppedBecause).toMatch(/first page/);
  });
});
