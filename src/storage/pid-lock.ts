import { PgbaculaError } from '../errors.js';
import { pidAlive } from '../os/pid-alive.js';
import { errorCode, type Storage } from './storage.js';
import { posixStorage } from './posix.js';

export interface PidLockMessages {
  /** The error when a live process holds the lock. */
  busy(pid: number): PgbaculaError;
  /** The error when the lock file cannot be created at all. */
  cannotCreate(cause: Error): PgbaculaError;
}

/**
 * A pid file created exclusively in the product's storage (the repository's lock, wal-receive's
 * in .receive/). A lock left by a process that no longer exists (killed mid-job) is taken over —
 * that is how an interrupted run gets cleaned by the next one. Returns the release function
 * (which removes the file only while it is still ours).
 */
export async function acquireStoredPidLock(path: string, messages: PidLockMessages, storage: Storage = posixStorage): Promise<() => Promise<void>> {
  const holderOf = async (): Promise<number> => Number(((await storage.readFileIfExists(path).catch(() => undefined))?.toString('utf8') ?? '').trim());
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const w = await storage.createFile(path, { exclusive: true, mode: 0o640 });
      try {
        await w.write(Buffer.from(`${process.pid}\n`));
      } finally {
        await w.close();
      }
      return async () => {
        if ((await holderOf()) === process.pid) await storage.removeFile(path).catch(() => undefined);
      };
    } catch (e) {
      if (errorCode(e) !== 'EEXIST') throw messages.cannotCreate(e as Error);
      const pid = await holderOf();
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) throw messages.busy(pid);
      await storage.removeFile(path).catch(() => undefined);
    }
  }
  throw messages.cannotCreate(new Error(`${path} keeps appearing`));
}
