/**
 * The chain of pitr jobs run through Bacula, and the decisions made from it at the start of
 * every job (pure: records and spool facts in, a plan out).
 *
 * Bacula decides the level; it cannot tell the plugin which earlier job it counts as the
 * reference — only the reference *time* (`Since=`): for an Incremental the start of the last
 * successful job of any level, for a Differential the start of the last successful Full. Each
 * of our jobs records the moment its backend started; the reference is the earliest recorded
 * job that started at or after `Since` (the Director stamps StartTime before it contacts the FD,
 * and the previous job had ended before this one started). A job that Bacula failed after we
 * had finished is therefore never a reference, and its WAL, still in the spool, is shipped again.
 *
 * A chain is the base backup of a job that stored one, then WAL segments without a gap: each
 * record says through which segment the chain it ends has every segment (`walThrough`). An
 * Incremental/Differential continues its reference only when the system identifier is the same,
 * the server's timeline descends from the reference's without leaving it before `walThrough`,
 * and the spool holds every segment after `walThrough`. Otherwise the job stores a new base
 * backup and says why.
 */
import { timelineSpans } from '../../wal/timeline-history.js';
import { hex8, walSegmentName, walSegmentNumber } from '../../wal/segment.js';
import { timelineOfSegment } from '../../archive/window.js';
import { contiguousFrom, lineageSegments, type SegmentRef, type ServerNow, type SpoolSegment } from '../../modes/pitr/wal-plan.js';

/** A segment as a chain record names it. */
export type ChainSegmentRef = SegmentRef;

export const CHAIN_FORMAT = 1;

export type BaculaLevel = 'F' | 'I' | 'D';

export interface ChainRecord {
  readonly jobId: number;
  readonly jobName: string;
  /** The level Bacula ran the job at. */
  readonly level: BaculaLevel;
  /** What the job stored: a base backup (+ WAL), or WAL only. */
  readonly stored: 'base' | 'wal';
  /** The base backup's id (virtual path `pitr/<id>/`), when stored = base. */
  readonly backupId?: string;
  /** The job whose chain this WAL-only job continues. */
  readonly referenceJobId?: number;
  /** When our backend started the job (ms since the epoch): what Bacula's `Since=` is matched against. */
  readonly startedAtMs: number;
  readonly completedAtMs: number;
  readonly systemId: string;
  /** The server's timeline when the job ended. */
  readonly timeline: number;
  readonly walSegmentSize: number;
  /** Base backups: the segment of the start LSN (pruning keeps everything from it on). */
  readonly startSegno?: string;
  readonly startLsn?: string;
  readonly stopLsn?: string;
  /** Every segment from the chain's base backup through this one is in Bacula (jobs of the chain). */
  readonly walThrough: ChainSegmentRef;
  /** Segments this job shipped. */
  readonly shippedFirst?: string;
  readonly shippedLast?: string;
  readonly shippedCount: number;
}

export interface ChainFile {
  readonly format: number;
  readonly records: readonly ChainRecord[];
}

/** Seconds of clock slack when matching `Since=` (the FD's skew correction works in whole seconds). */
export const SINCE_SLACK_MS = 1000;

/** The job Bacula names as the reference by its start time (see above), if we recorded it. */
export function findReference(records: readonly ChainRecord[], sinceSeconds: number): ChainRecord | undefined {
  const from = sinceSeconds * 1000 - SINCE_SLACK_MS;
  return [...records].sort((a, b) => a.startedAtMs - b.startedAtMs).find((r) => r.startedAtMs >= from);
}

function isoSeconds(s: number): string {
  return new Date(s * 1000).toISOString().replace('.000Z', 'Z');
}

/** The record that holds the base backup a record's chain starts from. */
export function chainRoot(records: readonly ChainRecord[], r: ChainRecord): ChainRecord | undefined {
  let at: ChainRecord | undefined = r;
  const seen = new Set<number>();
  while (at && at.stored !== 'base') {
    if (seen.has(at.jobId)) return undefined;
    seen.add(at.jobId);
    at = records.find((x) => x.jobId === at!.referenceJobId);
  }
  return at;
}

export type WalJobPlan =
  | {
      readonly kind: 'wal';
      readonly reference: ChainRecord;
      /** Segments to ship (the contiguous run after the reference's walThrough). */
      readonly ship: SpoolSegment[];
      readonly walThrough: ChainSegmentRef;
    }
  | { readonly kind: 'base'; readonly reason: string };

/**
 * What an Incremental or Differential job does: continue the chain of the reference Bacula names
 * (WAL since it), or store a base backup because the chain is broken — with the reason.
 */
export function planWalJob(o: {
  readonly level: 'I' | 'D';
  readonly since: number | undefined;
  readonly records: readonly ChainRecord[];
  readonly server: ServerNow;
  readonly segments: readonly SpoolSegment[];
}): WalJobPlan {
  const what = o.level === 'I' ? 'the previous job' : 'the last Full';
  if (o.since === undefined) return { kind: 'base', reason: `the FD gave no reference time for this ${o.level === 'I' ? 'Incremental' : 'Differential'} job` };
  const ref = findReference(o.records, o.since);
  if (!ref) {
    return { kind: 'base', reason: `no pitr job of this FileSet started at or after ${isoSeconds(o.since)} (${what} as Bacula counts it) is recorded in the spool` };
  }
  if (o.level === 'D' && (ref.stored !== 'base' || ref.level !== 'F')) {
    return { kind: 'base', reason: `the job recorded at ${what}'s time (JobId ${ref.jobId}) is not a Full job with a base backup` };
  }
  const root = chainRoot(o.records, ref);
  if (!root) return { kind: 'base', reason: `the chain of JobId ${ref.jobId} has no recorded base backup` };
  if (ref.systemId !== o.server.systemId) {
    return { kind: 'base', reason: `the system identifier changed from ${ref.systemId} (JobId ${ref.jobId}) to ${o.server.systemId}: the cluster was re-created or replaced` };
  }
  if (ref.walSegmentSize !== o.server.walSegmentSize) {
    return { kind: 'base', reason: `the WAL segment size changed from ${ref.walSegmentSize} to ${o.server.walSegmentSize} bytes` };
  }
  const through = BigInt(ref.walThrough.segno);
  if (o.server.timeline !== ref.timeline) {
    const history = o.server.history;
    if (!history) {
      return { kind: 'base', reason: `the server is on timeline ${hex8(o.server.timeline)} but its history file ${hex8(o.server.timeline)}.history is not in the spool` };
    }
    const sw = history.find((e) => e.parentTimeline === ref.walThrough.timeline);
    const lineageOk = ref.walThrough.timeline === o.server.timeline || sw !== undefined;
    if (!lineageOk) {
      return { kind: 'base', reason: `timeline ${hex8(o.server.timeline)} does not descend from timeline ${hex8(ref.walThrough.timeline)} of JobId ${ref.jobId}` };
    }
    if (sw && walSegmentNumber(sw.switchLsn, o.server.walSegmentSize) <= through) {
      return { kind: 'base', reason: `timeline ${hex8(o.server.timeline)} branched off timeline ${hex8(ref.walThrough.timeline)} inside WAL that JobId ${ref.jobId} had already shipped (before ${ref.walThrough.name})` };
    }
  }
  const lineage = lineageSegments(o.segments, o.server);
  const { run, missing } = contiguousFrom(lineage, through + 1n);
  if (missing !== undefined) {
    const spans = timelineSpans(o.server.history ?? [], o.server.timeline);
    const name = walSegmentName(timelineOfSegment(spans, missing, o.server.walSegmentSize), missing, o.server.walSegmentSize);
    return { kind: 'base', reason: `WAL segment ${name} is missing from the spool (a gap after ${ref.walThrough.name}, shipped by JobId ${ref.jobId})` };
  }
  const last = run.at(-1);
  return {
    kind: 'wal',
    reference: ref,
    ship: run,
    walThrough: last ? { timeline: last.timeline, segno: String(last.segno), name: last.name } : ref.walThrough,
  };
}

/** The newest Full job (level F, a base backup) recorded at or before `r`. */
export function lastFullAtOrBefore(records: readonly ChainRecord[], r: ChainRecord): ChainRecord | undefined {
  return [...records].filter((x) => x.level === 'F' && x.stored === 'base' && x.startedAtMs <= r.startedAtMs).sort((a, b) => a.startedAtMs - b.startedAtMs).at(-1);
}

/**
 * What the spool may lose once Bacula has confirmed `reference`: every segment before the start
 * of the base backup its chain begins with — and before the start of the last Full job, whose WAL
 * a Differential needs even when a later Incremental stored a base backup — less `overlap`
 * extra segments.
 */
export function pruneLimit(records: readonly ChainRecord[], reference: ChainRecord, overlap: number): bigint | undefined {
  const root = chainRoot(records, reference);
  if (!root?.startSegno) return undefined;
  let keepFrom = BigInt(root.startSegno);
  const full = lastFullAtOrBefore(records, reference);
  if (full?.startSegno && BigInt(full.startSegno) < keepFrom) keepFrom = BigInt(full.startSegno);
  const limit = keepFrom - BigInt(overlap);
  return limit > 0n ? limit : undefined;
}

/** Records worth keeping: the last `keep`, every one the confirmed chain needs, and the last Full's on. */
export function retainRecords(records: readonly ChainRecord[], reference: ChainRecord | undefined, keep = 50): ChainRecord[] {
  const sorted = [...records].sort((a, b) => a.startedAtMs - b.startedAtMs);
  const root = reference ? chainRoot(records, reference) : undefined;
  const lastFull = sorted.filter((r) => r.level === 'F' && r.stored === 'base').at(-1);
  const from = Math.min(root?.startedAtMs ?? Infinity, lastFull?.startedAtMs ?? Infinity);
  return sorted.filter((r, i) => i >= sorted.length - keep || r.startedAtMs >= from);
}

/** The Job name without Bacula's `.YYYY-MM-DD_HH.MM.SS_NN` suffix: Since= is per Job. */
export function jobBaseName(name: string): string {
  return name.replace(/\.\d{4}-\d{2}-\d{2}_\d{2}\.\d{2}\.\d{2}_\d+$/, '') || 'job';
}

/** The records a job may continue: its own Job's (all of them for a console estimate). */
export function recordsOfJob(records: readonly ChainRecord[], jobName: string): ChainRecord[] {
  const base = jobBaseName(jobName);
  return base === '-Console-' ? [...records] : records.filter((r) => jobBaseName(r.jobName) === base);
}

/** The FD's job as the chain reads it. */
export interface PitrChainJob {
  readonly jobId: number;
  readonly name: string;
  readonly level: BaculaLevel;
  readonly since: number | undefined;
}

/**
 * Mode pitr_block: every job stores a base backup; an Incremental or Differential one stores
 * only the blocks changed since the base backup of its reference job (docs/block-incremental.md).
 */
export interface BlockJobSettings {
  /** The mode the manifests record (the registry's name for it). */
  readonly mode: string;
  readonly summaryDays: number;
  readonly summarizerWaitMs: number;
}
