import { describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from '../../src/wal/lsn.js';
import { parseTimelineHistory } from '../../src/wal/timeline-history.js';
import { describeGap, isoToMicros, judgeRecoveryTarget, recoverableWindow, windowToJson, type BackupPoint, type SegmentFacts, type WindowSegment } from '../../src/archive/window.js';

const S = 16 * 1024 * 1024;
const SYS = '7311887020705307463';
const segs = (tli: number, from: number, to: number, except: number[] = []): WindowSegment[] => {
  const out: WindowSegment[] = [];
  for (let n = from; n <= to; n++) if (!except.includes(n)) out.push({ timeline: tli, segno: BigInt(n) });
  return out;
};
const backup = (id: string, start: string, stop: string, stopTime: string, tli = 1): BackupPoint => ({
  id, startLsn: parseLsn(start), stopLsn: parseLsn(stop), startTimeline: tli, stopTimeline: tli, stopTime,
});

describe('recoverable window on one timeline', () => {
  const b1 = backup('20261126-100000F', '0/2000028', '0/3800100', '2026-11-26T10:00:30.000Z');
  const b2 = backup('20261126-110000F', '0/7000028', '0/7200100', '2026-11-26T11:00:20.000Z');
  const facts = new Map<string, SegmentFacts>([
    ['000000010000000000000005', { endLsn: parseLsn('0/5FFFFF0'), lastXactLsn: parseLsn('0/5FF0000'), lastXactTime: '2026-11-26T10:30:00.123456Z' }],
    ['00000001000000000000000A', { endLsn: parseLsn('0/A800000'), lastXactLsn: parseLsn('0/A700000'), lastXactTime: '2026-11-26T11:45:00.500000Z' }],
  ]);
  const w = recoverableWindow({ systemId: SYS, segmentSize: S, segments: segs(1, 2, 10, [6]), histories: [], backups: [b2, b1], segmentFacts: facts });

  it('names the missing segment as a gap and cuts the window of the backup before it', () => {
    expect(w.gaps).toEqual([
      { first: '000000010000000000000006', last: '000000010000000000000006', count: 1, names: ['000000010000000000000006'], namesTruncated: false, startLsn: parseLsn('0/6000000'), endLsn: parseLsn('0/7000000') },
    ]);
    expect(describeGap(w.gaps[0]!)).toBe('000000010000000000000006');
    const [r1, r2] = w.ranges;
    expect(r1).toMatchObject({ backupId: b1.id, lastSegment: '000000010000000000000005', endsAtGap: '000000010000000000000006' });
    expect(formatLsn(r1!.from.lsn)).toBe('0/3800100');
    expect(formatLsn(r1!.to.lsn)).toBe('0/5FFFFF0'); // the end of the last valid record, when known
    expect(r1!.to.time).toBe('2026-11-26T10:30:00.123456Z');
    expect(r2).toMatchObject({ backupId: b2.id, lastSegment: '00000001000000000000000A', endsAtGap: undefined });
  });

  it('earliest is the first backup end, latest the end of the newest unbroken WAL', () => {
    expect(w.earliest).toMatchObject({ backupId: b1.id, time: '2026-11-26T10:00:30.000Z', timeline: 1 });
    expect(formatLsn(w.earliest!.lsn)).toBe('0/3800100');
    expect(w.latest).toMatchObject({ backupId: b2.id, segment: '00000001000000000000000A', time: '2026-11-26T11:45:00.500000Z' });
    expect(w.archived).toEqual({ count: 8, first: '000000010000000000000002', last: '00000001000000000000000A' });
  });

  it('judges targets: inside a range, past a gap (named), past the last commit, before the first backup', () => {
    expect(judgeRecoveryTarget(w, { time: '2026-11-26T10:15:00+00:00' })).toMatchObject({ ok: true, range: { backupId: b1.id } });
    expect(judgeRecoveryTarget(w, { time: '2026-11-26T11:30:00Z' })).toMatchObject({ ok: true, range: { backupId: b2.id } });
    const pastGap = judgeRecoveryTarget(w, { time: '2026-11-26T10:45:00Z' });
    expect(pastGap.ok).toBe(false);
    expect(!pastGap.ok && pastGap.reason).toMatch(/past a WAL gap: 000000010000000000000006 is missing after backup 20261126-100000F/);
    const pastEnd = judgeRecoveryTarget(w, { time: '2026-11-26T11:45:00.500000Z' });
    expect(!pastEnd.ok && pastEnd.reason).toMatch(/not before the last archived commit/);
    expect(judgeRecoveryTarget(w, { time: '2026-11-26T11:45:00.499999Z' }).ok).toBe(true);
    expect(judgeRecoveryTarget(w, { time: '2026-11-26T09:00:00Z' }).ok).toBe(false);
    expect(judgeRecoveryTarget(w, { lsn: parseLsn('0/5000000') })).toMatchObject({ ok: true, range: { backupId: b1.id } });
    const lsnGap = judgeRecoveryTarget(w, { lsn: parseLsn('0/6800000'), backupId: b1.id });
    expect(!lsnGap.ok && lsnGap.gap?.first).toBe('000000010000000000000006');
  });

  it('a backup whose stop segment is not archived yet restores to its stop point only; no gap is invented', () => {
    const b = backup('20261126-120000F', '0/B000028', '0/B000100', '2026-11-26T12:00:00.000Z');
    const w2 = recoverableWindow({ systemId: SYS, segmentSize: S, segments: segs(1, 2, 10, [6]), histories: [], backups: [b] });
    expect(w2.gaps).toEqual([]);
    expect(w2.ranges[0]).toMatchObject({ lastSegment: undefined, endsAtGap: undefined });
    expect(w2.latest!.lsn).toBe(b.stopLsn);
  });

  it('without any backup, gaps are holes between archived segments; many missing names are capped but counted', () => {
    const w3 = recoverableWindow({ systemId: SYS, segmentSize: S, segments: [...segs(1, 1, 2), ...segs(1, 300, 301)], histories: [], maxGapNames: 10 });
    expect(w3.ranges).toEqual([]);
    expect(w3.earliest).toBeUndefined();
    expect(w3.gaps[0]).toMatchObject({ first: '000000010000000000000003', last: '00000001000000010000002B', count: 297, namesTruncated: true });
    expect(w3.gaps[0]!.names.length).toBe(10);
    expect(describeGap(w3.gaps[0]!)).toBe('000000010000000000000003..00000001000000010000002B (297 segments)');
  });
});

describe('recoverable window across a timeline switch', () => {
  const h2 = parseTimelineHistory('1\t0/8000110\tno recovery target specified\n', 2);
  const base = {
    systemId: SYS,
    segmentSize: S,
    histories: [{ timeline: 2, entries: h2 }],
    backups: [backup('b1', '0/2000028', '0/2800000', '2026-11-26T10:00:00Z')],
  };

  it('reads segments before the switch segment from timeline 1, from the switch segment on from timeline 2', () => {
    // Timeline 1 also has 8 (the switch segment) and 9 (the old primary went on): another branch.
    const w = recoverableWindow({ ...base, segments: [...segs(1, 2, 9), ...segs(2, 8, 11)] });
    expect(w.timeline).toBe(2);
    expect(w.lineage.map((s) => [s.timeline, formatLsn(s.begin), s.end === undefined ? null : formatLsn(s.end)])).toEqual([[1, '0/0', '0/8000110'], [2, '0/8000110', null]]);
    expect(w.gaps).toEqual([]);
    expect(w.offLineage.segments).toBe(2);
    expect(w.latest).toMatchObject({ segment: '00000002000000000000000B', timeline: 2 });
    expect(w.archived.count).toBe(10);
  });

  it('a missing segment is named with the timeline recovery would ask for', () => {
    const w = recoverableWindow({ ...base, segments: [...segs(1, 2, 9), ...segs(2, 8, 11, [9])] });
    expect(w.gaps.map((g) => g.names)).toEqual([['000000020000000000000009']]);
    // The switch segment exists only under timeline 1: that copy holds another history after
    // the switch point, so the timeline-2 name is missing.
    const w2 = recoverableWindow({ ...base, segments: [...segs(1, 2, 9), ...segs(2, 9, 11)] });
    expect(w2.gaps.map((g) => g.names)).toEqual([['000000020000000000000008']]);
    expect(w2.ranges[0]!.endsAtGap).toBe('000000020000000000000008');
  });

  it('WAL of a timeline without its history file cannot be used; backups of another branch are set apart', () => {
    const w = recoverableWindow({
      ...base,
      segments: [...segs(1, 2, 9), ...segs(2, 8, 11), ...segs(3, 10, 12)],
      backups: [...base.backups, backup('old-primary', '0/9000028', '0/9100000', '2026-11-26T10:30:00Z', 1)],
    });
    expect(w.missingHistories).toEqual([3]);
    expect(w.timeline).toBe(2);
    expect(w.offLineage.backups).toEqual(['old-primary']);
    expect(w.ranges.map((r) => r.backupId)).toEqual(['b1']);
  });

  it('judging timeline 1 instead shows the old branch', () => {
    const w = recoverableWindow({ ...base, segments: [...segs(1, 2, 9), ...segs(2, 8, 11)], timeline: 1 });
    expect(w.latest).toMatchObject({ segment: '000000010000000000000009', timeline: 1 });
  });

  it('reports the receiver\'s open segment when it follows the window, and serializes to JSON', () => {
    const w = recoverableWindow({ ...base, segments: [...segs(1, 2, 7), ...segs(2, 8, 11)], receiving: { timeline: 2, segno: 12n, endLsn: parseLsn('0/C001000') } });
    expect(w.receiving).toEqual({ segment: '00000002000000000000000C', endLsn: parseLsn('0/C001000') });
    const json = JSON.parse(JSON.stringify(windowToJson(w))) as Record<string, unknown>;
    expect(json).toMatchObject({ timeline: 2, receiving: { segment: '00000002000000000000000C', endLsn: '0/C001000' }, latest: { lsn: '0/C000000' } });
    const stale = recoverableWindow({ ...base, segments: [...segs(1, 2, 7), ...segs(2, 8, 11)], receiving: { timeline: 2, segno: 14n } });
    expect(stale.receiving).toBeUndefined();
  });
});

describe('isoToMicros', () => {
  it('keeps microseconds and honours zones', () => {
    expect(isoToMicros('2026-11-26T12:00:05.123456Z') - isoToMicros('2026-11-26T12:00:05Z')).toBe(123456n);
    expect(isoToMicros('2026-11-26 14:00:05.5+02:00')).toBe(isoToMicros('2026-11-26T12:00:05.500000Z'));
    expect(isoToMicros('2026-11-26 14:00:05.5+02')).toBe(isoToMicros('2026-11-26T12:00:05.500000Z'));
    expect(isoToMicros('2026-11-26 09:30:05.000001-0230')).toBe(isoToMicros('2026-11-26T12:00:05.000001Z'));
  });
});

describe('a damaged archived segment', () => {
  const b1 = backup('20261126-100000F', '0/2000028', '0/3800100', '2026-11-26T10:00:30.000Z');
  const facts = new Map<string, SegmentFacts>([
    ['000000010000000000000005', { endLsn: parseLsn('0/5FFFFF0'), lastRecordLsn: parseLsn('0/5FFFF80'), lastXactLsn: parseLsn('0/5FF0000'), lastXactTime: '2026-11-26T10:30:00.123456Z' }],
  ]);
  const damaged = new Map([['000000010000000000000006', 'its records stop at offset 8388632 (0/6800018), 8388584 bytes before the segment\'s end: bad record CRC at offset 8388632']]);
  const w = recoverableWindow({ systemId: SYS, segmentSize: S, segments: segs(1, 2, 10), histories: [], backups: [b1], segmentFacts: facts, damaged });

  it('ends the window before it, as a gap does, and names it (not as missing)', () => {
    expect(w.gaps).toEqual([]);
    expect(w.damaged).toEqual([{ segment: '000000010000000000000006', problem: damaged.get('000000010000000000000006') }]);
    expect(w.ranges[0]).toMatchObject({ lastSegment: '000000010000000000000005', endsAtGap: undefined, endsAtDamage: { segment: '000000010000000000000006' } });
    expect(formatLsn(w.ranges[0]!.lastRecordLsn!)).toBe('0/5FFFF80');
    expect(formatLsn(w.latest!.lsn)).toBe('0/5FFFFF0');
    expect(JSON.stringify(windowToJson(w))).toContain('"damaged":[{"segment":"000000010000000000000006"');
  });

  it('refuses a target past it, naming the segment and why; a target before it is fine', () => {
    const past = judgeRecoveryTarget(w, { time: '2026-11-26T11:00:00Z' });
    expect(!past.ok && past.reason).toMatch(/past damaged WAL: WAL segment 000000010000000000000006 after backup 20261126-100000F is damaged \(its records stop at offset 8388632/);
    const lsn = judgeRecoveryTarget(w, { lsn: parseLsn('0/8000000') });
    expect(!lsn.ok && lsn.reason).toMatch(/000000010000000000000006 .* is damaged/);
    expect(judgeRecoveryTarget(w, { time: '2026-11-26T10:15:00Z' }).ok).toBe(true);
  });
});
