import type pg from 'pg';
import { PgbaculaError } from '../errors.js';
import { scrub } from '../config/redact.js';
import type { ConnectionSettings } from '../config/connection.js';
import { openSession } from './session.js';
import { isSupportedMajor, majorOf, versionFacts } from '../pg/versions.js';

/** What `pgbacula check` (and every job's start) learns about a server. */
export interface ServerFacts {
  readonly version: string;
  readonly versionNum: number;
  readonly major: number;
  readonly supported: boolean;
  readonly role: 'primary' | 'standby';
  readonly dataChecksums: boolean;
  readonly walLevel: string;
  readonly archiveMode: string;
  readonly archiveCommand: string;
  /** null before 17, where the setting does not exist. */
  readonly summarizeWal: boolean | null;
  readonly maxWalSenders: number;
  readonly walSendersInUse: number;
  readonly maxReplicationSlots: number;
  readonly replicationSlotsInUse: number;
  readonly walSegmentSize: number;
  readonly dataDirectory: string | null;
  readonly user: {
    readonly name: string;
    readonly superuser: boolean;
    readonly replication: boolean;
    /** null before 14, where the role does not exist. */
    readonly readAllData: boolean | null;
    readonly canRunBackupFunctions: boolean;
  };
  readonly replicationConnection:
    | { readonly ok: true; readonly systemIdentifier: string; readonly timeline: number; readonly xlogpos: string }
    | { readonly ok: false; readonly error: string };
}

async function one<T extends Record<string, unknown>>(client: pg.Client, sql: string): Promise<T> {
  const r = await client.query<T>(sql);
  const row = r.rows[0];
  if (!row) throw new PgbaculaError('PROTOCOL', `query returned no row: ${sql}`);
  return row;
}

async function setting(client: pg.Client, name: string): Promise<string | null> {
  const r = await client.query<{ setting: string }>('SELECT setting FROM pg_settings WHERE name = $1', [name]);
  return r.rows[0]?.setting ?? null;
}

/** The server's version, as every job and `check` learn it first. */
export interface ServerVersion {
  /** server_version, e.g. `16.4` or `17beta1`. */
  readonly version: string;
  /** server_version_num, e.g. 160004. */
  readonly versionNum: number;
  readonly major: number;
  readonly inRecovery: boolean;
}

/** The one query for a server's version (and whether it is a standby). */
export async function serverVersion(client: Pick<pg.Client, 'query'>): Promise<ServerVersion> {
  const r = await client.query<{ v: string; n: string; rec: boolean }>(
    "SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n, pg_is_in_recovery() AS rec",
  );
  const row = r.rows[0];
  if (!row) throw new PgbaculaError('PROTOCOL', 'the server version query returned no row');
  const versionNum = Number(row.n);
  return { version: row.v, versionNum, major: majorOf(versionNum), inRecovery: row.rec };
}

/** Probe a replication (walsender) connection the way a backup will use it. */
async function probeReplication(c: ConnectionSettings): Promise<ServerFacts['replicationConnection']> {
  let client: pg.Client | undefined;
  try {
    client = await openSession(c, { replication: true, applicationName: 'pgbacula check' });
    const r = await client.query<{ systemid: string; timeline: string | number; xlogpos: string }>('IDENTIFY_SYSTEM');
    const row = r.rows[0];
    if (!row) return { ok: false, error: 'IDENTIFY_SYSTEM returned no row' };
    return { ok: true, systemIdentifier: String(row.systemid), timeline: Number(row.timeline), xlogpos: row.xlogpos };
  } catch (e) {
    const msg = e instanceof PgbaculaError ? e.message : scrub((e as Error).message ?? String(e));
    return { ok: false, error: msg };
  } finally {
    await client?.end().catch(() => undefined);
  }
}

export async function collectServerFacts(client: pg.Client, c: ConnectionSettings): Promise<ServerFacts> {
  const v = await serverVersion(client);
  const { versionNum, major, inRecovery } = v;
  const supported = isSupportedMajor(major);
  const facts = versionFacts(major);
  const u = await one<{ name: string; rolsuper: boolean; rolreplication: boolean }>(
    client,
    'SELECT current_user AS name, rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user',
  );
  let readAllData: boolean | null = null;
  if (facts.readAllDataRole) {
    readAllData = (await one<{ m: boolean }>(client, "SELECT pg_has_role(current_user, 'pg_read_all_data', 'MEMBER') AS m")).m;
  }
  const startFn = facts.backupStartSignature;
  const canRunBackupFunctions = (
    await client.query<{ ok: boolean }>("SELECT has_function_privilege(current_user, $1, 'EXECUTE') AS ok", [startFn])
  ).rows[0]?.ok === true;
  const walSendersInUse = Number(
    (await one<{ n: string }>(client, "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'walsender'")).n,
  );
  const replicationSlotsInUse = Number((await one<{ n: string }>(client, 'SELECT count(*) AS n FROM pg_replication_slots')).n);
  const summarize = facts.walSummaries ? await setting(client, 'summarize_wal') : null;
  // wal_segment_size is reported in 8 kB units before 11 and in bytes from 11 (pg_settings unit).
  const seg = await one<{ setting: string; unit: string | null }>(client, "SELECT setting, unit FROM pg_settings WHERE name = 'wal_segment_size'");
  const walSegmentSize = seg.unit === '8kB' ? Number(seg.setting) * 8192 : seg.unit === 'B' || seg.unit === null ? Number(seg.setting) : Number(seg.setting) * 1024 * 1024;
  let dataDirectory: string | null = null;
  try {
    dataDirectory = await setting(client, 'data_directory');
  } catch {
    dataDirectory = null;
  }
  return {
    version: v.version,
    versionNum,
    major,
    supported,
    role: inRecovery ? 'standby' : 'primary',
    dataChecksums: (await setting(client, 'data_checksums')) === 'on',
    walLevel: (await setting(client, 'wal_level')) ?? 'unknown',
    archiveMode: (await setting(client, 'archive_mode')) ?? 'unknown',
    archiveCommand: (await setting(client, 'archive_command')) ?? '',
    summarizeWal: summarize === null ? null : summarize === 'on',
    maxWalSenders: Number(await setting(client, 'max_wal_senders')),
    walSendersInUse,
    maxReplicationSlots: Number(await setting(client, 'max_replication_slots')),
    replicationSlotsInUse,
    walSegmentSize,
    dataDirectory,
    user: { name: u.name, superuser: u.rolsuper, replication: u.rolreplication, readAllData, canRunBackupFunctions },
    replicationConnection: await probeReplication(c),
  };
}
