import { createHash } from 'node:crypto';
import type { BundleRef, ItemEncoding, ItemType, PageCheckResult } from '../item/item.js';

/**
 * pgbacula's backup manifest: every file with its size, mtime, mode, content hash, storage
 * encoding and page-checksum result, plus what restore needs (LSNs, timelines, system
 * identifier, version). It is written LAST: a backup without a complete manifest is not a
 * backup. Serialised with one file per line (readable, diffable) and sealed with a SHA-256
 * of everything before the seal, as PostgreSQL's own backup_manifest is.
 */
export const MANIFEST_FORMAT = 'pgbacula-backup-manifest';
export const MANIFEST_VERSION = 1;
/**
 * Written by backups that hold incremental files (a reference and INCREMENTAL.<name> entries):
 * a pgbacula that knows only version 1 refuses them instead of restoring incremental files as
 * if they were whole ones.
 */
export const MANIFEST_VERSION_INCREMENTAL = 2;
/**
 * Written by backups whose small files are stored in bundle files (`bundle` entries, which a
 * reader of versions 1 and 2 would look for under their own names and report missing); it may
 * hold incremental files too.
 */
export const MANIFEST_VERSION_BUNDLED = 3;
const READABLE_VERSIONS: readonly number[] = [MANIFEST_VERSION, MANIFEST_VERSION_INCREMENTAL, MANIFEST_VERSION_BUNDLED];

export interface ManifestFile {
  readonly path: string;
  readonly type: ItemType;
  readonly size: number;
  readonly mode: number;
  readonly mtime: string;
  readonly linkTarget?: string;
  readonly hash?: string;
  /**
   * Files of more than one range: the hash of each range (16 hex digits each, in order), of which
   * `hash` is made (src/format/content-hash.ts). A chain restore uses them to check the ranges it
   * reads without reading the ranges it does not need.
   */
  readonly rangeHashes?: string;
  readonly stored?: ItemEncoding;
  readonly storedSize?: number;
  /**
   * Stored inside bundle file `bundle.id` of the backup, `bundle.length` bytes from
   * `bundle.offset`, instead of under its own name (docs/repository-format.md, "Bundles").
   */
  readonly bundle?: BundleRef;
  readonly pages?: PageCheckResult;
  /**
   * An incremental file (`<dir>/INCREMENTAL.<name>`, docs/block-incremental.md): the changed
   * blocks of `<dir>/<name>`, the length it had in blocks, and its size when backed up.
   */
  readonly incremental?: IncrementalEntry;
}

export interface IncrementalEntry {
  readonly blocks: number;
  readonly truncationBlocks: number;
  readonly fileSize: number;
}

/** The backup an incremental or differential backup was taken against. */
export interface ManifestReference {
  readonly backupId: string;
  readonly startLsn: string;
  readonly timeline: number;
}

/** How the changed blocks of an incremental backup were found, and what they cost. */
export interface ChangedBlocksReport {
  /** server summaries | pgbacula summaries | page LSN scan */
  readonly source: string;
  readonly changedBlocks: number;
  /** Relation files stored whole, as incremental files with blocks, and unchanged (empty incremental files). */
  readonly wholeFiles: number;
  readonly incrementalFiles: number;
  readonly unchangedFiles: number;
  /** Bytes read from relation files for incremental files, and bytes of relation files not read. */
  readonly bytesRead: number;
  readonly bytesSkipped: number;
}

export interface ManifestTablespace {
  readonly oid: string;
  readonly location: string;
}

export interface BackupManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: number;
  readonly backupId: string;
  readonly mode: string;
  readonly level: 'full' | 'incremental' | 'differential';
  readonly label: string;
  readonly systemIdentifier: string;
  readonly pgVersion: string;
  readonly pgVersionNum: number;
  readonly walSegmentSize: number;
  readonly blockSize: number;
  readonly fromStandby: boolean;
  /** The data directory the backup was taken from (the default restore target). */
  readonly dataDirectory: string;
  readonly startLsn: string;
  readonly stopLsn: string;
  readonly startTimeline: number;
  readonly stopTimeline: number;
  readonly startTime: string;
  readonly stopTime: string;
  readonly hashAlgorithm: string;
  readonly rangeSize: number;
  /** passed | failed (count > 0) | unavailable (cluster without checksums) | disabled (verify_checksum=false) */
  readonly pageVerification: 'passed' | 'failed' | 'unavailable' | 'disabled';
  readonly checksumFailures: number;
  readonly tablespaces: readonly ManifestTablespace[];
  /** WAL segment file names stored with the backup (start to stop; the last may be partial). */
  readonly walSegments: readonly string[];
  /** Incremental and differential backups: the backup the changed blocks are counted from. */
  readonly reference?: ManifestReference;
  readonly changedBlocks?: ChangedBlocksReport;
  /** A block-level backup asked for as incremental or differential that had to be full: why. */
  readonly fullBecause?: string;
  readonly files: readonly ManifestFile[];
}

const SEAL_KEY = '"manifestSha256"';

/** Everything but the file list. */
export type ManifestHead = Omit<BackupManifest, 'files'>;

/**
 * The manifest is written in three pieces so it can be streamed (a backup of 100,000 files must
 * not hold 100,000 manifest entries in memory): the head, one line per file, and the seal — a
 * SHA-256 of everything before it.
 */
export function manifestHeadText(head: ManifestHead): string {
  const headJson = JSON.stringify(head, null, 1).replace(/\n\s*/g, ' ').replace(/\s*}$/, '');
  return `${headJson},\n"files": [\n`;
}

export function manifestFileLine(f: ManifestFile, first: boolean): string {
  return `${first ? '' : ',\n'}${JSON.stringify(f)}`;
}

export const MANIFEST_FILES_END = '\n],\n';

export function manifestSealText(sha256Hex: string): string {
  return `${SEAL_KEY}: "${sha256Hex}"}\n`;
}

export function serializeManifest(m: BackupManifest): string {
  const { files, ...head } = m;
  const body = manifestHeadText(head) + files.map((f, i) => manifestFileLine(f, i === 0)).join('') + MANIFEST_FILES_END;
  return body + manifestSealText(createHash('sha256').update(body).digest('hex'));
}

export class ManifestError extends Error {}

/** Parse and check the seal; a truncated or edited manifest is refused. */
export function parseManifest(text: string): BackupManifest {
  const at = text.lastIndexOf(SEAL_KEY);
  if (at < 0) throw new ManifestError('manifest has no seal (truncated?)');
  const body = text.slice(0, at);
  const m = /^"manifestSha256": "([0-9a-f]{64})"}\n?$/.exec(text.slice(at));
  if (!m) throw new ManifestError('manifest seal is malformed (truncated?)');
  const actual = createHash('sha256').update(body).digest('hex');
  if (actual !== m[1]) throw new ManifestError(`manifest seal mismatch: content hashes to ${actual}, seal says ${m[1]}`);
  const parsed = JSON.parse(text) as BackupManifest & { manifestSha256?: string };
  if (parsed.format !== MANIFEST_FORMAT) throw new ManifestError(`not a pgbacula manifest (format ${String(parsed.format)})`);
  if (!READABLE_VERSIONS.includes(parsed.version)) throw new ManifestError(`manifest version ${parsed.version} is not supported by this pgbacula`);
  delete parsed.manifestSha256;
  const problem = manifestPathProblem(parsed) ?? bundleProblem(parsed);
  if (problem) throw new ManifestError(problem);
  return parsed;
}

/**
 * Bundle references are untrusted like paths: whole numbers, only on files of the cluster's
 * areas, and only in a manifest whose version announces them. (Where they point is checked when
 * the bytes are read: a region that runs past its bundle is reported as damage.)
 */
function bundleProblem(m: BackupManifest): string | undefined {
  for (const f of m.files) {
    const b = f.bundle;
    if (b === undefined) continue;
    const bad = `file entry ${JSON.stringify(f.path.slice(0, 200))}`;
    if (m.version < MANIFEST_VERSION_BUNDLED) return `${bad} names a bundle in a manifest of version ${m.version} (bundles came with version ${MANIFEST_VERSION_BUNDLED})`;
    if (typeof b !== 'object' || b === null || ![b.id, b.offset, b.length].every((n) => Number.isSafeInteger(n) && n >= 0)) return `${bad} has a bundle reference that is not three whole numbers (id, offset, length)`;
    if (f.type !== 'file' || !(f.path.startsWith('pgdata/') || f.path.startsWith('tablespaces/'))) return `${bad} is bundled but is not a file of the cluster's areas`;
  }
  return undefined;
}

/** One path component as stored: a name, never empty, `.`, `..` or carrying a NUL. */
function badComponent(c: string): boolean {
  return c === '' || c === '.' || c === '..' || c.includes('\0');
}

const WAL_NAME = /^(?:[0-9A-F]{24}|[0-9A-F]{8}\.history)$/;

/**
 * The paths of a manifest are untrusted input (a repository, a Bacula stream, a staged chain):
 * each must be one of the shapes a backup writes, with every component a plain name, so that
 * joined to its restore root it can only name something inside that root. Symbolic links are
 * recorded only as tablespace links (`pgdata/pg_tblspc/<oid>`), and nothing is stored beneath
 * one: a restore writes through no link. Returns the first problem, or undefined.
 */
export function manifestPathProblem(m: Pick<BackupManifest, 'files' | 'tablespaces'> & { readonly walSegments?: readonly string[] }): string | undefined {
  if (!Array.isArray(m.files) || !Array.isArray(m.tablespaces)) return 'manifest lists no files or no tablespaces';
  const oids = new Set<string>();
  for (const ts of m.tablespaces) {
    if (typeof ts.oid !== 'string' || !/^[1-9]\d{0,9}$/.test(ts.oid) || oids.has(ts.oid)) return `tablespace oid ${JSON.stringify(ts.oid)} is not a unique object identifier`;
    if (typeof ts.location !== 'string' || !ts.location.startsWith('/') || ts.location.length < 2 || ts.location.split('/').slice(1).some(badComponent)) {
      return `tablespace ${ts.oid} has location ${JSON.stringify(ts.location)}, which is not a normalised absolute path`;
    }
    oids.add(ts.oid);
  }
  const links = new Set(m.files.filter((f) => f.type === 'symlink' && typeof f.path === 'string').map((f) => f.path));
  for (const f of m.files) {
    const path = f.path;
    if (typeof path !== 'string') return 'a file entry has no path';
    const parts = path.split('/');
    const bad = `file entry ${JSON.stringify(path.slice(0, 200))}`;
    if (parts.some(badComponent)) return `${bad} is not a plain relative path (empty, '.', '..' or NUL component)`;
    if (f.type !== 'file' && f.type !== 'dir' && f.type !== 'symlink') return `${bad} has type ${JSON.stringify(f.type)}`;
    const [root, ...rest] = parts;
    const name = parts[parts.length - 1]!;
    if (name.startsWith('INCREMENTAL.') || f.incremental !== undefined) {
      // An incremental file stands for a relation file of a relation directory, and says so.
      const dir = parts.slice(0, -1).join('/');
      const inRelationDir = /^pgdata\/(?:global|base\/\d+)$/.test(dir) || /^tablespaces\/\d+\/PG_\d+_\d+\/\d+$/.test(dir);
      const inc = f.incremental;
      if (f.type !== 'file' || !name.startsWith('INCREMENTAL.') || !inRelationDir || typeof inc !== 'object' || inc === null
        || ![inc.blocks, inc.truncationBlocks, inc.fileSize].every((n) => Number.isSafeInteger(n) && n >= 0)) {
        return `${bad} is not an incremental file of a relation directory with its block counts`;
      }
    }
    if (f.type === 'symlink') {
      if (!(root === 'pgdata' && rest.length === 2 && rest[0] === 'pg_tblspc' && oids.has(rest[1]!))) {
        return `${bad} is a symbolic link; only tablespace links pgdata/pg_tblspc/<oid> of a listed tablespace are restored`;
      }
      continue;
    }
    if (root === 'pgdata') {
      if (rest.length === 0 && f.type !== 'dir') return `${bad} must be a directory`;
      // (An in-place tablespace is a plain directory under pg_tblspc and is stored there.)
      if (rest[0] === 'pg_tblspc' && rest.length >= 3 && links.has(`pgdata/pg_tblspc/${rest[1]}`)) return `${bad} lies beneath a tablespace link; tablespace contents are stored under tablespaces/<oid>/`;
      continue;
    }
    if (root === 'tablespaces') {
      if (rest.length === 0 && f.type === 'dir') continue;
      if (!oids.has(rest[0] ?? '')) return `${bad} belongs to no tablespace of the manifest`;
      if (rest.length === 1 && f.type !== 'dir') return `${bad} must be a directory`;
      // Only the version directory of the backed-up server lives in a tablespace location.
      if (rest.length >= 2 && !/^PG_\d+_\d+$/.test(rest[1]!)) return `${bad} is not inside a PG_<major>_<catalog> directory of its tablespace`;
      continue;
    }
    if ((path === 'backup_label' || path === 'tablespace_map') && f.type === 'file') continue;
    if (root === 'wal' && (rest.length === 0 ? f.type === 'dir' : rest.length === 1 && WAL_NAME.test(rest[0]!))) continue;
    // The replication topology (track_replication_state): a document read by the restore, never laid down.
    if (root === 'topology' && rest.length === 1 && f.type === 'file' && /^[a-z][a-z0-9-]*\.json$/.test(rest[0]!)) continue;
    return `${bad} is outside the areas of a backup (pgdata/, tablespaces/<oid>/, wal/<WAL file>, topology/<name>.json, backup_label, tablespace_map)`;
  }
  if (m.walSegments !== undefined && (!Array.isArray(m.walSegments) || m.walSegments.some((n) => typeof n !== 'string' || !WAL_NAME.test(n)))) {
    return 'walSegments holds a name that is not a WAL file name';
  }
  return undefined;
}
