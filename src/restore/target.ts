import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, statfsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { RESTORE_STATE_DIR_NAME } from '../pipeline/exclusions.js';
import { pidAlive } from '../os/pid-alive.js';

export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

/** Our own marker in a restore target: an interrupted restore of the same backup may resume. */
export const RESTORE_STATE_DIR = RESTORE_STATE_DIR_NAME;

export interface SavedRestoreState {
  readonly backupId: string;
  readonly fingerprint: string;
  readonly phasesDone: number[];
  readonly logOffset?: number;
  /** Phase 3 held the logical replication workers off; phase 5 has not released them yet. */
  readonly heldLogicalWorkers?: { readonly original: string | null };
  /** When the restore finished (every phase done); undefined for an interrupted one. */
  readonly finished?: string;
}

export interface TargetState {
  readonly exists: boolean;
  readonly entries: readonly string[];
  /** What a pgbacula restore left there (state.json), if one did. */
  readonly restoreState: SavedRestoreState | undefined;
  readonly runningPid: number | undefined;
}


export function inspectTarget(dir: string): TargetState {
  if (!existsSync(dir)) return { exists: false, entries: [], restoreState: undefined, runningPid: undefined };
  if (!statSync(dir).isDirectory()) {
    throw new PgbaculaError('RESTORE_PRECHECK', `restore target ${dir} exists and is not a directory`, { hint: 'Choose another pgdata_dir.' });
  }
  const entries = readdirSync(dir);
  let runningPid: number | undefined;
  if (entries.includes('postmaster.pid')) {
    const pid = Number(readFileSync(`${dir}/postmaster.pid`, 'utf8').split('\n')[0]);
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) runningPid = pid;
  }
  return { exists: true, entries, restoreState: readRestoreState(dir), runningPid };
}

function readRestoreState(dir: string): SavedRestoreState | undefined {
  let raw: Partial<SavedRestoreState>;
  try {
    raw = JSON.parse(readFileSync(join(dir, RESTORE_STATE_DIR, 'state.json'), 'utf8')) as Partial<SavedRestoreState>;
  } catch {
    return undefined;
  }
  if (typeof raw.backupId !== 'string' || !Array.isArray(raw.phasesDone)) return undefined;
  // A state written before restores recorded their end: all six phases done is a finished restore.
  const finished = typeof raw.finished === 'string' ? raw.finished : raw.phasesDone.includes(6) ? 'in an earlier run' : undefined;
  return {
    backupId: raw.backupId,
    fingerprint: typeof raw.fingerprint === 'string' ? raw.fingerprint : '',
    phasesDone: raw.phasesDone,
    ...(typeof raw.logOffset === 'number' ? { logOffset: raw.logOffset } : {}),
    ...(typeof raw.heldLogicalWorkers === 'object' && raw.heldLogicalWorkers !== null
      ? { heldLogicalWorkers: { original: typeof raw.heldLogicalWorkers.original === 'string' ? raw.heldLogicalWorkers.original : null } }
      : {}),
    ...(finished !== undefined ? { finished } : {}),
  };
}

/**
 * The absolute path a (possibly not yet existing) path will have once created: the deepest
 * existing ancestor with its symbolic links resolved, then the rest.
 */
export function canonicalPath(path: string): string {
  let probe = resolve(path);
  const rest: string[] = [];
  while (!existsSync(probe)) {
    rest.unshift(basename(probe));
    const up = dirname(probe);
    if (up === probe) break;
    probe = up;
  }
  let real: string;
  try {
    real = realpathSync(probe);
  } catch {
    real = probe;
  }
  return rest.length ? join(real, ...rest) : real;
}

function within(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith('/') ? outer : `${outer}/`);
}

export interface NamedPath {
  readonly what: string;
  readonly path: string;
}

/**
 * A restore never writes into what it restores from: no target (data directory, tablespace
 * location) may be, lie inside, or contain the repository, the WAL archive or the spool.
 * Checked before anything is touched, through symbolic links.
 */
export function assertOutsideProtected(targets: readonly NamedPath[], protectedPaths: readonly NamedPath[]): void {
  for (const t of targets) {
    const tc = canonicalPath(t.path);
    for (const p of protectedPaths) {
      const pc = canonicalPath(p.path);
      if (within(tc, pc) || within(pc, tc)) {
        const how = tc === pc ? 'is' : within(tc, pc) ? 'lies inside' : 'contains';
        throw new PgbaculaError('RESTORE_PRECHECK', `${t.what} ${t.path} ${how} the ${p.what} ${p.path}: a restore never writes where its backups or WAL are kept`, {
          hint: `Choose a ${t.what} outside ${p.path} (and not containing it).`,
        });
      }
    }
  }
}

/** Free bytes where `dir` is (or would be created). */
export function freeBytes(dir: string): number {
  let probe = dir;
  while (!existsSync(probe)) probe = dirname(probe);
  const s = statfsSync(probe);
  return s.bavail * s.bsize;
}

/**
 * PostgreSQL runs as the data directory's owner: an existing target keeps its owner; a new
 * one belongs to the owner of its parent — unless that is root, then to the postgres user.
 */
export function resolveOwner(dir: string): Owner {
  const probe = existsSync(dir) ? dir : dirname(dir);
  if (existsSync(probe)) {
    const st = statSync(probe);
    if (st.uid !== 0) return { uid: st.uid, gid: st.gid };
  }
  if ((process.getuid?.() ?? 0) !== 0) return { uid: process.getuid!(), gid: process.getgid!() };
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new PgbaculaError('RESTORE_PRECHECK', 'running as root and there is no postgres OS user to own the restored cluster', {
      hint: 'Create the target directory owned by the user PostgreSQL should run as.',
    });
  }
}
