/**
 * The blocks changed in an LSN range, from the WAL archive (docs/block-incremental.md, source 2
 * "pgbacula's summaries"): what a block-incremental backup job asks for.
 *
 * A segment that the range covers whole contributes its stored `.summary` when it has one; the
 * others (no summary yet, the range's first and last segments, which it covers in part) are
 * summarized from the archived WAL — the segment the backup starts in, usually not archived yet,
 * from the server's pg_wal through readMissing. Any doubt is a refusal with the reason, which
 * the job turns into a full backup: a missing segment, WAL that ends early, WAL of another
 * timeline, WAL that cannot be trusted (wal_level=minimal, a record pgbacula does not decode).
 */
import { join } from 'node:path';
import { BlockRefTable, parseBlockRefTable } from '../format/block-ref-table.js';
import { summarizeRange } from '../wal/block-refs.js';
import { formatLsn, type Lsn } from '../wal/lsn.js';
import { hex8, walSegmentName, walSegmentNumber, walSegmentStart } from '../wal/segment.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { exists, readIfExists } from './archive-io.js';
import { systemDir, timelineDir } from './layout.js';
import { segmentSummaryPath } from './segment-summary.js';

export interface ChangedBlocksRequest {
  readonly root: string;
  readonly systemId: string;
  readonly timeline: number;
  readonly segmentSize: number;
  /** The reference backup's start LSN. */
  readonly fromLsn: Lsn;
  /** This backup's start LSN (records starting before it count). */
  readonly toLsn: Lsn;
  readonly storage?: Storage;
  /** Segments not in the archive yet (the one the backup starts in): read from the server's pg_wal. */
  readonly readMissing?: (segmentName: string) => Promise<Uint8Array | undefined>;
}

export type ChangedBlocks =
  | {
      readonly ok: true;
      readonly table: BlockRefTable;
      /** Segments of the range. */
      readonly segments: number;
      /** Of them, taken from their stored summary. */
      readonly fromSummaries: number;
      /** Of them, summarized from WAL now. */
      readonly summarizedNow: number;
      readonly walBytesRead: number;
    }
  | { readonly ok: false; readonly reason: string };

/** A record may run over this many segments past the one it starts in before the job gives up on it. */
const MAX_CROSSING_SEGMENTS = 64;

export async function changedBlocksFromArchive(r: ChangedBlocksRequest): Promise<ChangedBlocks> {
  const storage = r.storage ?? posixStorage;
  if (r.toLsn <= r.fromLsn) return { ok: true, table: new BlockRefTable(), segments: 0, fromSummaries: 0, summarizedNow: 0, walBytesRead: 0 };
  const first = walSegmentNumber(r.fromLsn, r.segmentSize);
  const last = walSegmentNumber(r.toLsn - 1n, r.segmentSize);
  const table = new BlockRefTable();
  let fromSummaries = 0;
  let summarizedNow = 0;
  let walBytesRead = 0;
  const segSize = BigInt(r.segmentSize);

  const cache = new Map<bigint, Uint8Array>();
  const readSegment = async (segno: bigint): Promise<Uint8Array | string> => {
    const hit = cache.get(segno);
    if (hit) return hit;
    const name = walSegmentName(r.timeline, segno, r.segmentSize);
    const bytes = (await readIfExists(storage, join(timelineDir(r.root, r.systemId, r.timeline), name))) ?? (await r.readMissing?.(name));
    if (bytes === undefined) return await missingReason(storage, r, segno);
    walBytesRead += bytes.length;
    cache.set(segno, bytes);
    return bytes;
  };

  // Every segment of the range with a stored summary uses it: for the first and last segments
  // that counts records outside the range too — more blocks than needed, never fewer, and no
  // segment read at all (a job merges summaries).
  const pending: bigint[] = [];
  /** Each segment's (or run of segments') table, by its first segment. */
  const parts = new Map<bigint, BlockRefTable>();
  for (let segno = first; segno <= last; segno++) {
    const stored = await readIfExists(storage, segmentSummaryPath(r.root, r.systemId, r.timeline, segno, r.segmentSize));
    if (stored === undefined) {
      pending.push(segno);
      continue;
    }
    try {
      parts.set(segno, parseBlockRefTable(stored, `${walSegmentName(r.timeline, segno, r.segmentSize)}.summary`));
      fromSummaries++;
    } catch {
      pending.push(segno); // a damaged summary is only an optimization lost
    }
  }

  // The others, in runs of consecutive segments decoded as one stream.
  for (let i = 0; i < pending.length; ) {
    let j = i;
    while (j + 1 < pending.length && pending[j + 1] === pending[j]! + 1n) j++;
    const a = pending[i]!;
    const b = pending[j]!;
    const from = r.fromLsn > walSegmentStart(a, r.segmentSize) ? r.fromLsn : walSegmentStart(a, r.segmentSize);
    const to = r.toLsn < walSegmentStart(b + 1n, r.segmentSize) ? r.toLsn : walSegmentStart(b + 1n, r.segmentSize);
    const segs: { segno: bigint; bytes: Uint8Array }[] = [];
    for (let s = a; s <= b; s++) {
      const got = await readSegment(s);
      if (typeof got === 'string') return { ok: false, reason: got };
      segs.push({ segno: s, bytes: got });
    }
    for (;;) {
      const sum = summarizeRange(segs, { timeline: r.timeline, segmentSize: r.segmentSize, fromLsn: from, toLsn: to });
      if (sum.untrusted !== undefined) return { ok: false, reason: sum.untrusted };
      if (sum.foreignTimeline !== undefined) {
        return { ok: false, reason: `the WAL at ${formatLsn(sum.foreignTimeline.lsn)} belongs to timeline ${sum.foreignTimeline.timeline}, not to timeline ${r.timeline} of the reference backup` };
      }
      if (sum.endOfWal !== undefined) {
        const seg = walSegmentName(r.timeline, sum.endOfWal / segSize, r.segmentSize);
        return { ok: false, reason: `the WAL ends early at ${formatLsn(sum.endOfWal)} in segment ${seg}${sum.endReason ? ` (${sum.endReason})` : ''}, before ${formatLsn(to)}` };
      }
      if (sum.pendingTail === undefined) {
        parts.set(a, sum.table);
        break;
      }
      // The last record runs into the next segment: read on until it is whole.
      const next = segs[segs.length - 1]!.segno + 1n;
      if (next - b > MAX_CROSSING_SEGMENTS) return { ok: false, reason: `the WAL record at ${formatLsn(sum.pendingTail)} runs over more than ${MAX_CROSSING_SEGMENTS} segments` };
      const got = await readSegment(next);
      if (typeof got === 'string') return { ok: false, reason: got };
      segs.push({ segno: next, bytes: got });
    }
    summarizedNow += j - i + 1;
    i = j + 1;
  }
  // Merged in WAL order: a limit (a relation created or truncated) forgets the blocks recorded
  // before it, never those recorded after it.
  for (const segno of [...parts.keys()].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))) table.merge(parts.get(segno)!);
  return { ok: true, table, segments: Number(last - first + 1n), fromSummaries, summarizedNow, walBytesRead };
}

async function missingReason(storage: Storage, r: ChangedBlocksRequest, segno: bigint): Promise<string> {
  const name = walSegmentName(r.timeline, segno, r.segmentSize);
  // The same position on another timeline: the timeline changed since the reference backup.
  let others: string[] = [];
  try {
    others = (await storage.list(systemDir(r.root, r.systemId))).filter((d) => /^[0-9A-F]{8}$/.test(d) && d !== hex8(r.timeline));
  } catch {
    others = [];
  }
  for (const d of others) {
    const other = `${d}${name.slice(8)}`;
    if (await exists(storage, join(systemDir(r.root, r.systemId), d, other))) {
      return `WAL segment ${name} is missing from the archive ${r.root}, which holds ${other} of timeline ${parseInt(d, 16)}: the timeline changed since the reference backup (timeline ${r.timeline}, ${formatLsn(r.fromLsn)})`;
    }
  }
  return `WAL segment ${name} (${formatLsn(walSegmentStart(segno, r.segmentSize))}) is missing from the archive ${r.root}`;
}
