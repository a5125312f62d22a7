/**
 * The WAL archive (spool) that wal-push, wal-receive and wal-fetch share, and that restore and
 * `info` read. One layout for a local spool and for a standalone repository:
 *
 *   ROOT = --repo DIR → DIR/wal        ROOT = otherwise → wal_spool (default /var/lib/pgbacula/wal-spool)
 *
 *   ROOT/<system-identifier>/archive.json                   what the archive holds (system, segment size, major)
 *   ROOT/<system-identifier>/<TLI>.history                  timeline history files, e.g. 00000002.history
 *   ROOT/<system-identifier>/<TLI>/<segment>                complete segments, e.g. 00000002/000000020000000000000019
 *   ROOT/<system-identifier>/<TLI>/<segment>.partial        incomplete segments (a promotion's last old-timeline
 *                                                           segment; the end of a timeline streamed by wal-receive)
 *   ROOT/<system-identifier>/<TLI>/<segment>.<off>.backup   backup history files (informational)
 *   ROOT/<system-identifier>/aside/<name>.<sha256:16>       a different .partial/.backup under an existing name
 *   ROOT/<system-identifier>/.receive/                      wal-receive's working directory (its open .partial, lock)
 *
 * `<TLI>` is the timeline in eight upper-case hexadecimal digits, as in WAL file names:
 * timelines are hexadecimal everywhere. Every file is written to a temporary name in its final
 * directory, fsynced, hard-linked under its final name (link(2) never replaces an existing file,
 * so two writers cannot overwrite each other), and the directory fsynced.
 *
 * Rules enforced here (what archive_command and restore_command require of an archive):
 * - a segment is validated before it is stored: size, long page header (system identifier, segment
 *   size, the major's XLOG_PAGE_MAGIC), every page address; WAL of another system is refused;
 * - the history file of timeline N > 1 is archived before any WAL of timeline N (taken from the
 *   data directory's pg_wal when it is missing, refused otherwise);
 * - an existing segment or history file is never replaced by different bytes (WAL_CONFLICT); an
 *   identical copy is success (idempotent archive_command). A different `.partial` or `.backup`
 *   under an existing name — two promotions from the same timeline legitimately produce that — is
 *   kept aside with a warning rather than blocking the archiver: recovery never reads them;
 * - a `.partial` is never served as a complete segment.
 *
 * Which system a file belongs to: the data directory of the server that pushes it is the
 * authority (archive_command runs with the data directory as its working directory, so
 * `global/pg_control` is at hand); a repository holds the WAL of one system only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PgbaculaError } from '../errors.js';
import { fsyncPath } from '../os/durable.js';
import { exists } from '../os/exists.js';
import { ioError as osIoError, isNotFound } from '../os/io-error.js';
import { shellQuote } from '../os/shell-quote.js';
import { SUPPORTED_MAJORS, SUPPORTED_RANGE, versionFacts } from '../pg/versions.js';
import { hexLiteral } from '../format/hex.js';
import { majorOfXlogPageMagic, parseWalPageHeader, validateWalSegment, XLP_LONG_HEADER } from '../wal/page-header.js';
import {
  hex8,
  isValidWalSegmentSize,
  parseWalFileName,
  segmentNumberOfName,
  timelineHistoryFileName,
  walSegmentName,
  walSegmentStart,
  type WalFileName,
} from '../wal/segment.js';
import { judgeSegment, judgeSegmentJoin } from '../wal/integrity.js';
import { parseTimelineHistory, timelineSpans, type TimelineHistoryEntry } from '../wal/timeline-history.js';
import { timelineOfSegment } from './window.js';

// ---------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------

export const ARCHIVE_META_FILE = 'archive.json';
export const ARCHIVE_FORMAT = 1;
export const ASIDE_DIR = 'aside';
export const RECEIVE_DIR = '.receive';
const FILE_MODE = 0o640;
const DIR_MODE = 0o750;

/** The archive root: `<repo>/wal` for a repository, else the spool directory. */
export function walArchiveRoot(o: { readonly repo?: string | undefined; readonly spool?: string | undefined }): string {
  if (o.repo !== undefined) return join(o.repo, 'wal');
  if (o.spool !== undefined) return o.spool;
  throw new PgbaculaError('INTERNAL', 'a WAL archive needs a repository or a spool directory');
}

/** `ROOT/<system-identifier>` */
export function systemDir(root: string, systemId: string): string {
  assertSystemId(systemId);
  return join(root, systemId);
}

/** `ROOT/<system-identifier>/<TLI hex>` */
export function timelineDir(root: string, systemId: string, timeline: number): string {
  return join(systemDir(root, systemId), hex8(timeline));
}

export function receiveDir(root: string, systemId: string): string {
  return join(systemDir(root, systemId), RECEIVE_DIR);
}

function assertSystemId(systemId: string): void {
  if (!/^[1-9]\d{0,19}$/.test(systemId)) throw new PgbaculaError('INTERNAL', `invalid system identifier "${systemId}"`);
}

/** Where an archived file of this name lives (history files at the system level). */
export function archivedPath(root: string, systemId: string, parsed: WalFileName): string {
  if (parsed.kind === 'history') return join(systemDir(root, systemId), parsed.name);
  return join(timelineDir(root, systemId, parsed.timeline), parsed.name);
}

// ---------------------------------------------------------------------------------------------
// archive.json
// ---------------------------------------------------------------------------------------------

export interface ArchiveMeta {
  readonly format: number;
  readonly systemIdentifier: string;
  /** Learned from the first segment stored (absent while only history files are there). */
  readonly walSegmentSize?: number;
  readonly xlogPageMagic?: number;
  readonly pgMajor?: number;
  readonly created: string;
}

export async function readArchiveMeta(root: string, systemId: string): Promise<ArchiveMeta | undefined> {
  const path = join(systemDir(root, systemId), ARCHIVE_META_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw ioError(e, `cannot read ${path}`);
  }
  let meta: ArchiveMeta;
  try {
    meta = JSON.parse(text) as ArchiveMeta;
  } catch {
    throw new PgbaculaError('REPOSITORY', `${path} is not valid JSON`, { hint: 'Restore the file from a copy, or remove it: the next wal-push rewrites it from the WAL it stores.' });
  }
  if (meta.format !== ARCHIVE_FORMAT || meta.systemIdentifier !== systemId) {
    throw new PgbaculaError('REPOSITORY', `${path} describes format ${String(meta.format)} of system ${String(meta.systemIdentifier)}, expected format ${ARCHIVE_FORMAT} of system ${systemId}`, {
      hint: 'The directory was copied or edited by hand; put each system identifier in its own directory.',
    });
  }
  return meta;
}

async function writeArchiveMeta(root: string, meta: ArchiveMeta): Promise<void> {
  const dir = systemDir(root, meta.systemIdentifier);
  const path = join(dir, ARCHIVE_META_FILE);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await open(tmp, 'w', FILE_MODE);
    try {
      await fh.writeFile(JSON.stringify(meta, null, 1) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await fsyncDir(dir);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw ioError(e, `cannot write ${path}`);
  }
}

/** System identifiers that have a directory under root (sorted). */
export async function listArchivedSystems(root: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (e) {
    if (isNotFound(e)) return [];
    throw ioError(e, `cannot list the WAL archive ${root}`);
  }
  return names.filter((n) => /^[1-9]\d{0,19}$/.test(n)).sort();
}

// ---------------------------------------------------------------------------------------------
// pg_control: which system a data directory is
// ---------------------------------------------------------------------------------------------

const PG_CONTROL_VERSIONS = new Set(SUPPORTED_MAJORS.map((m) => versionFacts(m).pgControlVersion));

/**
 * The system identifier in `<pgdata>/global/pg_control`, or undefined when there is no such
 * file (not a data directory). Only the first 12 bytes are read: the identifier (offset 0) is
 * written once by initdb and never changes, so a read concurrent with a pg_control update
 * cannot tear it.
 */
export async function dataDirectorySystemId(pgdata: string): Promise<string | undefined> {
  const path = join(pgdata, 'global', 'pg_control');
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if (isNotFound(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw ioError(e, `cannot read ${path}`);
  }
  try {
    const buf = Buffer.alloc(12);
    const { bytesRead } = await fh.read(buf, 0, 12, 0);
    const version = bytesRead === 12 ? buf.readUInt32LE(8) : 0;
    if (!PG_CONTROL_VERSIONS.has(version)) {
      throw new PgbaculaError('PARAM_INVALID', `${path} is not the pg_control file of ${SUPPORTED_RANGE} (pg_control_version ${version})`, {
        hint: 'Run wal-push/wal-fetch from the data directory of the server (archive_command and restore_command do), or name it with --pgdata.',
      });
    }
    const id = buf.readBigUInt64LE(0);
    return id === 0n ? undefined : id.toString();
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Storing
// ---------------------------------------------------------------------------------------------

export type StoreOutcome =
  | { readonly status: 'stored'; readonly path: string }
  | { readonly status: 'identical'; readonly path: string }
  | { readonly status: 'kept-aside'; readonly path: string; readonly existing: string };

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

/** Parse a file name the archive accepts; anything else is refused naming the accepted forms. */
export function parseArchivableName(name: string, segSize?: number): WalFileName {
  const parsed = parseWalFileName(name, segSize);
  if (!parsed) {
    throw new PgbaculaError('PARAM_INVALID', `"${name}" is not a WAL file name`, {
      hint: 'wal-push takes WAL segments (24 upper-case hexadecimal digits), .partial segments, NNNNNNNN.history and .backup files: use archive_command = \'pgbacula wal-push %p\'.',
    });
  }
  return parsed;
}

/**
 * Archive one file (wal-push). Validates it, enforces the rules above, stores it durably.
 * Returns 'identical' when the same bytes are already archived under that name.
 */
export async function pushWalFile(o: PushOptions): Promise<PushResult> {
  const fileName = basename(o.sourcePath);
  const parsed0 = parseArchivableName(fileName);
  let bytes: Buffer;
  try {
    bytes = await readFile(o.sourcePath);
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
  const systemId = await chooseSystem(o, fileName, headerSystemId);

  const meta = await ensureArchive(o.root, systemId);
  const historiesArchived: string[] = [];
  let parsed = parsed0;

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
      await writeArchiveMeta(o.root, { ...meta, walSegmentSize: segSize, xlogPageMagic: h.magic, pgMajor: major });
    }
  } else if (parsed.kind === 'history') {
    parseTimelineHistory(bytes, parsed.timeline);
  } else if (!/^START WAL LOCATION: /m.test(bytes.toString('latin1'))) {
    throw new PgbaculaError('WAL_CONFLICT', `${fileName} is not a backup history file (no START WAL LOCATION line)`, { hint: 'The file is damaged or misnamed.' });
  }

  if (parsed.kind !== 'history' && parsed.timeline > 1) {
    historiesArchived.push(...(await ensureHistoryArchived(o.root, systemId, parsed.timeline, o.pgdata, fileName)));
  }

  const dest = archivedPath(o.root, systemId, parsed);
  const policy = parsed.kind === 'segment' || parsed.kind === 'history' ? 'refuse' : 'aside';
  const outcome = await storeBytes(o.root, systemId, dest, bytes, policy, o.sourcePath);
  if (outcome.status === 'kept-aside') {
    o.warn?.(`${fileName} differs from the copy already archived; the new one was kept as ${outcome.path} (recovery never reads ${parsed.kind === 'partial' ? '.partial' : '.backup'} files; two promotions from the same timeline produce such pairs)`);
  }
  return { status: outcome.status, fileName, kind: parsed.kind, systemId, timeline: parsed.timeline, path: outcome.path, bytes: bytes.length, historiesArchived };
}

async function chooseSystem(o: PushOptions, fileName: string, headerSystemId: string | undefined): Promise<string> {
  const systems = await listArchivedSystems(o.root);
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

/** Create ROOT/<sysid> and its archive.json when missing; return the metadata. */
async function ensureArchive(root: string, systemId: string): Promise<ArchiveMeta> {
  const existing = await readArchiveMeta(root, systemId);
  if (existing) return existing;
  await ensureDir(systemDir(root, systemId));
  const meta: ArchiveMeta = { format: ARCHIVE_FORMAT, systemIdentifier: systemId, created: new Date().toISOString() };
  await writeArchiveMeta(root, meta);
  return meta;
}

/**
 * The history file of `timeline` must be archived before WAL of that timeline. When it is
 * missing, take it (and missing ancestors) from the data directory's pg_wal, where the server
 * keeps history files forever; refuse when it is not there either.
 */
async function ensureHistoryArchived(root: string, systemId: string, timeline: number, pgdata: string | undefined, forFile: string): Promise<string[]> {
  const name = timelineHistoryFileName(timeline);
  const dest = join(systemDir(root, systemId), name);
  if (await exists(dest, ioError)) return [];
  const fromPgWal = pgdata === undefined ? undefined : await readIfExists(join(pgdata, 'pg_wal', name));
  if (fromPgWal === undefined) {
    throw new PgbaculaError('WAL_GAP', `${forFile} of timeline ${hex8(timeline)} refused: ${name} is not archived in ${systemDir(root, systemId)}`, {
      hint: `Archive ${name} first (PostgreSQL does so when archive_command is set before the promotion): wal-push pg_wal/${name}, then retry. Recovery to timeline ${hex8(timeline)} is impossible without it.`,
    });
  }
  const entries = parseTimelineHistory(fromPgWal, timeline);
  const archived: string[] = [];
  // Ancestors first, when the data directory still has them (it keeps every history file).
  for (const e of entries) {
    if (e.parentTimeline < 2) continue;
    const an = timelineHistoryFileName(e.parentTimeline);
    const ap = join(systemDir(root, systemId), an);
    if (await exists(ap, ioError)) continue;
    const content = await readIfExists(join(pgdata!, 'pg_wal', an));
    if (content === undefined) continue;
    parseTimelineHistory(content, e.parentTimeline);
    await storeBytes(root, systemId, ap, content, 'refuse', join(pgdata!, 'pg_wal', an));
    archived.push(an);
  }
  await storeBytes(root, systemId, dest, fromPgWal, 'refuse', join(pgdata!, 'pg_wal', name));
  archived.push(name);
  return archived;
}

/** Store a history file fetched from the server (wal-receive); identical copies are fine. */
export async function storeHistoryFile(root: string, systemId: string, timeline: number, content: Uint8Array, from: string): Promise<StoreOutcome> {
  parseTimelineHistory(content, timeline);
  await ensureArchive(root, systemId);
  const dest = join(systemDir(root, systemId), timelineHistoryFileName(timeline));
  return storeBytes(root, systemId, dest, Buffer.from(content.buffer, content.byteOffset, content.byteLength), 'refuse', from);
}

export async function isHistoryArchived(root: string, systemId: string, timeline: number): Promise<boolean> {
  return exists(join(systemDir(root, systemId), timelineHistoryFileName(timeline)), ioError);
}

/**
 * Move a segment file that wal-receive completed (fsynced, in RECEIVE_DIR on the same file
 * system) into the archive without copying: link under the final name (never replacing), then
 * remove the source. A `.partial` name goes to its timeline directory, kept aside on conflict.
 */
export async function publishReceivedFile(root: string, systemId: string, sourcePath: string, meta: { segmentSize: number; magic: number }): Promise<StoreOutcome> {
  const name = basename(sourcePath);
  const parsed = parseArchivableName(name, meta.segmentSize);
  if (parsed.kind !== 'segment' && parsed.kind !== 'partial') throw new PgbaculaError('INTERNAL', `publishReceivedFile: ${name} is not a segment`);
  const m = await ensureArchive(root, systemId);
  if (m.walSegmentSize === undefined || m.xlogPageMagic === undefined) {
    const major = majorOfXlogPageMagic(meta.magic);
    await writeArchiveMeta(root, { ...m, walSegmentSize: meta.segmentSize, xlogPageMagic: meta.magic, ...(major === undefined ? {} : { pgMajor: major }) });
  } else if (m.walSegmentSize !== meta.segmentSize || m.xlogPageMagic !== meta.magic) {
    throw new PgbaculaError('WAL_CONFLICT', `the archive of system ${systemId} in ${root} holds WAL of another segment size or major than the server streams`, {
      hint: 'After a major upgrade archive into a new directory and take a new base backup.',
    });
  }
  if (parsed.timeline > 1 && !(await isHistoryArchived(root, systemId, parsed.timeline))) {
    throw new PgbaculaError('WAL_GAP', `${name} of timeline ${hex8(parsed.timeline)} refused: ${timelineHistoryFileName(parsed.timeline)} is not archived`, {
      hint: 'The history file is fetched from the server before streaming a timeline; check the log for why it failed.',
    });
  }
  const dest = archivedPath(root, systemId, parsed);
  await ensureDir(dirname(dest));
  try {
    await link(sourcePath, dest);
    await fsyncDir(dirname(dest));
    await unlink(sourcePath);
    await fsyncDir(dirname(sourcePath));
    return { status: 'stored', path: dest };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
      if (!isLinkUnsupported(e)) throw ioError(e, `cannot link ${sourcePath} to ${dest}`);
      // No hard links on this file system: copy through the ordinary path.
    }
  }
  const bytes = await readFile(sourcePath);
  const outcome = await storeBytes(root, systemId, dest, bytes, parsed.kind === 'segment' ? 'refuse' : 'aside', sourcePath);
  await unlink(sourcePath);
  await fsyncDir(dirname(sourcePath));
  return outcome;
}

/**
 * temp + fsync + link (no replace) + fsync dir. When dest exists: identical → fsync it again
 * (an earlier run may have died before its directory fsync) and report 'identical'; different →
 * WAL_CONFLICT ('refuse') or a copy under ASIDE_DIR ('aside').
 */
async function storeBytes(root: string, systemId: string, dest: string, bytes: Buffer, policy: 'refuse' | 'aside', from: string): Promise<StoreOutcome> {
  const dir = dirname(dest);
  const existing = await readIfExists(dest);
  if (existing !== undefined) return resolveExisting(root, systemId, dest, existing, bytes, policy, from);
  await ensureDir(dir);
  const tmp = join(dir, `.${basename(dest)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', FILE_MODE);
    try {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, done);
        done += bytesWritten;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    let linked = true;
    try {
      await link(tmp, dest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        // Another writer (wal-receive, a concurrent push) got there first.
        const other = await readFile(dest);
        return await resolveExisting(root, systemId, dest, other, bytes, policy, from);
      }
      if (!isLinkUnsupported(e)) throw e;
      linked = false;
      await rename(tmp, dest); // file systems without hard links: the existence check above must do
    }
    if (linked) await unlink(tmp);
    await fsyncDir(dir);
    return { status: 'stored', path: dest };
  } catch (e) {
    if (e instanceof PgbaculaError) throw e;
    throw ioError(e, `cannot store ${basename(dest)} in ${dir}`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function resolveExisting(root: string, systemId: string, dest: string, existing: Buffer, bytes: Buffer, policy: 'refuse' | 'aside', from: string): Promise<StoreOutcome> {
  if (existing.equals(bytes)) {
    try {
      const fh = await open(dest, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsyncDir(dirname(dest));
    } catch (e) {
      throw ioError(e, `cannot fsync ${dest}`);
    }
    return { status: 'identical', path: dest };
  }
  const name = basename(dest);
  if (policy === 'refuse') {
    throw new PgbaculaError('WAL_CONFLICT', `${name} is already archived in ${dirname(dest)} with different content (${existing.length} bytes, sha256 ${sha16(existing)}; offered: ${bytes.length} bytes, sha256 ${sha16(bytes)}, from ${from})`, {
      hint: name.endsWith('.history')
        ? 'Two different histories claim this timeline: another server (a restored copy?) archives into the same place. Give each cluster its own archive; never delete archived history files.'
        : 'Another server with the same system identifier (a restored copy, an old primary after a failover?) archives into the same place, or the archived copy is damaged. The archived file was kept; give that server its own archive, and compare both copies (pg_waldump) before removing either.',
    });
  }
  const asideDir = join(systemDir(root, systemId), ASIDE_DIR);
  const asidePath = join(asideDir, `${name}.${sha16(bytes)}`);
  const kept = await storeBytes(root, systemId, asidePath, bytes, 'refuse', from);
  return { status: 'kept-aside', path: kept.path, existing: dest };
}

// ---------------------------------------------------------------------------------------------
// Fetching (restore_command)
// ---------------------------------------------------------------------------------------------

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
  /** Serve from stagedDir only: there is no archive (root is not read). */
  readonly stagedOnly?: boolean;
}

/**
 * Copy an archived file to destPath (temp name + rename, so the server never sees half a file).
 * Absent files are a normal answer ('absent'), not an error: the server probes for history files
 * and for the segment after the last one. A segment whose records do not hold up (src/wal/
 * integrity.ts) is a WAL_DAMAGED error: served, recovery would take its first bad record for the
 * end of WAL and promote without everything after it.
 */
export async function fetchWalFile(o: FetchOptions): Promise<FetchResult> {
  const parsed = parseArchivableName(o.fileName);
  if (parsed.kind === 'partial') {
    throw new PgbaculaError('PARAM_INVALID', `${o.fileName} is an incomplete segment: wal-fetch never serves a .partial file`, {
      hint: 'PostgreSQL never asks for .partial names; to use one, copy it by hand into pg_wal under its 24-digit name, knowing it ends early.',
    });
  }
  const meta = o.stagedOnly ? undefined : await readArchiveMeta(o.root, o.systemId);
  let source = archivedPath(o.root, o.systemId, parsed);
  let bytes = o.stagedOnly ? undefined : await readIfExists(source);
  let fromPartial = false;
  let mayEndEarly = false;
  let partialSeen: string | undefined;
  if (bytes === undefined && parsed.kind === 'segment' && !o.stagedOnly) {
    const partialPath = `${source}.partial`;
    const receiving = join(receiveDir(o.root, o.systemId), `${o.fileName}.partial`);
    const found = (await exists(partialPath, ioError)) ? partialPath : (await exists(receiving, ioError)) ? receiving : undefined;
    if (found !== undefined && o.allowPartial) {
      bytes = await readIfExists(found);
      if (bytes !== undefined) {
        source = found;
        fromPartial = true;
      }
    } else partialSeen = found;
  }
  if (bytes === undefined && o.stagedDir !== undefined) {
    const staged = join(o.stagedDir, o.fileName);
    bytes = await readIfExists(staged);
    if (bytes !== undefined) {
      source = staged;
      if (parsed.kind === 'segment') {
        const newest = (await readdir(o.stagedDir).catch(() => [] as string[])).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort().at(-1);
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
      const prev = await predecessorOf(o, parsed.timeline, segno, segSize);
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
    const fh = await open(tmp, 'w', 0o600);
    try {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, done);
        done += bytesWritten;
      }
    } finally {
      await fh.close();
    }
    await rename(tmp, o.destPath);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw ioError(e, `cannot write ${o.destPath}`);
  }
  return { status: 'fetched', source, bytes: bytes.length, fromPartial };
}

/** The segment recovery read before `segno` of `timeline`: same timeline, else the one its history names. */
async function predecessorOf(o: FetchOptions, timeline: number, segno: bigint, segSize: number): Promise<{ name: string; bytes: Uint8Array } | undefined> {
  const candidates: number[] = [timeline];
  if (timeline > 1) {
    const history = await readIfExists(join(systemDir(o.root, o.systemId), timelineHistoryFileName(timeline)));
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
    const bytes = (await readIfExists(join(timelineDir(o.root, o.systemId, tli), name))) ?? (o.stagedDir === undefined ? undefined : await readIfExists(join(o.stagedDir, name)));
    if (bytes !== undefined && bytes.length === segSize) return { name, bytes };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------------

export interface ArchivedSegment {
  /** File name as stored (with `.partial` for partials). */
  readonly name: string;
  /** The 24-digit segment name. */
  readonly segmentName: string;
  readonly timeline: number;
  readonly segno: bigint;
  readonly path: string;
}

export interface ArchivedHistory {
  readonly timeline: number;
  readonly name: string;
  readonly path: string;
  /** Undefined when the file does not parse (reported in `problems`). */
  readonly entries: TimelineHistoryEntry[] | undefined;
}

export interface WalArchiveListing {
  readonly root: string;
  readonly systemId: string;
  readonly dir: string;
  readonly meta: ArchiveMeta | undefined;
  /** From archive.json (16 MiB when nothing but history files is archived yet). */
  readonly segmentSize: number;
  /** Complete segments, sorted by segment number then timeline. */
  readonly segments: ArchivedSegment[];
  /** `.partial` files in the timeline directories (sorted like segments). */
  readonly partials: ArchivedSegment[];
  readonly histories: ArchivedHistory[];
  readonly backupHistoryFiles: string[];
  readonly aside: string[];
  /** wal-receive's open segment (`.receive/<name>.partial`), the newest WAL received. */
  readonly receiving: ArchivedSegment | undefined;
  /** Complete segments still in `.receive/` (a receiver stopped between completing and publishing). */
  readonly receivedUnpublished: ArchivedSegment[];
  readonly problems: string[];
}

const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

function bySegment(a: ArchivedSegment, b: ArchivedSegment): number {
  return a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : a.timeline - b.timeline;
}

/** Everything archived for one system, from the directory listing (no file is read but history files). */
export async function listWalArchive(root: string, systemId: string): Promise<WalArchiveListing> {
  const dir = systemDir(root, systemId);
  const meta = await readArchiveMeta(root, systemId);
  const segSize = meta?.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;
  const segments: ArchivedSegment[] = [];
  const partials: ArchivedSegment[] = [];
  const histories: ArchivedHistory[] = [];
  const backupHistoryFiles: string[] = [];
  const receivedUnpublished: ArchivedSegment[] = [];
  const problems: string[] = [];
  let receiving: ArchivedSegment | undefined;
  let aside: string[] = [];
  let top: string[];
  try {
    top = await readdir(dir);
  } catch (e) {
    if (isNotFound(e)) top = [];
    else throw ioError(e, `cannot list ${dir}`);
  }
  const segmentOf = (name: string, path: string): ArchivedSegment | undefined => {
    const p = parseWalFileName(name, segSize);
    if (!p || (p.kind !== 'segment' && p.kind !== 'partial')) return undefined;
    return { name, segmentName: p.segmentName, timeline: p.timeline, segno: segmentNumberOfName(p, segSize), path };
  };
  for (const name of top.sort()) {
    const path = join(dir, name);
    if (name === ARCHIVE_META_FILE || name.includes('.tmp-')) continue;
    if (name === ASIDE_DIR) {
      aside = (await readdir(path).catch(() => [] as string[])).filter((n) => !n.includes('.tmp-')).sort();
      continue;
    }
    if (name === RECEIVE_DIR) {
      for (const r of (await readdir(path).catch(() => [] as string[])).sort()) {
        const s = segmentOf(r, join(path, r));
        if (!s) continue;
        if (r.endsWith('.partial')) {
          if (!receiving || bySegment(s, receiving) > 0) receiving = s;
        } else receivedUnpublished.push(s);
      }
      continue;
    }
    const p = parseWalFileName(name);
    if (p?.kind === 'history') {
      let entries: TimelineHistoryEntry[] | undefined;
      try {
        entries = parseTimelineHistory(await readFile(path), p.timeline);
      } catch (e) {
        problems.push(`${name}: ${(e as Error).message}`);
      }
      histories.push({ timeline: p.timeline, name, path, entries });
      continue;
    }
    if (/^[0-9A-F]{8}$/.test(name) && name !== '00000000') {
      const tli = parseInt(name, 16);
      for (const f of (await readdir(path).catch(() => [] as string[])).sort()) {
        if (f.startsWith('.')) continue; // temporary files
        const fp = join(path, f);
        const q = parseWalFileName(f, segSize);
        if (q?.kind === 'backup') {
          backupHistoryFiles.push(f);
          continue;
        }
        const s = segmentOf(f, fp);
        if (!s) {
          problems.push(`${name}/${f}: not a WAL file name for ${segSize}-byte segments`);
          continue;
        }
        if (s.timeline !== tli) {
          problems.push(`${name}/${f}: a file of timeline ${hex8(s.timeline)} in the directory of timeline ${name}`);
          continue;
        }
        (f.endsWith('.partial') ? partials : segments).push(s);
      }
      continue;
    }
    problems.push(`${name}: unexpected entry`);
  }
  segments.sort(bySegment);
  partials.sort(bySegment);
  histories.sort((a, b) => a.timeline - b.timeline);
  return { root, systemId, dir, meta, segmentSize: segSize, segments, partials, histories, backupHistoryFiles, aside, receiving, receivedUnpublished, problems };
}

// ---------------------------------------------------------------------------------------------
// Command lines for postgresql.conf
// ---------------------------------------------------------------------------------------------

/** A path inside archive_command/restore_command: `%` must be doubled. */
function commandArg(s: string): string {
  return shellQuote(s).replace(/%/g, '%%');
}

/** The installed CLI: node and bin/pgbacula.js of this checkout or package (from dist/ or src/). */
export function pgbaculaInvocation(): string[] {
  const candidates = ['../../../bin/pgbacula.js', '../../bin/pgbacula.js'].map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
  return [process.execPath, candidates.find((p) => existsSync(p)) ?? candidates[0]!];
}

/**
 * `restore_command` value (before quoting for postgresql.conf) that serves this archive, and
 * after it a backup's own staged WAL (`staged`; alone when there is no archive). One command for
 * both: a shell fallback (`wal-fetch … || cp …`) would also run after wal-fetch refused a
 * damaged segment.
 */
export function restoreCommandLine(o: { readonly repo?: string; readonly spool?: string; readonly staged?: string }): string {
  const where = o.repo !== undefined ? ['--repo', o.repo] : o.spool !== undefined ? ['--wal-spool', o.spool] : [];
  const staged = o.staged === undefined ? [] : ['--staged', o.staged];
  return [...pgbaculaInvocation(), 'wal-fetch', ...where, ...staged].map(commandArg).join(' ') + ' %f %p';
}

/** `archive_command` value that feeds this archive. */
export function archiveCommandLine(o: { readonly repo?: string; readonly spool?: string }): string {
  const where = o.repo !== undefined ? ['--repo', o.repo] : ['--wal-spool', o.spool!];
  return [...pgbaculaInvocation(), 'wal-push', ...where].map(commandArg).join(' ') + ' %p';
}

// ---------------------------------------------------------------------------------------------
// Small file helpers
// ---------------------------------------------------------------------------------------------

function sha16(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 16);
}

function isLinkUnsupported(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'ENOSYS';
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw ioError(e, `cannot read ${path}`);
  }
}

/** fsync a directory (a rename or link inside it becomes durable). */
export const fsyncDir = fsyncPath;

/** mkdir -p, fsyncing the parent of each directory created so the new entries are durable. */
async function ensureDir(dir: string): Promise<void> {
  try {
    await stat(dir);
    return;
  } catch (e) {
    if (!isNotFound(e)) throw ioError(e, `cannot check ${dir}`);
  }
  let first: string | undefined;
  try {
    first = await mkdir(dir, { recursive: true, mode: DIR_MODE });
  } catch (e) {
    throw ioError(e, `cannot create ${dir}`);
  }
  if (first === undefined) return; // created concurrently by another writer
  const created: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    created.unshift(d);
    if (d === first || d === dirname(d)) break;
  }
  for (const d of created) await fsyncDir(dirname(d));
}

export function ioError(e: unknown, what: string): PgbaculaError {
  return osIoError(e, what, (code) =>
    code === 'EACCES' || code === 'EPERM'
      ? 'The archive must be writable by the OS user that runs it (archive_command runs as the server\'s user, usually postgres): e.g. chown -R postgres: on the archive directory.'
      : code === 'ENOSPC'
        ? 'The file system of the archive is full: free space (prune the spool after Bacula confirmed a job), then PostgreSQL retries by itself.'
        : 'Check the archive directory: permissions, free space, file system errors.');
}
