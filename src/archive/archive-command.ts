/** archive_command and restore_command values (for postgresql.conf) that run pgbacula. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A path inside archive_command/restore_command: `%` must be doubled. */
function commandArg(s: string): string {
  return shellQuote(s).replace(/%/g, '%%');
}

/** The installed CLI: node and bin/pgbacula.js of this checkout or package (from dist/ or src/). */
export function pgbaculaInvocation(): string[] {
  const candidates = ['../../../bin/pgbacula.js', '../../bin/pgbacula.js'].map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
  return [process.execPath, candidates.find((p) => existsSync(p)) ?? candidates[0]!];
}

/**
 * `restore_command` value (before quoting for postgresql.conf) that serves this archive, and
 * after it a backup's own staged WAL (`staged`; alone when there is no archive). One command for
 * both: a shell fallback (`wal-fetch … || cp …`) would also run after wal-fetch refused a
 * damaged segment.
 */
export function restoreCommandLine(o: { readonly repo?: string; readonly spool?: string; readonly staged?: string }): string {
  const where = o.repo !== undefined ? ['--repo', o.repo] : o.spool !== undefined ? ['--wal-spool', o.spool] : [];
  const staged = o.staged === undefined ? [] : ['--staged', o.staged];
  return [...pgbaculaInvocation(), 'wal-fetch', ...where, ...staged].map(commandArg).join(' ') + ' %f %p';
}

/** `archive_command` value that feeds this archive. */
export function archiveCommandLine(o: { readonly repo?: string; readonly spool?: string }): string {
  const where = o.repo !== undefined ? ['--repo', o.repo] : ['--wal-spool', o.spool!];
  return [...pgbaculaInvocation(), 'wal-push', ...where].map(commandArg).join(' ') + ' %p';
}
