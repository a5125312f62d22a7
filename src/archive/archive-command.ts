/** archive_command and restore_command values (for postgresql.conf) that run pgbacula. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { shellQuote } from '../os/shell-quote.js';

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
export function restoreCommandLine(o: { readonly repo?: string; readonly spool?: string; readonly staged?: string; readonly latest?: boolean; readonly helper?: string | undefined }): string {
  const where = o.repo !== undefined ? ['--repo', o.repo] : o.spool !== undefined ? ['--wal-spool', o.spool] : [];
  const staged = o.staged === undefined ? [] : ['--staged', o.staged];
  // The native helper answers "not archived" without a Node start and runs the rest of the line
  // (the wal-fetch command itself) for everything else: native/wal-push/wal_fetch.c.
  const helper = 'helper' in o ? o.helper : nativeWalFetchPath();
  // --latest: the newest .partial (a receiver's open segment) is the end of WAL, replayed too.
  return [...(helper ? [helper] : []), ...pgbaculaInvocation(), 'wal-fetch', ...where, ...staged, ...(o.latest ? ['--latest'] : [])].map(commandArg).join(' ') + ' %f %p';
}

/** restore_command's native helper (native/wal-push/build.sh): where nativeWalPushPath looks. */
export const NATIVE_WAL_FETCH = 'pgbacula-wal-fetch';

export function nativeWalFetchPath(): string | undefined {
  return nativeHelperPath(NATIVE_WAL_FETCH);
}

/** The native archive helper's file name (native/wal-push/build.sh). */
export const NATIVE_WAL_PUSH = 'pgbacula-wal-push';

/**
 * The native archive helper installed with this code, or undefined: `native/build/` of this
 * checkout or package (where `npm run build` puts it), or beside bin/pgbacula.js.
 */
export function nativeWalPushPath(): string | undefined {
  return nativeHelperPath(NATIVE_WAL_PUSH);
}

function nativeHelperPath(name: string): string | undefined {
  const candidates = ['../../../native/build/', '../../native/build/', '../../../bin/', '../../bin/'].map((rel) => fileURLToPath(new URL(rel + name, import.meta.url)));
  return candidates.find((p) => existsSync(p));
}

/**
 * `archive_command` value that feeds this archive. `pgbacula wal-push` unless `native` is asked
 * for and the native helper (same rules, no Node start, no block summaries: docs/wal-archive.md)
 * is installed next to this code.
 */
export function archiveCommandLine(o: { readonly repo?: string; readonly spool?: string; readonly native?: boolean }): string {
  const where = o.repo !== undefined ? ['--repo', o.repo] : ['--wal-spool', o.spool!];
  const helper = o.native ? nativeWalPushPath() : undefined;
  const program = helper !== undefined ? [helper] : [...pgbaculaInvocation(), 'wal-push'];
  return [...program, ...where].map(commandArg).join(' ') + ' %p';
}
