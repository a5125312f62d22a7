/**
 * Gathering what a cdp job knows of its receiver (judged by receiver-verdict.ts): the pid lock
 * wal-receive holds in the spool, its slot (pg_replication_slots) and its stream
 * (pg_stat_replication), as the server sees them now.
 */
import type { ConnectionSettings } from '../../config/connection.js';
import { versionFacts } from '../../pg/versions.js';
import { receiverLock } from '../../archive/receiver-lock.js';
import { openSession } from '../../server/session.js';
import { serverVersion } from '../../server/server-facts.js';
import type { ReceiverFacts } from './receiver-verdict.js';

export interface HealthRequest {
  readonly connection: ConnectionSettings;
  readonly spoolRoot: string;
  readonly systemId: string;
  readonly slotName: string;
  readonly applicationName: string;
  readonly sincePreviousJobSeconds: number | undefined;
}

export async function receiverFacts(r: HealthRequest): Promise<ReceiverFacts> {
  const held = await receiverLock(r.spoolRoot, r.systemId);
  const lock = held && { pid: held.pid, alive: held.alive };
  const session = await openSession(r.connection, { applicationName: 'pgbacula cdp' });
  try {
    const major = (await serverVersion(session)).major;
    const here = 'CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END';
    const safe = versionFacts(major).slotSafeWalSize ? ', wal_status, safe_wal_size::text AS safe' : '';
    const slotRow = (await session.query<{ active: boolean; retained: string | null; wal_status?: string | null; safe?: string | null }>(
      `SELECT active, pg_wal_lsn_diff(${here}, restart_lsn)::bigint::text AS retained${safe} FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'physical'`,
      [r.slotName],
    )).rows[0];
    const streamRow = (await session.query<{ lag_bytes: string | null; lag_s: number | null; sync_state: string }>(
      `SELECT pg_wal_lsn_diff(${here}, flush_lsn)::bigint::text AS lag_bytes, extract(epoch FROM flush_lag)::float8 AS lag_s, sync_state FROM pg_stat_replication WHERE application_name = $1 ORDER BY flush_lsn DESC NULLS LAST LIMIT 1`,
      [r.applicationName],
    )).rows[0];
    return {
      spoolRoot: r.spoolRoot,
      systemId: r.systemId,
      lock,
      slotName: r.slotName,
      applicationName: r.applicationName,
      slot: slotRow && {
        active: slotRow.active,
        retainedBytes: slotRow.retained === null ? undefined : Math.max(0, Number(slotRow.retained)),
        ...(safe ? { walStatus: slotRow.wal_status ?? undefined, safeWalSizeBytes: slotRow.safe === null || slotRow.safe === undefined ? null : Number(slotRow.safe) } : {}),
      },
      stream: streamRow && {
        flushLagBytes: Math.max(0, Number(streamRow.lag_bytes ?? 0)),
        flushLagSeconds: streamRow.lag_s ?? (Number(streamRow.lag_bytes ?? 0) === 0 ? 0 : undefined),
        syncState: streamRow.sync_state,
      },
      sincePreviousJobSeconds: r.sincePreviousJobSeconds,
    };
  } finally {
    await session.end().catch(() => undefined);
  }
}
