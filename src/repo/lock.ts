import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One writer per repository. The lock file holds the writer's pid; a lock left by a process
 * that no longer exists (killed mid-backup) is taken over — that is how an interrupted backup
 * gets cleaned by the next run.
 */
export async function acquireRepoLock(repo: string): Promise<() => Promise<void>> {
  const path = join(repo, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o640);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        await unlink(path).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && alive(pid) && pid !== process.pid) {
        throw new PgbaculaError('REPOSITORY', `repository ${repo} is in use by process ${pid}`, {
          hint: 'Wait for that backup or restore to finish; if no pgbacula runs, remove the lock file.',
        });
      }
      await unlink(path).catch(() => undefined);
    }
  }
  throw new PgbaculaError('REPOSITORY', `cannot take the lock of repository ${repo}`);
}
