/**
 * The decisions of the pitr chain (src/command/bacula/pitr-chain.ts, src/modes/pitr/wal-plan.ts): which recorded job Bacula's Since= names,
 * when an Incremental/Differential continues it and when it must store a base backup (and why),
 * what a base job ships, and what the spool may lose. Pure logic: records and spool facts in.
 */
import { describe, expect, it } from 'vitest';
import { chainRoot, findReference, planWalJob, pruneLimit, retainRecords, type ChainRecord } from '../../src/command/bacula/pitr-chain.js';
import { contiguousFrom, planBaseWal, type ServerNow, type SpoolSegment } from '../../src/modes/pitr/wal-plan.js';
import { walSegmentName } from '../../src/wal/segment.js';

const S = 16 * 1024 * 1024;
const seg = (segno: number, tli = 1): SpoolSegment => ({ name: walSegmentName(tli, BigInt(segno), S), timeline: tli, segno: BigInt(segno) });
const segs = (from: number, to: number, tli = 1): SpoolSegment[] => Array.from({ length: to - from + 1 }, (_, i) => seg(from + i, tli));
const ref = (segno: number, tli = 1) => ({ timeline: tli, segno: String(segno), name: walSegmentName(tli, BigInt(segno), S) });

const T0 = Date.parse('2026-11-26T10:00:00Z');
const full: ChainRecord = {
  jobId: 10, jobName: 'pitr.2026-11-26_10.00.00_01', level: 'F', stored: 'base', backupId: '20261126-100001F',
  startedAtMs: T0 + 400, completedAtMs: T0 + 60_000, systemId: '7000', timeline: 1, walSegmentSize: S,
  startSegno: '20', startLsn: '0/14000028', stopLsn: '0/15000100', walThrough: ref(22), shippedCount: 3,
};
const incr: ChainRecord = {
  jobId: 11, jobName: 'pitr.2026-11-27_10.00.00_02', level: 'I', stored: 'wal', referenceJobId: 10,
  startedAtMs: T0 + 86_400_000 + 300, completedAtMs: T0 + 86_410_000, systemId: '7000', timeline: 1, walSegmentSize: S,
  walThrough: ref(30), shippedCount: 8,
};
const server: ServerNow = { systemId: '7000', timeline: 1, walSegmentSize: S, history: [] };

describe('findReference: the job Bacula names by its Since= time', () => {
  it('is the earliest recorded job that started at or after Since (1 s of slack)', () => {
    expect(findReference([full, incr], Math.floor(T0 / 1000))?.jobId).toBe(10);
    // Bacula's StartTime is truncated to the second and the FD corrects clock skew in whole seconds
    expect(findReference([full, incr], Math.floor(T0 / 1000) + 1)?.jobId).toBe(10);
    expect(findReference([incr, full], Math.floor((T0 + 86_400_000) / 1000))?.jobId).toBe(11);
  });

  it('is nothing when no job started after Since (the job Bacula counts was not ours, or the record is lost)', () => {
    expect(findReference([full, incr], Math.floor((T0 + 90_000_000) / 1000))).toBeUndefined();
    expect(findReference([], 0)).toBeUndefined();
  });
});

describe('planWalJob', () => {
  const since = (r: ChainRecord) => Math.floor(r.startedAtMs / 1000);

  it('an Incremental ships the segments after the reference, and its chain then reaches the newest', () => {
    const p = planWalJob({ level: 'I', since: since(incr), records: [full, incr], server, segments: segs(18, 34) });
    expect(p.kind).toBe('wal');
    if (p.kind !== 'wal') return;
    expect(p.reference.jobId).toBe(11);
    expect(p.ship.map((s) => Number(s.segno))).toEqual([31, 32, 33, 34]);
    expect(p.walThrough).toEqual(ref(34));
  });

  it('a Differential ships everything since the Full', () => {
    const p = planWalJob({ level: 'D', since: since(full), records: [full, incr], server, segments: segs(18, 34) });
    expect(p.kind === 'wal' && p.ship.map((s) => Number(s.segno))).toEqual([23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34]);
  });

  it('nothing new is an empty, valid Incremental', () => {
    const p = planWalJob({ level: 'I', since: since(incr), records: [full, incr], server, segments: segs(18, 30) });
    expect(p.kind === 'wal' && p.ship).toEqual([]);
    expect(p.kind === 'wal' && p.walThrough).toEqual(ref(30));
  });

  it('a missing segment breaks the chain, naming it', () => {
    const p = planWalJob({ level: 'I', since: since(incr), records: [full, incr], server, segments: [...segs(18, 31), ...segs(33, 36)] });
    expect(p).toEqual({ kind: 'base', reason: `WAL segment ${walSegmentName(1, 32n, S)} is missing from the spool (a gap after ${walSegmentName(1, 30n, S)}, shipped by JobId 11)` });
    const first = planWalJob({ level: 'I', since: since(incr), records: [full, incr], server, segments: segs(32, 36) });
    expect(first.kind === 'base' && first.reason).toContain(`WAL segment ${walSegmentName(1, 31n, S)} is missing`);
  });

  it('another system identifier, an unknown reference or a Differential on a WAL-only job store a base backup', () => {
    const other = planWalJob({ level: 'I', since: since(incr), records: [full, incr], server: { ...server, systemId: '7999' }, segments: segs(18, 34) });
    expect(other.kind === 'base' && other.reason).toBe('the system identifier changed from 7000 (JobId 11) to 7999: the cluster was re-created or replaced');
    const lost = planWalJob({ level: 'I', since: since(incr), records: [], server, segments: segs(18, 34) });
    expect(lost.kind === 'base' && lost.reason).toMatch(/^no pitr job of this FileSet started at or after 2026-11-27T10:00:00Z/);
    const diff = planWalJob({ level: 'D', since: since(incr), records: [full, incr], server, segments: segs(18, 34) });
    expect(diff.kind === 'base' && diff.reason).toContain('is not a Full job with a base backup');
    // an Incremental that fell back to a base backup is no reference for a Differential either
    const fellBack: ChainRecord = { ...incr, stored: 'base', backupId: '20261127-100001F', startSegno: '28', referenceJobId: undefined } as ChainRecord;
    const d2 = planWalJob({ level: 'D', since: since(fellBack), records: [full, fellBack], server, segments: segs(18, 34) });
    expect(d2.kind).toBe('base');
    const noSince = planWalJob({ level: 'I', since: undefined, records: [full, incr], server, segments: segs(18, 34) });
    expect(noSince.kind).toBe('base');
  });

  it('a promotion after the reference continues on the new timeline; one inside shipped WAL breaks the chain', () => {
    // timeline 2 began at 0/1F800000 (segment 31): segments 31.. are read from timeline 2
    const promoted: ServerNow = { ...server, timeline: 2, history: [{ parentTimeline: 1, switchLsn: 0x1f800000n, reason: '' }] };
    const segments = [...segs(18, 30), seg(31, 1), ...segs(31, 33, 2)];
    const p = planWalJob({ level: 'I', since: since(incr), records: [full, incr], server: promoted, segments });
    expect(p.kind === 'wal' && p.ship.map((s) => s.name)).toEqual(segs(31, 33, 2).map((s) => s.name));
    expect(p.kind === 'wal' && p.walThrough).toEqual(ref(33, 2));
    const early: ServerNow = { ...server, timeline: 2, history: [{ parentTimeline: 1, switchLsn: 0x1c000000n, reason: '' }] };
    const e = planWalJob({ level: 'I', since: since(incr), records: [full, incr], server: early, segments });
    expect(e.kind === 'base' && e.reason).toContain('branched off timeline 00000001 inside WAL that JobId 11 had already shipped');
    const unknown = planWalJob({ level: 'I', since: since(incr), records: [full, incr], server: { ...server, timeline: 2, history: undefined }, segments });
    expect(unknown.kind === 'base' && unknown.reason).toContain('00000002.history is not in the spool');
  });
});

describe('planBaseWal', () => {
  it('ships from the start segment; the chain reaches through the run from the stop segment on', () => {
    const p = planBaseWal({ server, segments: segs(10, 26), startSegno: 20n, stopSegno: 21n });
    expect(p.ship.map((s) => Number(s.segno))).toEqual([20, 21, 22, 23, 24, 25, 26]);
    expect(p.walThrough).toEqual(ref(26));
    expect(p.gapAfter).toBeUndefined();
  });

  it('an empty spool: the chain reaches to just before the stop segment (the backup holds the rest itself)', () => {
    const p = planBaseWal({ server, segments: [], startSegno: 20n, stopSegno: 21n });
    expect(p.ship).toEqual([]);
    expect(p.walThrough).toEqual(ref(20));
  });

  it('a gap after the stop segment is reported and bounds the chain', () => {
    const p = planBaseWal({ server, segments: [...segs(20, 23), ...segs(25, 27)], startSegno: 20n, stopSegno: 21n });
    expect(p.walThrough).toEqual(ref(23));
    expect(p.ship.map((s) => Number(s.segno))).toEqual([20, 21, 22, 23]);
    expect(p.gapAfter).toEqual({ missing: walSegmentName(1, 24n, S), after: walSegmentName(1, 23n, S) });
  });
});

describe('pruning and retention', () => {
  it('the spool keeps everything from the start of the confirmed chain’s base backup, less the overlap', () => {
    expect(chainRoot([full, incr], incr)?.jobId).toBe(10);
    expect(pruneLimit([full, incr], incr, 2)).toBe(18n);
    expect(pruneLimit([full, incr], full, 32)).toBeUndefined();
    // a chain whose base record is gone cannot be pruned by
    expect(pruneLimit([incr], incr, 2)).toBeUndefined();
    // an Incremental that stored a base backup later: the last Full's WAL stays (a Differential needs it)
    const fellBack: ChainRecord = { ...incr, jobId: 12, stored: 'base', backupId: '20261127-100001F', startSegno: '28', referenceJobId: undefined, startedAtMs: incr.startedAtMs + 1000 } as ChainRecord;
    const after: ChainRecord = { ...incr, jobId: 13, referenceJobId: 12, startedAtMs: incr.startedAtMs + 2000 };
    expect(pruneLimit([full, incr, fellBack, after], after, 2)).toBe(18n);
  });

  it('records are kept while the confirmed chain needs them, and the last 50 always', () => {
    const many = Array.from({ length: 60 }, (_, i): ChainRecord => ({ ...incr, jobId: 100 + i, startedAtMs: T0 + 1000 + i * 1000, referenceJobId: i === 0 ? 10 : 100 + i - 1 }));
    const older = Array.from({ length: 20 }, (_, i): ChainRecord => ({ ...incr, jobId: 1 + i, startedAtMs: T0 - 100_000 + i * 1000, referenceJobId: 1 }));
    // the last 50, and everything from the last Full on (it and its 60 followers)
    const kept = retainRecords([...older, full, ...many], undefined);
    expect(kept.length).toBe(61);
    expect(kept.map((r) => r.jobId)).toContain(10);
    expect(kept.some((r) => r.jobId < 10)).toBe(false);
    // without a Full among them, only the last 50
    expect(retainRecords(many, undefined).length).toBe(50);
    expect(retainRecords([...older, full, ...many], many[59]).length).toBe(61);
  });

  it('contiguousFrom stops at the first hole', () => {
    expect(contiguousFrom(segs(1, 5), 3n)).toEqual({ run: segs(3, 5) });
    expect(contiguousFrom([...segs(1, 3), ...segs(5, 6)], 2n)).toEqual({ run: segs(2, 3), missing: 4n });
    expect(contiguousFrom(segs(1, 3), 9n)).toEqual({ run: [] });
  });
});
