import { versionFacts } from '../pg/versions.js';
import { isRelationDirectory, parseRelationFileName } from '../format/relation-file.js';

/**
 * The server's own base-backup rules (PostgreSQL's
 * basebackup.c sendDir()), so a copy made between backup start and stop holds exactly what pg_basebackup's
 * would. Pure: the walker asks, these answer.
 */

/** The directory a pgbacula restore keeps its state in, at the top of the restored data directory. */
export const RESTORE_STATE_DIR_NAME = 'pgbacula_restore';

/** Directories emitted empty (contents skipped). */
const EXCLUDE_CONTENTS_ALL = ['pg_stat_tmp', 'pg_replslot'];
const EXCLUDE_CONTENTS_10 = ['pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans'];

const EXCLUDE_FILES = new Set([
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
  'backup_label',
  'tablespace_map',
  'backup_manifest',
  'postmaster.pid',
  'postmaster.opts',
]);

export type EntryDecision =
  | { readonly action: 'skip'; readonly reason: string }
  | { readonly action: 'include' }
  /** Directory kept, its contents not (pg_wal, pg_stat_tmp, …). */
  | { readonly action: 'empty-dir' }
  /** global/pg_control: copied after every other file. */
  | { readonly action: 'last' };

export interface DirEntryInfo {
  readonly name: string;
  readonly kind: 'file' | 'dir' | 'symlink' | 'other';
}

/**
 * Decide for one entry of directory `relDir` ('' = PGDATA root). `siblings` holds every name
 * in the same directory (the unlogged-relation rule looks for `<relfilenode>_init`).
 */
export function decideEntry(relDir: string, entry: DirEntryInfo, siblings: ReadonlySet<string>, major: number): EntryDecision {
  const { name, kind } = entry;
  if (name.startsWith('pgsql_tmp')) return { action: 'skip', reason: 'temporary files' };
  if (name === '.DS_Store') return { action: 'skip', reason: 'macOS metadata' };
  if (EXCLUDE_FILES.has(name) || name.startsWith('pg_internal.init')) return { action: 'skip', reason: 'excluded by the server rules' };
  const path = relDir === '' ? name : `${relDir}/${name}`;
  if (isRelationDirectory(relDir) && kind === 'file') {
    const rel = parseRelationFileName(name);
    if (rel?.temporary) return { action: 'skip', reason: 'temporary relation' };
    if (rel && rel.fork !== 'init' && siblings.has(`${rel.relfilenode}_init`)) {
      return { action: 'skip', reason: 'unlogged relation (recreated from its init fork)' };
    }
  }
  if (path === 'global/pg_control') return { action: 'last' };
  // A restore's own state (audit log, state, the log of the server it started) belongs to that
  // restore, not to the cluster: carried into a backup it would be mistaken for the next restore's.
  if (relDir === '' && name === RESTORE_STATE_DIR_NAME) return { action: 'skip', reason: 'pgbacula restore state' };
  if (relDir === '' && (kind === 'dir' || kind === 'symlink')) {
    if (name === 'pg_wal') return { action: 'empty-dir' };
    if (EXCLUDE_CONTENTS_ALL.includes(name) || (versionFacts(major).excludeTransientDirectories && EXCLUDE_CONTENTS_10.includes(name))) return { action: 'empty-dir' };
  }
  if (kind === 'symlink' && relDir !== 'pg_tblspc') return { action: 'skip', reason: 'symbolic link outside pg_tblspc (skipping special file)' };
  // Tablespace links are named by their oid (the walker handles those); any other link there is not the server's.
  if (kind === 'symlink' && relDir === 'pg_tblspc' && !/^\d+$/.test(name)) return { action: 'skip', reason: 'symbolic link in pg_tblspc that is not a tablespace' };
  if (kind === 'other') return { action: 'skip', reason: 'special file' };
  return { action: 'include' };
}

/** Empty directories the server emits under pg_wal. */
export function walSubdirectories(major: number): string[] {
  return versionFacts(major).walSummaries ? ['pg_wal/archive_status', 'pg_wal/summaries'] : ['pg_wal/archive_status'];
}
