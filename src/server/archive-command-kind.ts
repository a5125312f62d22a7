/**
 * Which pgbacula archiver an archive_command runs, read from its text: `pgbacula wal-push`
 * (the CLI, also as `node …/bin/pgbacula.js wal-push`, quoted or not) or the native helper
 * `pgbacula-wal-push` (native/wal-push/wal_push.c). Both enforce the same archive rules
 * (docs/wal-archive.md); only wal-push writes segment block summaries.
 */
export type PgbaculaArchiver = 'wal-push' | 'native';

const CLI = /pgbacula(?:\.js)?['"]?\s+['"]?wal-push(?:['"\s]|$)/;
const NATIVE = /pgbacula-wal-push(?:['"\s]|$)/;

export function pgbaculaArchiver(archiveCommand: string): PgbaculaArchiver | undefined {
  if (NATIVE.test(archiveCommand)) return 'native';
  if (CLI.test(archiveCommand)) return 'wal-push';
  return undefined;
}
