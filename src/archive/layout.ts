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
 *   ROOT/<system-identifier>/<TLI>/<segment>.summary        the segment's block summary (segment-summary.ts)
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
 * - a `.partial` is served as its segment only at the end of WAL, when a restore asks (partial-at-end.ts).
 *
 * Which system a file belongs to: the data directory of the server that pushes it is the
 * authority (archive_command runs with the data directory as its working directory, so
 * `global/pg_control` is at hand); a repository holds the WAL of one system only.
 */
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { hex8, parseWalFileName, type WalFileName } from '../wal/segment.js';

export const ARCHIVE_META_FILE = 'archive.json';
export const ARCHIVE_FORMAT = 1;
export const ASIDE_DIR = 'aside';
export const RECEIVE_DIR = '.receive';

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
