/**
 * The recoverable window of one cluster: from which point to which point a restore can go, and
 * every WAL gap that cuts it, named segment by segment. Pure: it judges a listing (the archived
 * segments and history files, the base backups and, optionally, what the last segments' records
 * say) and does no I/O; `src/archive/window-report.ts` gathers the listing.
 *
 * The rules it applies are recovery's own:
 * - a timeline lineage comes from the newest history file (recovery_target_timeline = latest):
 *   for each segment number the segment recovery reads is the one named with the newest timeline
 *   of the lineage that had begun by that segment (the segment holding a switch point is read
 *   from the new timeline); segments of other branches do not count;
 * - a base backup restores on its own to its stop point (it carries its WAL from start to
 *   stop); beyond that, recovery needs every archived segment from the one holding the stop
 *   point on, without a hole: the window of a backup ends at the first missing segment;
 * - a time target stops before the first commit/abort later than the target, so the latest
 *   second a time target can name lies before the last commit/abort archived (`lastXactTime`);
 *   restoring to the end of WAL includes that commit too.
 */
import { formatLsn, type Lsn } from '../wal/lsn.js';
import { walSegmentEnd, walSegmentName, walSegmentNumber, walSegmentStart } from '../wal/segment.js';
import { timelineSpans, type TimelineHistoryEntry, type TimelineSpan } from '../wal/timeline-history.js';

export interface WindowSegment {
  readonly timeline: number;
  readonly segno: bigint;
}

export interface WindowHistory {
  readonly timeline: number;
  /** undefined when the archived file does not parse (then that timeline is unusable). */
  readonly entries: readonly TimelineHistoryEntry[] | undefined;
}

/** What the window needs of a base backup (from its manifest). */
export interface BackupPoint {
  readonly id: string;
  readonly startLsn: Lsn;
  readonly stopLsn: Lsn;
  readonly startTimeline: number;
  readonly stopTimeline: number;
  /** When the backup ended (ISO-8601): the earliest second it restores to. */
  readonly stopTime?: string | undefined;
}

/** What the records of one archived segment say (src/wal/record-scan.ts), by 24-digit name. */
export interface SegmentFacts {
  /** End of the last valid record in the segment. */
  readonly endLsn?: Lsn;
  /** Last commit/abort record: its start and its timestamp (ISO-8601, microseconds). */
  readonly lastXactLsn?: Lsn;
  readonly lastXactTime?: string;
  /** Start of the last whole record in the segment (what "redo done at" names when replay reaches it). */
  readonly lastRecordLsn?: Lsn;
}

export interface WindowInput {
  readonly systemId: string;
  readonly segmentSize: number;
  /** Complete archived segments (any order). */
  readonly segments: readonly WindowSegment[];
  readonly histories: readonly WindowHistory[];
  readonly backups?: readonly BackupPoint[];
  /** Judge this timeline's lineage instead of the newest one. */
  readonly timeline?: number;
  readonly segmentFacts?: ReadonlyMap<string, SegmentFacts>;
  /** wal-receive's open `.partial` (the newest WAL received), with where its valid WAL ends. */
  readonly receiving?: (WindowSegment & { readonly endLsn?: Lsn | undefined }) | undefined;
  /** How many names a gap lists at most (default 1024; the count is always exact). */
  readonly maxGapNames?: number;
  /** Complete segments whose records do not hold up (src/wal/integrity.ts), by name → what is wrong. */
  readonly damaged?: ReadonlyMap<string, string>;
}

export interface WindowPoint {
  readonly lsn: Lsn;
  readonly timeline: number;
  /** ISO-8601; for `to`, the last commit/abort in the range (a time target must lie before it). */
  readonly time?: string | undefined;
}

export interface RecoverableRange {
  readonly backupId: string;
  /** The backup's stop point: recovery is consistent from here. */
  readonly from: WindowPoint;
  /** End of the WAL archived without a hole after the backup. */
  readonly to: WindowPoint;
  /** Last archived segment of the range (undefined when the backup's own WAL is all there is). */
  readonly lastSegment?: string | undefined;
  /** The first missing segment, when later segments are archived (the range ends at a gap). */
  readonly endsAtGap?: string | undefined;
  /** The damaged segment the range ends before (recovery would stop at its first bad record). */
  readonly endsAtDamage?: { readonly segment: string; readonly problem: string } | undefined;
  /** Start of the last whole record of the range (what "redo done at" names when replay gets there). */
  readonly lastRecordLsn?: Lsn | undefined;
}

export interface WalGap {
  /** First and last missing segment names (as recovery would ask for them). */
  readonly first: string;
  readonly last: string;
  readonly count: number;
  /** Every missing name, up to maxGapNames. */
  readonly names: readonly string[];
  readonly namesTruncated: boolean;
  /** WAL positions the gap covers: [startLsn, endLsn). */
  readonly startLsn: Lsn;
  readonly endLsn: Lsn;
}

export interface RecoverableWindow {
  readonly systemId: string;
  readonly segmentSize: number;
  /** The timeline whose lineage was judged (hexadecimal in every name). */
  readonly timeline: number;
  readonly lineage: readonly TimelineSpan[];
  readonly earliest: (WindowPoint & { readonly backupId: string }) | undefined;
  readonly latest: (WindowPoint & { readonly backupId: string; readonly segment?: string | undefined }) | undefined;
  readonly ranges: readonly RecoverableRange[];
  readonly gaps: readonly WalGap[];
  /** Archived segments of this lineage. */
  readonly archived: { readonly count: number; readonly first?: string | undefined; readonly last?: string | undefined };
  /** Timelines with archived WAL but no (readable) history file: their WAL cannot be used. */
  readonly missingHistories: readonly number[];
  /** Backups and segments that belong to another branch of history. */
  readonly offLineage: { readonly backups: readonly string[]; readonly segments: number };
  /** wal-receive's open segment right after the latest range, when there is one. */
  readonly receiving?: { readonly segment: string; readonly endLsn?: Lsn | undefined } | undefined;
  /** Damaged segments of this lineage: the window ends before each, as at a gap. */
  readonly damaged: readonly { readonly segment: string; readonly problem: string }[];
}

/**
 * The timeline recovery reads segment `segno` from along a lineage: the newest one that had
 * begun by that segment (the segment holding a switch point is read from the new timeline).
 */
export function timelineOfSegment(lineage: readonly TimelineSpan[], segno: bigint, segmentSize: number): number {
  for (let i = lineage.length - 1; i >= 0; i--) if (walSegmentNumber(lineage[i]!.begin, segmentSize) <= segno) return lineage[i]!.timeline;
  return lineage[0]!.timeline;
}

/** Judge the listing. */
export function recoverableWindow(input: WindowInput): RecoverableWindow {
  const S = input.segmentSize;
  const maxNames = input.maxGapNames ?? 1024;
  const usableHistories = new Map<number, readonly TimelineHistoryEntry[]>();
  for (const h of input.histories) if (h.entries) usableHistories.set(h.timeline, h.entries);

  const tip = input.timeline ?? Math.max(1, ...usableHistories.keys());
  const lineage = timelineSpans(usableHistories.get(tip) ?? [], tip);
  const inLineage = new Set(lineage.map((s) => s.timeline));
  const expectedTimeline = (segno: bigint): number => timelineOfSegment(lineage, segno, S);
  const nameOf = (segno: bigint): string => walSegmentName(expectedTimeline(segno), segno, S);

  // Archived segments recovery would read along this lineage.
  const present = new Set<bigint>();
  let offSegments = 0;
  const missingHistories = new Set<number>();
  for (const s of input.segments) {
    if (s.timeline > 1 && !usableHistories.has(s.timeline)) missingHistories.add(s.timeline);
    if (expectedTimeline(s.segno) === s.timeline) present.add(s.segno);
    else offSegments++;
  }
  const sortedPresent = [...present].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const damagedSegnos = new Set(sortedPresent.filter((n) => input.damaged?.has(nameOf(n))));

  // Backups whose stop point lies on this lineage.
  const backups: BackupPoint[] = [];
  const offBackups: string[] = [];
  for (const b of [...(input.backups ?? [])].sort((x, y) => (x.stopLsn < y.stopLsn ? -1 : x.stopLsn > y.stopLsn ? 1 : 0))) {
    const span = lineage.find((sp) => sp.timeline === b.stopTimeline);
    const onIt = span !== undefined && b.stopLsn >= span.begin && (span.end === undefined || b.stopLsn <= span.end) && inLineage.has(b.startTimeline);
    if (onIt) backups.push(b);
    else offBackups.push(b.id);
  }

  // Gaps: holes in (archived ∪ backups' own complete WAL) between the first backup start (or
  // the first archived segment) and the last archived segment.
  const intervals: Array<[bigint, bigint]> = [];
  for (let i = 0; i < sortedPresent.length; ) {
    let j = i;
    while (j + 1 < sortedPresent.length && sortedPresent[j + 1]! === sortedPresent[j]! + 1n) j++;
    intervals.push([sortedPresent[i]!, sortedPresent[j]!]);
    i = j + 1;
  }
  for (const b of backups) {
    const a = walSegmentNumber(b.startLsn, S);
    const z = walSegmentNumber(b.stopLsn, S) - 1n;
    if (z >= a) intervals.push([a, z]);
  }
  intervals.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const merged: Array<[bigint, bigint]> = [];
  for (const iv of intervals) {
    const last = merged.at(-1);
    if (last && iv[0] <= last[1] + 1n) last[1] = iv[1] > last[1] ? iv[1] : last[1];
    else merged.push([iv[0], iv[1]]);
  }
  const gaps: WalGap[] = [];
  const hi = sortedPresent.at(-1);
  const lo = backups.length > 0 ? backups.reduce((m, b) => (walSegmentNumber(b.startLsn, S) < m ? walSegmentNumber(b.startLsn, S) : m), walSegmentNumber(backups[0]!.startLsn, S)) : sortedPresent[0];
  if (hi !== undefined && lo !== undefined) {
    for (let i = 0; i + 1 < merged.length; i++) {
      let a = merged[i]![1] + 1n;
      let z = merged[i + 1]![0] - 1n;
      if (z < lo || a > hi) continue;
      if (a < lo) a = lo;
      if (z > hi) z = hi;
      const count = z - a + 1n;
      const names: string[] = [];
      for (let s = a; s <= z && names.length < maxNames; s++) names.push(nameOf(s));
      gaps.push({
        first: nameOf(a),
        last: nameOf(z),
        count: Number(count),
        names,
        namesTruncated: count > BigInt(names.length),
        startLsn: walSegmentStart(a, S),
        endLsn: walSegmentEnd(z, S),
      });
    }
  }

  // One range per backup: from its stop point through the archived segments without a hole.
  const ranges: RecoverableRange[] = [];
  const rangeEndSegno = new Map<RecoverableRange, bigint>();
  for (const b of backups) {
    const s0 = walSegmentNumber(b.stopLsn, S);
    let s = s0;
    while (present.has(s) && !damagedSegnos.has(s)) s++;
    const from: WindowPoint = { lsn: b.stopLsn, timeline: b.stopTimeline, time: b.stopTime };
    let to: WindowPoint = from;
    let lastSegment: string | undefined;
    let lastRecordLsn: Lsn | undefined;
    if (s > s0) {
      lastSegment = nameOf(s - 1n);
      const facts = input.segmentFacts?.get(lastSegment);
      if (facts?.lastRecordLsn !== undefined && facts.lastRecordLsn >= b.stopLsn) lastRecordLsn = facts.lastRecordLsn;
      const endLsn = facts?.endLsn !== undefined && facts.endLsn > b.stopLsn ? facts.endLsn : walSegmentEnd(s - 1n, S);
      let time: string | undefined;
      for (let k = s - 1n; k >= s0 && time === undefined; k--) {
        const f = input.segmentFacts?.get(nameOf(k));
        if (f?.lastXactTime !== undefined && f.lastXactLsn !== undefined && f.lastXactLsn >= b.stopLsn) time = f.lastXactTime;
      }
      to = { lsn: endLsn, timeline: expectedTimeline(s - 1n), time };
    }
    const damage = damagedSegnos.has(s) ? { segment: nameOf(s), problem: input.damaged!.get(nameOf(s))! } : undefined;
    const range: RecoverableRange = {
      backupId: b.id,
      from,
      to,
      lastSegment,
      endsAtGap: damage === undefined && hi !== undefined && s <= hi ? nameOf(s) : undefined,
      ...(damage ? { endsAtDamage: damage } : {}),
      ...(lastRecordLsn === undefined ? {} : { lastRecordLsn }),
    };
    ranges.push(range);
    rangeEndSegno.set(range, s - 1n);
  }

  let earliest: RecoverableWindow['earliest'];
  let latest: RecoverableWindow['latest'];
  let latestSegno: bigint | undefined;
  for (const r of ranges) {
    if (!earliest || r.from.lsn < earliest.lsn) earliest = { ...r.from, backupId: r.backupId };
    if (!latest || r.to.lsn > latest.lsn || (r.to.lsn === latest.lsn && latest.time === undefined && r.to.time !== undefined)) {
      latest = { ...r.to, backupId: r.backupId, segment: r.lastSegment };
      latestSegno = rangeEndSegno.get(r);
    }
  }

  // The receiver's open segment extends the window only if it directly follows it.
  let receiving: RecoverableWindow['receiving'];
  const rcv = input.receiving;
  const follows = latestSegno ?? hi;
  if (rcv && expectedTimeline(rcv.segno) === rcv.timeline && (follows === undefined || rcv.segno === follows + 1n)) {
    receiving = { segment: walSegmentName(rcv.timeline, rcv.segno, S), endLsn: rcv.endLsn };
  }

  return {
    systemId: input.systemId,
    segmentSize: S,
    timeline: tip,
    lineage,
    earliest,
    latest,
    ranges,
    gaps,
    archived: { count: present.size, first: sortedPresent[0] === undefined ? undefined : nameOf(sortedPresent[0]), last: hi === undefined ? undefined : nameOf(hi) },
    missingHistories: [...missingHistories].sort((a, b) => a - b),
    offLineage: { backups: offBackups.map(String), segments: offSegments },
    receiving,
    damaged: [...damagedSegnos].map((n) => ({ segment: nameOf(n), problem: input.damaged!.get(nameOf(n))! })),
  };
}

// ---------------------------------------------------------------------------------------------
// Judging a recovery target against the window (restore's pre-check)
// ---------------------------------------------------------------------------------------------

export interface RecoveryTargetQuery {
  readonly lsn?: Lsn;
  /** ISO-8601 with zone (recovery_target_time). */
  readonly time?: string;
  /** Only ranges starting at this backup. */
  readonly backupId?: string;
}

export type TargetVerdict =
  | { readonly ok: true; readonly range: RecoverableRange }
  | { readonly ok: false; readonly reason: string; readonly gap?: WalGap | undefined };

/**
 * Whether a target LSN or time lies in a recoverable range. For a time, the range must hold a
 * commit/abort later than the target (recovery stops before it; without one, 13+ fails with
 * "recovery ended before configured recovery target was reached" and ≤ 12 promotes at the end).
 */
export function judgeRecoveryTarget(w: RecoverableWindow, q: RecoveryTargetQuery): TargetVerdict {
  const ranges = w.ranges.filter((r) => q.backupId === undefined || r.backupId === q.backupId);
  if (ranges.length === 0) {
    return { ok: false, reason: q.backupId === undefined ? `no base backup of system ${w.systemId} lies on timeline ${w.timeline}'s history` : `backup ${q.backupId} is not on timeline ${w.timeline}'s history` };
  }
  const gapAfter = (r: RecoverableRange): WalGap | undefined => (r.endsAtGap === undefined ? undefined : w.gaps.find((g) => g.names.includes(r.endsAtGap!) || g.first === r.endsAtGap));
  const damageAfter = (r: RecoverableRange): string | undefined =>
    r.endsAtDamage === undefined ? undefined : `WAL segment ${r.endsAtDamage.segment} after backup ${r.backupId} is damaged (${r.endsAtDamage.problem}): recovery would stop at its first bad record, ${formatLsn(r.to.lsn)} at the latest`;
  if (q.lsn !== undefined) {
    const lsn = q.lsn;
    const hit = ranges.filter((r) => r.from.lsn <= lsn && lsn <= r.to.lsn).at(-1);
    if (hit) return { ok: true, range: hit };
    const before = ranges.filter((r) => r.from.lsn <= lsn).at(-1);
    if (!before) return { ok: false, reason: `${formatLsn(lsn)} is before the earliest consistent point ${formatLsn(ranges[0]!.from.lsn)} (end of backup ${ranges[0]!.backupId})` };
    const gap = gapAfter(before);
    const damage = damageAfter(before);
    if (damage) return { ok: false, reason: `${formatLsn(lsn)} lies past damaged WAL: ${damage}` };
    return gap
      ? { ok: false, reason: `${formatLsn(lsn)} lies past a WAL gap: ${describeGap(gap)} is missing after backup ${before.backupId}`, gap }
      : { ok: false, reason: `${formatLsn(lsn)} is past the end of the archived WAL (${formatLsn(before.to.lsn)})` };
  }
  if (q.time !== undefined) {
    const t = isoToMicros(q.time);
    const hit = ranges.filter((r) => r.from.time !== undefined && isoToMicros(r.from.time) <= t && r.to.time !== undefined && t < isoToMicros(r.to.time)).at(-1);
    if (hit) return { ok: true, range: hit };
    const before = ranges.filter((r) => r.from.time !== undefined && isoToMicros(r.from.time) <= t).at(-1);
    if (!before) return { ok: false, reason: `${q.time} is before the earliest restorable time ${ranges[0]!.from.time ?? formatLsn(ranges[0]!.from.lsn)} (end of backup ${ranges[0]!.backupId})` };
    const gap = gapAfter(before);
    const damage = damageAfter(before);
    if (damage) return { ok: false, reason: `${q.time} lies past damaged WAL: ${damage}${before.to.time === undefined ? '' : ` (the last commit before it is at ${before.to.time})`}` };
    const last = before.to.time === undefined ? 'no commit archived after the backup' : `the last commit archived is at ${before.to.time}`;
    return gap
      ? { ok: false, reason: `${q.time} lies past a WAL gap: ${describeGap(gap)} is missing after backup ${before.backupId} (${last})`, gap }
      : { ok: false, reason: `${q.time} is not before the last archived commit (${last}): recovery would run out of WAL before reaching it` };
  }
  return { ok: true, range: ranges.reduce((a, b) => (b.to.lsn > a.to.lsn ? b : a)) };
}

/** `000000010000000000000005` or `…05..…07 (3 segments)`. */
export function describeGap(g: WalGap): string {
  return g.count === 1 ? g.first : `${g.first}..${g.last} (${g.count} segments)`;
}

/**
 * ISO-8601 with a zone, up to microseconds — also PostgreSQL's own output
 * (`2026-11-26 13:02:57.133988+00`) — → microseconds since the Unix epoch.
 */
export function isoToMicros(iso: string): bigint {
  const m = /^(.*?\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?(.*)$/.exec(iso.trim());
  // Date.parse wants `+HH:MM`; PostgreSQL prints `+HH` or `+HHMM`.
  const zone = (m?.[3] ?? '').trim().replace(/^([+-]\d{2})$/, '$1:00').replace(/^([+-]\d{2})(\d{2})$/, '$1:$2');
  const base = Date.parse(m ? `${m[1]!}${zone}` : iso);
  if (Number.isNaN(base)) throw new Error(`not an ISO-8601 time: ${iso}`);
  const frac = m?.[2] ? BigInt(m[2].padEnd(6, '0').slice(0, 6)) : 0n;
  return BigInt(base) * 1000n + frac;
}

/** The window as plain JSON (LSNs as `%X/%X`, timelines as numbers and hex names). */
export function windowToJson(w: RecoverableWindow): unknown {
  const point = <P extends WindowPoint>(p: P | undefined) => p && { ...p, lsn: formatLsn(p.lsn), time: p.time ?? null };
  return {
    systemId: w.systemId,
    segmentSize: w.segmentSize,
    timeline: w.timeline,
    lineage: w.lineage.map((s) => ({ timeline: s.timeline, begin: formatLsn(s.begin), end: s.end === undefined ? null : formatLsn(s.end) })),
    earliest: point(w.earliest) ?? null,
    latest: point(w.latest) ?? null,
    ranges: w.ranges.map((r) => ({ ...r, from: point(r.from), to: point(r.to), lastRecordLsn: r.lastRecordLsn === undefined ? null : formatLsn(r.lastRecordLsn) })),
    gaps: w.gaps.map((g) => ({ ...g, startLsn: formatLsn(g.startLsn), endLsn: formatLsn(g.endLsn) })),
    archived: w.archived,
    missingHistories: w.missingHistories,
    offLineage: w.offLineage,
    receiving: w.receiving ? { segment: w.receiving.segment, endLsn: w.receiving.endLsn === undefined ? null : formatLsn(w.receiving.endLsn) } : null,
    damaged: w.damaged,
  };
}
