import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { pidAlive } from '../os/pid-lock.js';

export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

/** Our own marker in a restore target: an interrupted restore of the same backup may resume. */
export const RESTORE_STATE_DIR = 'pgbacula_restore';

export interface TargetState {
  readonly exists: boolean;
  readonly entries: readonly string[];
  /** The backup id of an interrupted pgbacula restore found there, if any. */
  readonly resumableBackupId: string | undefined;
  readonly runningPid: number | undefined;
}


export function inspectTarget(dir: string): TargetState {
  if (!existsSync(dir)) return { exists: false, entries: [], resumableBackupId: undefined, runningPid: undefined };
  if (!statSync(dir).isDirectory()) {
    throw new PgbaculaError('RESTORE_PRECHECK', `restore target ${dir} exists and is not a directory`, { hint: 'Choose another pgdata_dir.' });
  }
  const entries = readdirSync(dir);
  let runningPid: number | undefined;
  if (entries.includes('postmaster.pid')) {
    const pid = Number(readFileSync(`${dir}/postmaster.pid`, 'utf8').split('\n')[0]);
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) runningPid = pid;
  }
  let resumableBackupId: string | undefined;
  try {
    resumableBackupId = (JSON.parse(readFileSync(`${dir}/${RESTORE_STATE_DIR}/state.json`, 'utf8')) as { backupId?: string }).backupId;
  } catch {
    resumableBackupId = undefined;
  }
  return { exists: true, entries, resumableBackupId, runningPid };
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
