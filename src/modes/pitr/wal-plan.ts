/**
 * Which WAL of the spool a pitr job ships (pure: spool facts in, segments out): the segments of
 * the server's lineage (the timeline recovery reads each segment number from), runs without a
 * hole, and what a base backup needs from its start segment on.
 */
import type { TimelineHistoryEntry } from '../../wal/timeline-history.js';
import { timelineSpans } from '../../wal/timeline-history.js';
import { walSegmentName } from '../../wal/segment.js';
import { timelineOfSegment } from '../../archive/window.js';

export interface SegmentRef {
  readonly timeline: number;
  /** Segment number as a decimal string (JSON has no bigint). */
  readonly segno: string;
  readonly name: string;
}

/** The spool's facts about one segment (from listWalArchive). */
export interface SpoolSegment {
  readonly name: string;
  readonly timeline: number;
  readonly segno: bigint;
}

export interface ServerNow {
  readonly systemId: string;
  readonly timeline: number;
  readonly walSegmentSize: number;
  /** History of the server's timeline (empty for timeline 1, undefined when the spool lacks it). */
  readonly history: readonly TimelineHistoryEntry[] | undefined;
}

/** Segments of the server's lineage in segment order: for each number, the timeline recovery reads it from. */
export function lineageSegments(segments: readonly SpoolSegment[], server: ServerNow): SpoolSegment[] {
  const spans = timelineSpans(server.history ?? [], server.timeline);
  const out: SpoolSegment[] = [];
  for (const s of segments) {
    if (timelineOfSegment(spans, s.segno, server.walSegmentSize) === s.timeline) out.push(s);
  }
  return out.sort((a, b) => (a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : 0));
}

export interface ContiguousRun {
  /** Segments from `from` on without a hole (possibly empty). */
  readonly run: SpoolSegment[];
  /** The first missing segment number, when segments exist after a hole. */
  readonly missing?: bigint;
}

/** The run of lineage segments starting exactly at `from`. */
export function contiguousFrom(lineage: readonly SpoolSegment[], from: bigint): ContiguousRun {
  const run: SpoolSegment[] = [];
  let next = from;
  const after = lineage.filter((s) => s.segno >= from);
  for (const s of after) {
    if (s.segno !== next) return { run, missing: next };
    run.push(s);
    next++;
  }
  return { run };
}

/**
 * What a base-backup job ships from the spool and how far its chain reaches: the lineage
 * segments from the backup's start segment on; the chain reaches through the contiguous run
 * that begins at the stop segment (the backup's own WAL covers start..stop, the stop segment
 * only up to the stop LSN).
 */
export function planBaseWal(o: {
  readonly server: ServerNow;
  readonly segments: readonly SpoolSegment[];
  readonly startSegno: bigint;
  readonly stopSegno: bigint;
}): { ship: SpoolSegment[]; walThrough: SegmentRef; gapAfter?: { missing: string; after: string } } {
  const lineage = lineageSegments(o.segments, o.server);
  const { run, missing } = contiguousFrom(lineage, o.stopSegno);
  const spans = timelineSpans(o.server.history ?? [], o.server.timeline);
  const nameOf = (segno: bigint): string => walSegmentName(timelineOfSegment(spans, segno, o.server.walSegmentSize), segno, o.server.walSegmentSize);
  const last = run.at(-1);
  const throughSegno = last ? last.segno : o.stopSegno - 1n;
  const ship = lineage.filter((s) => s.segno >= o.startSegno && s.segno <= throughSegno);
  const walThrough = last ? { timeline: last.timeline, segno: String(last.segno), name: last.name } : { timeline: o.server.timeline, segno: String(throughSegno), name: nameOf(throughSegno) };
  return {
    ship,
    walThrough,
    ...(missing !== undefined ? { gapAfter: { missing: nameOf(missing), after: walThrough.name } } : {}),
  };
}
