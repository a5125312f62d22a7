/**
 * A block reference table per archived segment (docs/block-incremental.md, "pgbacula's
 * summaries"; docs/wal-archive.md): `<TLI>/<segment>.summary`, the blocks changed by the records
 * that start in the segment, in the format of PostgreSQL 17's summary files.
 *
 * Written after the segment is stored and only as an optimization: a backup job summarizes a
 * segment that has none itself. So nothing here may fail wal-push or wal-receive: every error
 * becomes a warning. A summary is written only when it is exact — not when the segment's last
 * record has effects that lie in the next segment (then it is written when that one arrives),
 * not when the WAL cannot be trusted (wal_level=minimal, a record pgbacula does not decode), and
 * never over an existing summary.
 */
import { join } from 'node:path';
import { serializeBlockRefTable } from '../format/block-ref-table.js';
import { summarizeRange, summarizeSegment, type WalSummary } from '../wal/block-refs.js';
import { walSegmentName, walSegmentStart } from '../wal/segment.js';
import type { Storage } from '../storage/storage.js';
import { exists, readIfExists } from './archive-io.js';
import { timelineDir } from './layout.js';
import { storeBytes } from './store.js';

export const SUMMARY_SUFFIX = '.summary';

/** Where a summarizing problem goes when the caller has no log: stderr, never the exit status. */
export function warnOnStderr(text: string): void {
  process.stderr.write(`pgbacula: warning: ${text}\n`);
}

/** `<segment>.summary` → the segment's name; undefined for any other name. */
export function summarizedSegmentName(fileName: string): string | undefined {
  const m = /^([0-9A-F]{24})\.summary$/.exec(fileName);
  return m ? m[1] : undefined;
}

export function segmentSummaryPath(root: string, systemId: string, timeline: number, segno: bigint, segmentSize: number): string {
  return join(timelineDir(root, systemId, timeline), `${walSegmentName(timeline, segno, segmentSize)}${SUMMARY_SUFFIX}`);
}

export interface SummarizeStoredOptions {
  readonly storage: Storage;
  readonly root: string;
  readonly systemId: string;
  readonly timeline: number;
  readonly segno: bigint;
  readonly segmentSize: number;
  /** The stored segment's bytes (read back from the archive when omitted). */
  readonly bytes?: Uint8Array;
  readonly warn: (text: string) => void;
}

/**
 * After complete segment N is stored: write N's summary (with N+1 when its last record ends
 * there and N+1 is archived already), and N-1's when N-1 is archived without one (its last
 * record ended in N). Never throws.
 */
export async function summarizeStoredSegment(o: SummarizeStoredOptions): Promise<void> {
  const name = walSegmentName(o.timeline, o.segno, o.segmentSize);
  try {
    const bytes = o.bytes ?? (await readIfExists(o.storage, join(timelineDir(o.root, o.systemId, o.timeline), name)));
    if (bytes === undefined) return;
    if (!(await exists(o.storage, segmentSummaryPath(o.root, o.systemId, o.timeline, o.segno, o.segmentSize)))) {
      let s = summarizeSegment(bytes, { segno: o.segno, timeline: o.timeline, segmentSize: o.segmentSize });
      if (s.pendingTail !== undefined) {
        // Stored out of order (a retry, two writers): the next segment may be archived already.
        const next = await readIfExists(o.storage, join(timelineDir(o.root, o.systemId, o.timeline), walSegmentName(o.timeline, o.segno + 1n, o.segmentSize)));
        if (next !== undefined) s = summarizeRange([{ segno: o.segno, bytes }, { segno: o.segno + 1n, bytes: next }], { timeline: o.timeline, segmentSize: o.segmentSize, fromLsn: walSegmentStart(o.segno, o.segmentSize), toLsn: walSegmentStart(o.segno + 1n, o.segmentSize) });
      }
      await writeIfExact(o, o.segno, s);
    }
    if (o.segno === 0n) return;
    const prev = o.segno - 1n;
    if (await exists(o.storage, segmentSummaryPath(o.root, o.systemId, o.timeline, prev, o.segmentSize))) return;
    const prevBytes = await readIfExists(o.storage, join(timelineDir(o.root, o.systemId, o.timeline), walSegmentName(o.timeline, prev, o.segmentSize)));
    if (prevBytes === undefined) return;
    const start = walSegmentStart(prev, o.segmentSize);
    const s = summarizeRange(
      [
        { segno: prev, bytes: prevBytes },
        { segno: o.segno, bytes },
      ],
      { timeline: o.timeline, segmentSize: o.segmentSize, fromLsn: start, toLsn: start + BigInt(o.segmentSize) },
    );
    await writeIfExact(o, prev, s);
  } catch (e) {
    o.warn(`cannot write the block summary of WAL segment ${name} (the segment itself is archived; a backup job summarizes it when needed): ${(e as Error).message}`);
  }
}

async function writeIfExact(o: SummarizeStoredOptions, segno: bigint, s: WalSummary): Promise<void> {
  if (s.pendingTail !== undefined || s.untrusted !== undefined || s.endOfWal !== undefined) return;
  const path = segmentSummaryPath(o.root, o.systemId, o.timeline, segno, o.segmentSize);
  if (await exists(o.storage, path)) return;
  await storeBytes(o.storage, o.root, o.systemId, path, Buffer.from(serializeBlockRefTable(s.table)), 'refuse', 'the WAL summarizer');
}
