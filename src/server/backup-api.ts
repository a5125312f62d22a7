import type pg from 'pg';
import { PgbaculaError } from '../errors.js';
import { scrub } from '../config/redact.js';
import type { VersionFacts } from '../pg/versions.js';

export interface BackupStart {
  readonly startLsn: string;
}

export interface BackupStop {
  readonly stopLsn: string;
  /** backup_label, byte for byte as the server returned it. */
  readonly labelFile: string;
  /** tablespace_map; empty when there are no tablespaces (then not stored). */
  readonly spcmapFile: string;
}

/**
 * A non-exclusive backup belongs to the session that started it: one dedicated
 * client, no timeouts that could end it, kept for the whole copy.
 */
export async function prepareBackupSession(client: pg.Client, facts: VersionFacts): Promise<void> {
  // What ended the session, if something does: the operator is told that, not the driver's echo.
  client.on('error', (e: Error) => {
    if (!sessionEnd.has(client)) sessionEnd.set(client, e);
  });
  client.on('end', () => {
    if (!sessionEnd.has(client)) sessionEnd.set(client, new Error('the connection was closed'));
  });
  await client.query('SET statement_timeout = 0');
  await client.query('SET idle_in_transaction_session_timeout = 0');
  if (facts.idleSessionTimeout) await client.query('SET idle_session_timeout = 0');
}

const sessionEnd = new WeakMap<pg.Client, Error>();

function backupError(what: string, e: unknown, client?: pg.Client): PgbaculaError {
  const ended = client && sessionEnd.get(client);
  if (ended) {
    return new PgbaculaError('CONNECTION', `${what} failed: the session holding the backup ended during the backup (${scrub(ended.message)}): the server ended it (pg_terminate_backend, a restart or a crash) or the network dropped it; this backup is incomplete and is not kept`, {
      hint: 'Run the backup again; if sessions are ended on purpose (idle or statement timeouts, a pooler), exempt the backup role.',
      cause: e,
    });
  }
  const err = e as { message?: string; hint?: string };
  return new PgbaculaError('PREREQUISITE', `${what} failed: ${scrub(err.message ?? String(e))}`, {
    hint: err.hint ? scrub(err.hint) : 'Run pgbacula check for the prerequisites of physical backups.',
    cause: e,
  });
}

/**
 * Start a non-exclusive backup. The third argument of pg_start_backup defaults to
 * exclusive = true before 15, so it is always passed as false.
 */
export async function startBackup(client: pg.Client, facts: VersionFacts, label: string, fast: boolean): Promise<BackupStart> {
  const sql = facts.backupStart === 'pg_backup_start'
    ? 'SELECT pg_backup_start($1, $2)::text AS lsn'
    : 'SELECT pg_start_backup($1, $2, false)::text AS lsn';
  try {
    const r = await client.query<{ lsn: string }>(sql, [label, fast]);
    return { startLsn: r.rows[0]!.lsn };
  } catch (e) {
    throw backupError(`${facts.backupStart}('${label}')`, e, client);
  }
}

/**
 * Stop the backup on the same session. wait_for_archive is false: pgbacula streams the WAL
 * from start to stop itself, so the backup never depends on archive_command working.
 */
export async function stopBackup(client: pg.Client, facts: VersionFacts): Promise<BackupStop> {
  const sql = facts.backupStop === 'pg_backup_stop'
    ? 'SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_backup_stop(false)'
    : 'SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_stop_backup(false, false)';
  try {
    const r = await client.query<{ lsn: string; labelfile: string; spcmapfile: string | null }>(sql);
    const row = r.rows[0]!;
    return { stopLsn: row.lsn, labelFile: row.labelfile, spcmapFile: row.spcmapfile ?? '' };
  } catch (e) {
    throw backupError(facts.backupStop, e, client);
  }
}

/** The start timeline from backup_label's first line: `(file TTTTTTTT...)`. */
export function timelineFromLabel(labelFile: string): number {
  const m = /^START WAL LOCATION: [0-9A-F]+\/[0-9A-F]+ \(file ([0-9A-F]{8})[0-9A-F]{16}\)/m.exec(labelFile);
  if (!m) throw new PgbaculaError('PROTOCOL', 'backup_label returned by the server has no START WAL LOCATION line');
  return parseInt(m[1]!, 16);
}
