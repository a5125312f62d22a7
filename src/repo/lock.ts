import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { acquireStoredPidLock } from '../storage/pid-lock.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';

/** One writer per repository; a dead writer's lock (killed mid-backup) is taken over. */
export async function acquireRepoLock(repo: string, storage: Storage = posixStorage): Promise<() => Promise<void>> {
  return acquireStoredPidLock(
    join(repo, 'lock'),
    {
      busy: (pid) =>
        new PgbaculaError('REPOSITORY', `repository ${repo} is in use by process ${pid}`, {
          hint: 'Wait for that backup or restore to finish; if no pgbacula runs, remove the lock file.',
        }),
      cannotCreate: (cause) => new PgbaculaError('REPOSITORY', `cannot take the lock of repository ${repo}: ${cause.message}`, { cause }),
    },
    storage,
  );
}
