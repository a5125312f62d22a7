import { readFileSync } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import { PgbaculaError } from '../errors.js';

/**
 * Is a process with this pid alive (EPERM: it exists but belongs to someone else)? A zombie is
 * not: a backend killed under the Bacula FD can stay its unreaped child for a while, and
 * kill(pid, 0) still succeeds on it.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..." — the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

export interface PidLockMessages {
  /** The error when a live process holds the lock. */
  busy(pid: number): PgbaculaError;
  /** The error when the lock file cannot be created at all. */
  cannotCreate(cause: Error): PgbaculaError;
}

/**
 * A pid file taken with O_EXCL. A lock left by a process that no longer exists (killed
 * mid-job) is taken over — that is how an interrupted run gets cleaned by the next one.
 * Returns the release function (which removes the file only while it is still ours).
 */
export async function acquirePidLock(path: string, messages: PidLockMessages): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o640);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
        if (holder === process.pid) await unlink(path).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw messages.cannotCreate(e as Error);
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) throw messages.busy(pid);
      await unlink(path).catch(() => undefined);
    }
  }
  throw messages.cannotCreate(new Error(`${path} keeps appearing`));
}
