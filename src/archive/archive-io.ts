/** File access the archive modules share, and the archive's I/O error (with what to do). */
import { dirname, join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { pidAlive } from '../os/pid-alive.js';
import { STORED_DIR_MODE, STORED_FILE_MODE, temporaryNameOwner, type Storage } from '../storage/storage.js';

export { isNotFound } from '../storage/storage.js';

/** The archive keeps the product's stored modes (src/storage/storage.ts). */
export const FILE_MODE = STORED_FILE_MODE;
export const DIR_MODE = STORED_DIR_MODE;

export async function exists(storage: Storage, path: string): Promise<boolean> {
  try {
    return await storage.exists(path);
  } catch (e) {
    throw ioError(e, `cannot check ${path}`);
  }
}

export async function readIfExists(storage: Storage, path: string): Promise<Buffer | undefined> {
  try {
    return await storage.readFileIfExists(path);
  } catch (e) {
    throw ioError(e, `cannot read ${path}`);
  }
}

/** mkdir -p, fsyncing the parent of each directory created so the new entries are durable. */
export async function ensureDir(storage: Storage, dir: string): Promise<void> {
  if (await exists(storage, dir)) return;
  let first: string | undefined;
  try {
    first = await storage.makeDirs(dir, { mode: DIR_MODE });
  } catch (e) {
    throw ioError(e, `cannot create ${dir}`);
  }
  if (first === undefined) return; // created concurrently by another writer
  const created: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    created.unshift(d);
    if (d === first || d === dirname(d)) break;
  }
  for (const d of created) await storage.syncDir(dirname(d));
}

export function ioError(e: unknown, what: string): PgbaculaError {
  if (e instanceof PgbaculaError) return e;
  const err = e as NodeJS.ErrnoException;
  const reason = err?.message ?? String(e);
  const hint =
    err?.code === 'EACCES' || err?.code === 'EPERM'
      ? 'The archive must be writable by the OS user that runs it (archive_command runs as the server\'s user, usually postgres): e.g. chown -R postgres: on the archive directory.'
      : err?.code === 'ENOSPC'
        ? 'The file system of the archive is full: free space (prune the spool after Bacula confirmed a job), then PostgreSQL retries by itself.'
        : 'Check the archive directory: permissions, free space, file system errors.';
  return new PgbaculaError('IO', `${what}: ${reason}`, { hint, cause: e });
}

/**
 * Remove the temporary files (`.<name>.tmp-<pid>-…`) that writers killed before their rename
 * left in a directory of the archive: only those whose process is gone, never a live writer's.
 * Returns how many went.
 */
export async function sweepDeadTemporaries(storage: Storage, dir: string): Promise<number> {
  let n = 0;
  for (const name of await storage.list(dir).catch(() => [] as string[])) {
    if (!name.includes('.tmp-')) continue;
    const pid = temporaryNameOwner(name);
    if (pid === undefined || pid === process.pid || pidAlive(pid)) continue;
    await storage.removeFile(join(dir, name)).then(() => n++, () => undefined);
  }
  return n;
}
