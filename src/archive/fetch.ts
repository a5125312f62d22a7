/** wal-fetch (restore_command): serve an archived file, never a damaged one, a partial one only at the end of WAL when asked. */
import { dirname, join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { judgeSegment, judgeSegmentJoin } from '../wal/integrity.js';
import { validRecordsEnd } from '../wal/record-scan.js';
import { majorOfXlogPageMagic, validateWalSegment } from '../wal/page-header.js';
import { isValidWalSegmentSize, segmentNumberOfName, type WalFileName, timelineHistoryFileName, walSegmentName, walSegmentStart } from '../wal/segment.js';
import { parseTimelineHistory, timelineSpans } from '../wal/timeline-history.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { readArchiveMeta } from './archive-meta.js';
import { exists, ioError, readIfExists } from './archive-io.js';
import { archivedPath, parseArchivableName, receiveDir, systemDir, timelineDir } from './layout.js';
import { timelineOfSegment } from './window.js';
import { isEndOfWal } from './partial-at-end.js';

export type FetchResult =
  | { readonly status: 'fetched'; readonly source: string; readonly bytes: number; readonly fromPartial: boolean }
  | {
      readonly status: 'absent';
      /** Set when the archive holds only an incomplete copy (`<name>.partial`, never served by default). */
      readonly partial?: string;
    };

export interface FetchOptions {
  readonly root: string;
  readonly systemId: string;
  /** %f: the file the server asks for (segment or NNNNNNNN.history; .backup accepted too). */
  readonly fileName: string;
  /** %p: where to put it (the server's temporary name, e.g. pg_wal/RECOVERYXLOG). */
  readonly destPath: string;
  /**
   * Serve `<name>.partial` under the plain name when the complete segment is absent. Only a
   * restore that knows the partial is the newest WAL there is (RPO ≈ 0 with wal-receive) may do
   * this; wal-fetch never does.
   */
  readonly allowPartial?: boolean;
  /**
   * A second source for what the archive lacks: a backup's own WAL, staged by a restore. Its
   * newest segment is the backup's last one, streamed to the stop point: it may end early.
   */
  readonly stagedDir?: string;
  /**
   * Restoring to the end of WAL: serve `<name>.partial` (the receiver's open segment, or a
   * timeline's last) as its segment when no complete copy exists and it is the end of every WAL
   * there is (src/archive/partial-at-end.ts), so recovery replays up to its last byte received.
   */
  readonly partialAtEnd?: boolean;
  /** Serve from stagedDir only: there is no archive (root is not read). */
  readonly stagedOnly?: boolean;
  /** Where the archive, the staged WAL and destPath are (default: the file system). */
  readonly storage?: Storage;
}

/**
 * Copy an archived file to destPath (temp name + rename, so the server never sees half a file).
 * Absent files are a normal answer ('absent'), not an error: the server probes for history files
 * and for the segment after the last one. A segment whose records do not hold up (src/wal/
 * integrity.ts) is a WAL_DAMAGED error: served, recovery would take its first bad record for the
 * end of WAL and promote without everything after it.
 */
export async function fetchWalFile(o: FetchOptions): Promise<FetchResult> {
  const storage = o.storage ?? posixStorage;
  const parsed = parseArchivableName(o.fileName);
  if (parsed.kind === 'partial') {
    throw new PgbaculaError('PARAM_INVALID', `${o.fileName} is an incomplete segment: wal-fetch never serves a .partial file`, {
      hint: 'PostgreSQL never asks for .partial names; to use one, copy it by hand into pg_wal under its 24-digit name, knowing it ends early.',
    });
  }
  const meta = o.stagedOnly ? undefined : await readArchiveMeta(o.root, o.systemId, storage);
  let source = archivedPath(o.root, o.systemId, parsed);
  let bytes = o.stagedOnly ? undefined : await readIfExists(storage, source);
  let fromPartial = false;
  let mayEndEarly = false;
  let partialSeen: string | undefined;
  if (bytes === undefined && parsed.kind === 'segment' && !o.stagedOnly) {
    const partialPath = `${source}.partial`;
    const receiving = join(receiveDir(o.root, o.systemId), `${o.fileName}.partial`);
    const found = (await exists(storage, partialPath)) ? partialPath : (await exists(storage, receiving)) ? receiving : undefined;
    if (found !== undefined && (o.allowPartial || (o.partialAtEnd && (await isEndOfWal(storage, parsed, o))))) {
      bytes = await readIfExists(storage, found);
      if (bytes !== undefined) {
        source = found;
        fromPartial = true;
        const segSize = meta?.walSegmentSize;
        // The server takes only whole-size segment files; the tail of an incomplete one reads as the end of WAL.
        if (segSize !== undefined && bytes.length < segSize) bytes = Buffer.concat([bytes, Buffer.alloc(segSize - bytes.length)]);
        // The backup's own copy of the same segment (streamed to its stop point) may reach further
        // than a receiver that lagged behind: the one holding more valid WAL is served.
        const staged = o.stagedDir === undefined ? undefined : await readIfExists(storage, join(o.stagedDir, o.fileName));
        if (staged !== undefined && isValidWalSegmentSize(staged.length) && validEnd(staged, parsed) > validEnd(bytes, parsed)) {
          bytes = staged;
          source = join(o.stagedDir!, o.fileName);
          fromPartial = false;
          mayEndEarly = true;
        }
      }
    } else partialSeen = found;
  }
  if (bytes === undefined && o.stagedDir !== undefined) {
    const staged = join(o.stagedDir, o.fileName);
    bytes = await readIfExists(storage, staged);
    if (bytes !== undefined) {
      source = staged;
      if (parsed.kind === 'segment') {
        const newest = (await storage.list(o.stagedDir).catch(() => [] as string[])).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort().at(-1);
        mayEndEarly = newest === o.fileName;
      }
    }
  }
  if (bytes === undefined) return partialSeen === undefined ? { status: 'absent' } : { status: 'absent', partial: partialSeen };
  if (parsed.kind === 'segment') {
    const segSize = meta?.walSegmentSize ?? bytes.length;
    const p = parseArchivableName(o.fileName, isValidWalSegmentSize(segSize) ? segSize : undefined);
    const segno = segmentNumberOfName(p as { log: number; seg: number }, segSize);
    const where = source.startsWith(o.stagedDir ?? '\0') ? `the backup's own WAL (${dirname(source)})` : dirname(source);
    const damaged = (problem: string): PgbaculaError =>
      new PgbaculaError('WAL_DAMAGED', `archived WAL segment ${o.fileName} in ${where} is damaged: ${problem}`, {
        hint:
          'It was not handed to PostgreSQL: recovery stops here instead of ending early without the WAL after it. ' +
          `Put an intact copy of ${o.fileName} at ${source} (another copy of the archive, e.g. restored from Bacula, or the source server's pg_wal if it still holds it) and start the server again, ` +
          'or restore to a point before it (pgbacula info --repo shows the recoverable window).',
      });
    const v = validateWalSegment(bytes, {
      segmentStart: walSegmentStart(segno, segSize),
      segmentSize: segSize,
      systemId: o.systemId,
      ...(meta?.xlogPageMagic === undefined ? {} : { magic: meta.xlogPageMagic }),
      ...(meta?.xlogPageMagic !== undefined && majorOfXlogPageMagic(meta.xlogPageMagic) !== undefined ? { major: majorOfXlogPageMagic(meta.xlogPageMagic)! } : {}),
      timeline: parsed.timeline,
      partial: fromPartial || mayEndEarly,
    });
    if (!v.ok) throw damaged(v.problems.slice(0, 3).join('; '));
    const judged = judgeSegment(bytes, { segmentStart: walSegmentStart(segno, segSize), segmentSize: segSize, partial: fromPartial || mayEndEarly });
    if (!judged.sound) throw damaged(judged.problem!);
    // A record continued from the previous segment is read by neither alone: check the seam.
    if (judged.scan.headContinuationEnd !== undefined && segno > 0n) {
      const prev = await predecessorOf(storage, o, parsed.timeline, segno, segSize);
      if (prev) {
        const prevStart = walSegmentStart(segno - 1n, segSize);
        const pj = judgeSegment(prev.bytes, { segmentStart: prevStart, segmentSize: segSize });
        const seam = pj.sound ? judgeSegmentJoin({ bytes: prev.bytes, scan: pj.scan, segmentStart: prevStart }, { bytes, scan: judged.scan, segmentStart: walSegmentStart(segno, segSize) }, segSize) : undefined;
        if (seam) throw damaged(`after ${prev.name}: ${seam}`);
      }
    }
  } else if (parsed.kind === 'history') {
    parseTimelineHistory(bytes, parsed.timeline);
  }
  const tmp = `${o.destPath}.pgbacula-${process.pid}`;
  try {
    const file = await storage.createFile(tmp, { mode: 0o600 });
    try {
      await file.write(bytes);
    } finally {
      await file.close();
    }
    await storage.rename(tmp, o.destPath);
  } catch (e) {
    await storage.removeFile(tmp).catch(() => undefined);
    throw ioError(e, `cannot write ${o.destPath}`);
  }
  return { status: 'fetched', source, bytes: bytes.length, fromPartial };
}

/** Where the valid records of a segment's bytes end (0 when none starts in it). */
function validEnd(bytes: Uint8Array, parsed: WalFileName): bigint {
  const segno = segmentNumberOfName(parsed as { log: number; seg: number }, bytes.length);
  return validRecordsEnd(bytes, walSegmentStart(segno, bytes.length), bytes.length);
}

/** The segment recovery read before `segno` of `timeline`: same timeline, else the one its history names. */
async function predecessorOf(storage: Storage, o: FetchOptions, timeline: number, segno: bigint, segSize: number): Promise<{ name: string; bytes: Uint8Array } | undefined> {
  const candidates: number[] = [timeline];
  if (timeline > 1) {
    const history = await readIfExists(storage, join(systemDir(o.root, o.systemId), timelineHistoryFileName(timeline)));
    if (history) {
      try {
        const t = timelineOfSegment(timelineSpans(parseTimelineHistory(history, timeline), timeline), segno - 1n, segSize);
        if (t !== timeline) candidates.push(t);
      } catch {
        // an unreadable history file is reported by verify and info; the seam stays unjudged here
      }
    }
  }
  for (const tli of candidates) {
    const name = walSegmentName(tli, segno - 1n, segSize);
    const bytes = (await readIfExists(storage, join(timelineDir(o.root, o.systemId, tli), name))) ?? (o.stagedDir === undefined ? undefined : await readIfExists(storage, join(o.stagedDir, name)));
    if (bytes !== undefined && bytes.length === segSize) return { name, bytes };
  }
  return undefined;
}
