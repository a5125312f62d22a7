/**
 * wal-push (archive_command): validate one file and archive it, enforcing the rules of
 * layout.ts — WAL of one system, one segment size and major per archive, history files first.
 */
import { basename } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { SUPPORTED_RANGE } from '../pg/versions.js';
import { hexLiteral } from '../format/hex.js';
import { majorOfXlogPageMagic, parseWalPageHeader, validateWalSegment, XLP_LONG_HEADER } from '../wal/page-header.js';
import { isValidWalSegmentSize, segmentNumberOfName, walSegmentStart, type WalFileName } from '../wal/segment.js';
import { parseTimelineHistory } from '../wal/timeline-history.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { ensureArchive, writeArchiveMeta } from './archive-meta.js';
import { ioError, isNotFound } from './archive-io.js';
import { ensureHistoryArchived } from './history-files.js';
import { archivedPath, parseArchivableName } from './layout.js';
import { listArchivedSystems } from './listing.js';
import { summarizeStoredSegment, warnOnStderr } from './segment-summary.js';
import { storeBytes, type StoreOutcome } from './store.js';

export interface PushOptions {
  readonly root: string;
  /** The file to archive (archive_command's %p, resolved against the working directory). */
  readonly sourcePath: string;
  /** The system the pushing server is (its pg_control); WAL of any other system is refused. */
  readonly expectedSystemId?: string | undefined;
  /** Data directory whose pg_wal holds history files to archive first when they are missing. */
  readonly pgdata?: string | undefined;
  /** A repository holds one system only: refuse a second one. */
  readonly singleSystem?: boolean;
  readonly warn?: (text: string) => void;
  /** Where the archive, the file and pg_wal are (default: the file system). */
  readonly storage?: Storage;
  /**
   * Write the segment's block summary next to it (default true; segment-summary.ts). A restore
   * staging WAL for recovery has no use for summaries and should not spend the CPU on them.
   */
  readonly summarize?: boolean;
}

export interface PushResult {
  readonly status: StoreOutcome['status'];
  readonly fileName: string;
  readonly kind: WalFileName['kind'];
  readonly systemId: string;
  readonly timeline: number;
  readonly path: string;
  readonly bytes: number;
  /** History files archived first (taken from pg_wal because the archive lacked them). */
  readonly historiesArchived: string[];
}

/**
 * Archive one file (wal-push). Validates it, enforces the rules above, stores it durably.
 * Returns 'identical' when the same bytes are already archived under that name.
 */
export async function pushWalFile(o: PushOptions): Promise<PushResult> {
  const storage = o.storage ?? posixStorage;
  const fileName = basename(o.sourcePath);
  const parsed0 = parseArchivableName(fileName);
  let bytes: Buffer;
  try {
    bytes = await storage.readFile(o.sourcePath);
  } catch (e) {
    if (isNotFound(e)) {
      throw new PgbaculaError('IO', `the file to archive ${o.sourcePath} does not exist`, { hint: 'archive_command passes %p relative to the data directory; run wal-push from there (the archiver does) or give an absolute path.' });
    }
    throw ioError(e, `cannot read ${o.sourcePath}`);
  }

  // Which system: the segment's own long header, checked against the pushing data directory.
  let headerSystemId: string | undefined;
  if (parsed0.kind === 'segment' || parsed0.kind === 'partial') {
    const h = parseWalPageHeader(bytes, 0);
    if (!h || (h.info & XLP_LONG_HEADER) === 0 || !h.long) {
      throw new PgbaculaError('WAL_CONFLICT', `${o.sourcePath} is not a WAL segment: its first page has no long header`, {
        hint: 'The file is damaged or is not WAL; check what archive_command is given.',
      });
    }
    headerSystemId = h.long.systemId.toString();
  }
  const systemId = await chooseSystem(storage, o, fileName, headerSystemId);

  const meta = await ensureArchive(o.root, systemId, storage);
  const historiesArchived: string[] = [];
  let parsed = parsed0;
  let segmentOf: { segno: bigint; segSize: number } | undefined;

  if (parsed.kind === 'segment' || parsed.kind === 'partial') {
    const h = parseWalPageHeader(bytes, 0)!;
    const segSize = h.long!.segmentSize;
    if (!isValidWalSegmentSize(segSize)) {
      throw new PgbaculaError('WAL_CONFLICT', `${o.sourcePath} claims a WAL segment size of ${segSize} bytes`, { hint: 'The file is damaged or is not WAL.' });
    }
    parsed = parseArchivableName(fileName, segSize);
    const major = majorOfXlogPageMagic(h.magic);
    if (major === undefined) {
      throw new PgbaculaError('WAL_CONFLICT', `${fileName} has page magic ${hexLiteral(h.magic, 0)}, which is not ${SUPPORTED_RANGE}`, {
        hint: 'The file is damaged, or written by an unsupported PostgreSQL version.',
      });
    }
    if (meta.walSegmentSize !== undefined && meta.walSegmentSize !== segSize) {
      throw new PgbaculaError('WAL_CONFLICT', `${fileName} uses ${segSize}-byte segments but the archive of system ${systemId} in ${o.root} holds ${meta.walSegmentSize}-byte segments`, {
        hint: 'One system identifier has one segment size; this file does not belong to this archive.',
      });
    }
    if (meta.xlogPageMagic !== undefined && meta.xlogPageMagic !== h.magic) {
      const had = majorOfXlogPageMagic(meta.xlogPageMagic);
      throw new PgbaculaError('WAL_CONFLICT', `${fileName} was written by PostgreSQL ${major} but the archive of system ${systemId} in ${o.root} holds WAL of PostgreSQL ${had ?? 'unknown'}`, {
        hint: 'After a major upgrade archive into a new directory (a new repository or spool) and take a new base backup.',
      });
    }
    const segno = segmentNumberOfName(parsed as { log: number; seg: number }, segSize);
    segmentOf = { segno, segSize };
    const v = validateWalSegment(bytes, {
      segmentStart: walSegmentStart(segno, segSize),
      segmentSize: segSize,
      systemId,
      magic: h.magic,
      major,
      timeline: parsed.timeline,
      partial: parsed.kind === 'partial',
    });
    if (!v.ok) {
      throw new PgbaculaError('WAL_CONFLICT', `${fileName} refused: ${v.problems.slice(0, 3).join('; ')}`, {
        hint: 'The file is damaged, recycled, or belongs to another system; it was not archived. Check what archive_command is given and the server log.',
      });
    }
    if (meta.walSegmentSize === undefined || meta.xlogPageMagic === undefined) {
      await writeArchiveMeta(o.root, { ...meta, walSegmentSize: segSize, xlogPageMagic: h.magic, pgMajor: major }, storage);
    }
  } else if (parsed.kind === 'history') {
    parseTimelineHistory(bytes, parsed.timeline);
  } else if (!/^START WAL LOCATION: /m.test(bytes.toString('latin1'))) {
    throw new PgbaculaError('WAL_CONFLICT', `${fileName} is not a backup history file (no START WAL LOCATION line)`, { hint: 'The file is damaged or misnamed.' });
  }

  if (parsed.kind !== 'history' && parsed.timeline > 1) {
    historiesArchived.push(...(await ensureHistoryArchived(storage, o.root, systemId, parsed.timeline, o.pgdata, fileName)));
  }

  const dest = archivedPath(o.root, systemId, parsed);
  const policy = parsed.kind === 'segment' || parsed.kind === 'history' ? 'refuse' : 'aside';
  const outcome = await storeBytes(storage, o.root, systemId, dest, bytes, policy, o.sourcePath);
  if (parsed.kind === 'segment' && segmentOf && o.summarize !== false) {
    // After the segment is durably stored: a summary is an optimization, never a reason to fail.
    await summarizeStoredSegment({ storage, root: o.root, systemId, timeline: parsed.timeline, segno: segmentOf.segno, segmentSize: segmentOf.segSize, bytes, warn: o.warn ?? warnOnStderr });
  }
  if (outcome.status === 'kept-aside') {
    o.warn?.(`${fileName} differs from the copy already archived; the new one was kept as ${outcome.path} (recovery never reads ${parsed.kind === 'partial' ? '.partial' : '.backup'} files; two promotions from the same timeline produce such pairs)`);
  }
  return { status: outcome.status, fileName, kind: parsed.kind, systemId, timeline: parsed.timeline, path: outcome.path, bytes: bytes.length, historiesArchived };
}

async function chooseSystem(storage: Storage, o: PushOptions, fileName: string, headerSystemId: string | undefined): Promise<string> {
  const systems = await listArchivedSystems(o.root, storage);
  if (o.expectedSystemId !== undefined && headerSystemId !== undefined && headerSystemId !== o.expectedSystemId) {
    throw new PgbaculaError('WAL_CONFLICT', `${fileName} belongs to database system ${headerSystemId}, not to system ${o.expectedSystemId} of the data directory that archives it`, {
      hint: 'A WAL file of another cluster was handed to this server\'s archive_command; it was not archived. Remove it from pg_wal if it was copied there by mistake.',
    });
  }
  const systemId = o.expectedSystemId ?? headerSystemId ?? (systems.length === 1 ? systems[0] : undefined);
  if (systemId === undefined) {
    throw new PgbaculaError('USAGE', `cannot tell which database system ${fileName} belongs to`, {
      hint: 'Run wal-push from the data directory of the server (archive_command does) or name it with --pgdata.',
    });
  }
  if (o.singleSystem) {
    const other = systems.find((s) => s !== systemId);
    if (other !== undefined) {
      throw new PgbaculaError('WAL_CONFLICT', `${fileName} belongs to database system ${systemId}, but the repository's WAL archive ${o.root} holds WAL of system ${other}`, {
        hint: 'A repository holds one cluster: give this cluster its own repository (or use a spool directory, which keeps one directory per system).',
      });
    }
  }
  return systemId;
}
