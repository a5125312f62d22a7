/**
 * The staging directory (parameter tmpdir): made 0700 for the user running pgbacula, refused
 * with the directory and the fix when that user cannot use it, and rid of the leftovers of runs
 * that were killed before their own clean-up ran.
 */
import { constants } from 'node:fs';
import { access, lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { findParameter } from '../config/schema.js';
import type { JobLog } from '../item/job-log.js';

function whoAmI(): string {
  const uid = process.getuid?.() ?? 0;
  try {
    return `${userInfo().username} (uid ${uid})`;
  } catch {
    return `uid ${uid}`;
  }
}

function notUsable(dir: string, why: string, cause: unknown): PgbaculaError {
  return new PgbaculaError('IO', `staging directory (tmpdir) ${dir} is not usable by ${whoAmI()}: ${why}`, {
    hint: `Give pgbacula a directory this user may write with tmpdir=/path (--tmpdir), or fix its owner (chown ${userInfo().username} ${dir}; chmod 700 ${dir}).`,
    cause,
  });
}

/** The process that named a scratch directory is gone (EPERM: it exists, owned by another user). */
function processGone(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

// Scratch directories named after the process that made them: the backup's own WAL stream
// (wal-<backup id>-<pid>) and a Bacula pitr job's work directory (pitr-<job id>-<pid>).
const SCRATCH = /^(?:wal-.+|pitr-\d+)-(\d+)$/;

/** Remove scratch directories whose process no longer exists (killed before its clean-up ran). */
export async function removeStaleScratch(dir: string, log?: JobLog): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  const uid = process.getuid?.();
  for (const name of names) {
    const m = SCRATCH.exec(name);
    if (!m || !processGone(Number(m[1]))) continue;
    // Only what this user's runs made (tmpdir may be a shared directory such as /tmp).
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (!st || !st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
    log?.info(`removed staging directory ${join(dir, name)} left by an interrupted run`);
  }
  return removed;
}

/**
 * Make tmpdir usable before anything is staged there. The default lives in the shared /var/tmp,
 * so it must be ours and not a symlink: another user could have made it first to read what we
 * stage (database contents) or to redirect our writes.
 */
export async function prepareTmpdir(dir: string, log?: JobLog): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw notUsable(dir, 'permission denied creating it', e);
    if (code === 'ENOSPC') throw new PgbaculaError('IO', `no space left on device creating staging directory (tmpdir) ${dir}`, { hint: 'Free space there or point tmpdir at a file system with room.', cause: e });
    throw new PgbaculaError('IO', `cannot create staging directory (tmpdir) ${dir}: ${(e as Error).message}`, { hint: 'Point tmpdir at a directory this user may create.', cause: e });
  }
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (e) {
    throw notUsable(dir, 'permission denied (it belongs to another user, or is not writable)', e);
  }
  const fallback = findParameter('tmpdir')?.defaultOf?.();
  if (dir === fallback) {
    const st = await lstat(dir);
    const uid = process.getuid?.() ?? 0;
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
      throw notUsable(dir, `it is ${st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? `owned by uid ${st.uid} or writable by others` : 'not a directory'}`, undefined);
    }
  }
  await removeStaleScratch(dir, log);
}
