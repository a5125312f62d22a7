import { describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { parseLsn } from '../../src/wal/lsn.js';
import {
  backupHistoryFileName,
  compareSegmentNamesIgnoringTimeline,
  isValidWalSegmentSize,
  parseWalFileName,
  parseWalSegmentName,
  segmentNumberOfName,
  segmentsPerXLogId,
  timelineHistoryFileName,
  walSegmentEnd,
  walSegmentName,
  walSegmentNameForLsn,
  walSegmentNumber,
  walSegmentNumberOfEnd,
  walSegmentOffset,
  walSegmentStart,
  walSegmentStartOf,
} from '../../src/wal/segment.js';

const MiB = 1024 * 1024;

describe('segment sizes', () => {
  it('accepts powers of two from 1 MiB to 1 GiB only', () => {
    for (let s = MiB; s <= 1024 * MiB; s *= 2) expect(isValidWalSegmentSize(s), String(s)).toBe(true);
    for (const s of [0, 512 * 1024, 3 * MiB, 2048 * MiB, 16 * MiB + 1, 1.5]) expect(isValidWalSegmentSize(s), String(s)).toBe(false);
    expect(() => segmentsPerXLogId(3 * MiB)).toThrow(PgbaculaError);
  });

  it('segments per xlogid = 2^32 / size', () => {
    expect(segmentsPerXLogId(MiB)).toBe(4096n);
    expect(segmentsPerXLogId(16 * MiB)).toBe(256n);
    expect(segmentsPerXLogId(64 * MiB)).toBe(64n);
    expect(segmentsPerXLogId(1024 * MiB)).toBe(4n);
  });
});

// [segment size, LSN, expected name on timeline 1] — computed by hand from the naming rule of docs/postgresql-facts.md ("WAL").
const NAME_CASES: [number, string, string][] = [
  [16 * MiB, '0/1F000110', '00000001000000000000001F'],
  [16 * MiB, '2A/8C0010F0', '000000010000002A0000008C'],
  [16 * MiB, '0/19000000', '000000010000000000000019'],
  [16 * MiB, '0/18FFFFFF', '000000010000000000000018'],
  [16 * MiB, '1/0', '000000010000000100000000'],
  [16 * MiB, '0/FFFFFFFF', '0000000100000000000000FF'],
  [MiB, '0/1F000110', '0000000100000000000001F0'],
  [MiB, '2A/8C0010F0', '000000010000002A000008C0'],
  [MiB, '0/FFFFFFFF', '000000010000000000000FFF'],
  [64 * MiB, '0/1F000110', '000000010000000000000007'],
  [64 * MiB, '2A/8C0010F0', '000000010000002A00000023'],
  [1024 * MiB, '2A/8C0010F0', '000000010000002A00000002'],
];

describe('segment numbers and names', () => {
  it.each(NAME_CASES)('%i-byte segments: %s is in %s', (size, lsnText, name) => {
    const lsn = parseLsn(lsnText);
    expect(walSegmentNameForLsn(1, lsn, size)).toBe(name);
    const { timeline, segno } = parseWalSegmentName(name, size);
    expect(timeline).toBe(1);
    expect(segno).toBe(walSegmentNumber(lsn, size));
    expect(walSegmentName(1, segno, size)).toBe(name);
    const start = walSegmentStart(segno, size);
    expect(start <= lsn && lsn < walSegmentEnd(segno, size)).toBe(true);
    expect(walSegmentStartOf(lsn, size)).toBe(start);
    expect(BigInt(walSegmentOffset(lsn, size))).toBe(lsn - start);
  });

  it('writes the timeline in hex', () => {
    expect(walSegmentName(10, 0x19n, 16 * MiB)).toBe('0000000A0000000000000019');
    expect(walSegmentName(0xabcdef, 0x100n, 16 * MiB)).toBe('00ABCDEF0000000100000000');
    expect(parseWalSegmentName('0000000A0000000000000019', 16 * MiB).timeline).toBe(10);
    expect(timelineHistoryFileName(10)).toBe('0000000A.history');
    expect(timelineHistoryFileName(2)).toBe('00000002.history');
    expect(() => walSegmentName(0, 1n, 16 * MiB)).toThrow(PgbaculaError);
  });

  it('uses the previous segment for a position that ends something', () => {
    const s = 16 * MiB;
    expect(walSegmentNumberOfEnd(parseLsn('0/19000000'), s)).toBe(0x18n); // on a boundary
    expect(walSegmentNumberOfEnd(parseLsn('0/19000001'), s)).toBe(0x19n);
    expect(walSegmentNumber(parseLsn('0/19000000'), s)).toBe(0x19n);
    expect(walSegmentNumberOfEnd(parseLsn('0/100000'), MiB)).toBe(0n);
  });

  it('round-trips every segment across an xlogid boundary for each size', () => {
    for (const size of [MiB, 16 * MiB, 64 * MiB, 1024 * MiB]) {
      const per = segmentsPerXLogId(size);
      for (const segno of [0n, 1n, per - 1n, per, per + 1n, per * 0x2an + 3n]) {
        const name = walSegmentName(3, segno, size);
        expect(name).toMatch(/^[0-9A-F]{24}$/);
        expect(parseWalSegmentName(name, size)).toEqual({ timeline: 3, segno });
      }
    }
  });

  it('refuses names whose segment field cannot exist at that size', () => {
    // 0x100 is fine with 1 MiB segments (4096 per xlogid) but not with 16 MiB (256).
    expect(parseWalSegmentName('000000010000000000000100', MiB).segno).toBe(0x100n);
    expect(() => parseWalSegmentName('000000010000000000000100', 16 * MiB)).toThrow(PgbaculaError);
    expect(parseWalFileName('000000010000000000000100', 16 * MiB)).toBeUndefined();
    expect(parseWalFileName('000000010000000000000100')?.kind).toBe('segment');
  });
});

describe('WAL file name recognition', () => {
  it('recognizes segments, partials, history and backup history files', () => {
    expect(parseWalFileName('000000010000000000000019')).toEqual({
      kind: 'segment', name: '000000010000000000000019', timeline: 1, log: 0, seg: 0x19, segmentName: '000000010000000000000019',
    });
    expect(parseWalFileName('0000000A000000020000003F.partial')).toEqual({
      kind: 'partial', name: '0000000A000000020000003F.partial', timeline: 10, log: 2, seg: 0x3f, segmentName: '0000000A000000020000003F',
    });
    expect(parseWalFileName('0000001F.history')).toEqual({ kind: 'history', name: '0000001F.history', timeline: 31 });
    expect(parseWalFileName('000000010000000000000002.00000028.backup')).toEqual({
      kind: 'backup', name: '000000010000000000000002.00000028.backup', timeline: 1, log: 0, seg: 2, segmentName: '000000010000000000000002', offset: 0x28,
    });
  });

  it('rejects everything else', () => {
    for (const n of [
      '00000001000000000000001', // 23
      '0000000100000000000000190', // 25
      '00000001000000000000001f', // lower case
      '000000000000000000000019', // timeline 0
      '000000010000000000000019.gz',
      '000000010000000000000019.partial.tmp',
      '00000001.history.tmp',
      '1.history',
      '00000000.history',
      'archive_status',
      'RECOVERYXLOG',
    ]) {
      expect(parseWalFileName(n), n).toBeUndefined();
    }
  });

  it('computes segment numbers from parsed names and backup history names', () => {
    const p = parseWalFileName('000000010000002A0000008C.partial');
    expect(p?.kind).toBe('partial');
    if (p && p.kind !== 'history') expect(segmentNumberOfName(p, 16 * MiB)).toBe(0x2a8cn);
    expect(backupHistoryFileName(1, parseLsn('0/2000028'), 16 * MiB)).toBe('000000010000000000000002.00000028.backup');
    expect(backupHistoryFileName(2, parseLsn('0/9A00060'), MiB)).toBe('00000002000000000000009A.00000060.backup');
  });

  it('orders names by position when the timeline is ignored', () => {
    expect(compareSegmentNamesIgnoringTimeline('000000020000000000000005', '000000010000000000000006')).toBe(-1);
    expect(compareSegmentNamesIgnoringTimeline('000000020000000000000006', '000000010000000000000006')).toBe(0);
    expect(['000000020000000000000005' > '000000010000000000000006']).toEqual([true]); // why it matters
  });
});
