import { PgbaculaError } from '../errors.js';

/**
 * A file-system failure as an operator needs it: the path, what was being done, and what to do
 * — a bare "ENOSPC: no space left on device, write" names neither the file nor the fix.
 * `place` says what the path belongs to (e.g. "the repository /backup/pg").
 */
export function fileSystemError(e: unknown, doing: string, path: string, place: string): PgbaculaError {
  if (e instanceof PgbaculaError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err?.code ?? '';
  const reason = code === 'ENOSPC' ? 'no space left on device (ENOSPC)' : code === 'EDQUOT' ? 'disk quota exceeded (EDQUOT)' : (err?.message ?? String(e));
  const hint =
    code === 'ENOSPC' || code === 'EDQUOT'
      ? `The file system of ${place} is full: free space there (or give it more room), then run the command again.`
      : code === 'EACCES' || code === 'EPERM'
        ? `${place[0]!.toUpperCase()}${place.slice(1)} must be writable by the OS user running pgbacula (uid ${process.getuid?.() ?? 0}).`
        : `Check ${place}: permissions, free space, file system errors.`;
  return new PgbaculaError('IO', `cannot ${doing} ${path}: ${reason}`, { hint, cause: e });
}

export function isOutOfSpace(code: string | undefined): boolean {
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/**
 * A failed file operation as `what: reason`, with the hint of the place the file belongs to
 * (the archive, a WAL directory), chosen by errno code where the fix differs.
 */
export function ioError(e: unknown, what: string, hint: string | ((code: string | undefined) => string)): PgbaculaError {
  if (e instanceof PgbaculaError) return e;
  const err = e as NodeJS.ErrnoException;
  const reason = err?.message ?? String(e);
  return new PgbaculaError('IO', `${what}: ${reason}`, { hint: typeof hint === 'string' ? hint : hint(err?.code), cause: e });
}
