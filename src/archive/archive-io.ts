/** File access the archive modules share, and the archive's I/O error (with what to do). */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { fsyncPath } from '../os/durable.js';

export const FILE_MODE = 0o640;
export const DIR_MODE = 0o750;

export function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

export function isLinkUnsupported(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'ENOSYS';
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw ioError(e, `cannot check ${path}`);
  }
}

export async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw ioError(e, `cannot read ${path}`);
  }
}

/** fsync a directory (a rename or link inside it becomes durable). */
export const fsyncDir = fsyncPath;

/** mkdir -p, fsyncing the parent of each directory created so the new entries are durable. */
export async function ensureDir(dir: string): Promise<void> {
  try {
    await stat(dir);
    return;
  } catch (e) {
    if (!isNotFound(e)) throw ioError(e, `cannot check ${dir}`);
  }
  let first: string | undefined;
  try {
    first = await mkdir(dir, { recursive: true, mode: DIR_MODE });
  } catch (e) {
    throw ioError(e, `cannot create ${dir}`);
  }
  if (first === undefined) return; // created concurrently by another writer
  const created: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    created.unshift(d);
    if (d === first || d === dirname(d)) break;
  }
  for (const d of created) await fsyncDir(dirname(d));
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
