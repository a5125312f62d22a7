/**
 * Capturing the replication topology of a running server (track_replication_state=true): its
 * role and position, the walsenders, the slots, the subscriptions (a shared catalog: read once,
 * joined with pg_database), the publications of every database, and — on a standby — its own
 * recovery settings and upstream. The document is src/format/topology.ts; what each catalog holds
 * per major is in docs/replication-topology.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import type { ConnectionSettings } from '../config/connection.js';
import { registerSecret } from '../config/redact.js';
import {
  standbysOf,
  TOPOLOGY_FORMAT,
  TOPOLOGY_VERSION,
  type PublicationRecord,
  type ReplicationRow,
  type SlotRecord,
  type StandbyRecord,
  type StandbySettings,
  type SubscriptionRecord,
  type TopologyDocument,
} from '../format/topology.js';
import { versionFacts } from '../pg/versions.js';
import { openSession } from './session.js';
import { serverVersion } from './server-facts.js';

export interface CaptureRequest {
  readonly session: pg.Client;
  readonly connection: ConnectionSettings;
  readonly major: number;
  readonly pgVersion: string;
  readonly timeline: number;
  readonly inRecovery: boolean;
  /** The data directory pgbacula reads (recovery.conf and standby.signal are looked for there). */
  readonly pgdata: string;
  /** Slots of this backup itself (its temporary WAL slot): never part of the topology. */
  readonly ownSlots: readonly string[];
  /** standby_hosts: standbys to connect to and read their own settings from. */
  readonly standbys?: readonly StandbyEndpoint[];
}

/** A standby to reach: how it was named (host:port) and how to connect (password from the config file or pgpass only). */
export interface StandbyEndpoint {
  readonly label: string;
  readonly connection: ConnectionSettings;
}

/** Passwords in a conninfo (key/value or URI) become secrets: nothing that is logged can carry them. */
export function registerConninfoSecrets(text: string | null): void {
  if (!text) return;
  for (const m of text.matchAll(/\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/gi)) {
    const v = m[1]!;
    registerSecret(v.startsWith("'") ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v);
  }
  for (const m of text.matchAll(/postgres(?:ql)?:\/\/[^:/@\s]*:([^@\s]*)@/gi)) registerSecret(decodeURIComponent(m[1]!));
}

type Row = Record<string, unknown>;
const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

async function rows(client: pg.Client, sql: string): Promise<Row[]> {
  return (await client.query<Row>(sql)).rows;
}

async function replicationRows(client: pg.Client): Promise<Array<ReplicationRow & { pid: number }>> {
  const r = await rows(client, `SELECT pid, usename::text AS usename, application_name, client_addr::text AS client_addr, client_hostname, state, sync_state, sync_priority,
      sent_lsn::text AS sent_lsn, write_lsn::text AS write_lsn, flush_lsn::text AS flush_lsn, replay_lsn::text AS replay_lsn,
      write_lag::text AS write_lag, flush_lag::text AS flush_lag, replay_lag::text AS replay_lag
    FROM pg_stat_replication ORDER BY application_name, pid`);
  return r.map((x) => ({
    pid: Number(x.pid),
    applicationName: String(x.application_name ?? ''),
    user: str(x.usename),
    clientAddr: str(x.client_addr),
    clientHostname: str(x.client_hostname),
    state: str(x.state),
    syncState: str(x.sync_state),
    syncPriority: x.sync_priority === null || x.sync_priority === undefined ? null : Number(x.sync_priority),
    sentLsn: str(x.sent_lsn),
    writeLsn: str(x.write_lsn),
    flushLsn: str(x.flush_lsn),
    replayLsn: str(x.replay_lsn),
    writeLag: str(x.write_lag),
    flushLag: str(x.flush_lag),
    replayLag: str(x.replay_lag),
    slot: null,
  }));
}

async function slots(client: pg.Client, major: number): Promise<Array<SlotRecord & { activePid: number | null }>> {
  const f = versionFacts(major);
  const r = await rows(client, `SELECT slot_name::text AS name, slot_type AS type, plugin::text AS plugin, database::text AS database, temporary, active, active_pid,
      restart_lsn::text AS restart_lsn, confirmed_flush_lsn::text AS confirmed_flush_lsn${f.slotTwoPhase ? ', two_phase' : ''}${f.slotFailover ? ', failover' : ''}
    FROM pg_replication_slots ORDER BY slot_name`);
  return r.map((x) => ({
    name: String(x.name),
    type: x.type === 'logical' ? 'logical' : 'physical',
    plugin: str(x.plugin),
    database: str(x.database),
    temporary: x.temporary === true,
    ...(f.slotTwoPhase ? { twoPhase: x.two_phase === true } : {}),
    ...(f.slotFailover ? { failover: x.failover === true } : {}),
    active: x.active === true,
    activePid: x.active_pid === null || x.active_pid === undefined ? null : Number(x.active_pid),
    restartLsn: str(x.restart_lsn),
    confirmedFlushLsn: str(x.confirmed_flush_lsn),
  }));
}

const STREAMING: Record<string, string> = { t: 'on', true: 'on', f: 'off', false: 'off', p: 'parallel' };

/**
 * pg_subscription is shared: one query from any database sees every subscription of the cluster
 * once; the join with pg_database names the database each belongs to (and where its DDL runs).
 */
async function subscriptions(client: pg.Client, major: number, notes: string[]): Promise<SubscriptionRecord[]> {
  const f = versionFacts(major).subscriptionOptions;
  const canRead = (await rows(client, "SELECT has_column_privilege('pg_subscription', 'subconninfo', 'SELECT') AS ok"))[0]?.ok === true;
  const cols = [
    f.binary ? 's.subbinary AS binary' : '',
    f.streaming !== 'none' ? 's.substream::text AS streaming' : '',
    f.twoPhase ? 's.subtwophasestate::text AS two_phase' : '',
    f.disableOnError ? 's.subdisableonerr AS disable_on_error' : '',
    f.passwordRequired ? 's.subpasswordrequired AS password_required' : '',
    f.runAsOwner ? 's.subrunasowner AS run_as_owner' : '',
    f.origin ? 's.suborigin AS origin' : '',
    f.failover ? 's.subfailover AS failover' : '',
  ].filter(Boolean);
  const r = await rows(client, `SELECT s.subname::text AS name, d.datname::text AS database, pg_get_userbyid(s.subowner)::text AS owner, s.subenabled AS enabled,
      ${canRead ? 's.subconninfo' : 'NULL::text'} AS conninfo, s.subslotname::text AS slot_name, s.subsynccommit AS sync_commit, s.subpublications::text[] AS publications
      ${cols.length ? `, ${cols.join(', ')}` : ''}
    FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid ORDER BY d.datname, s.subname`);
  if (r.length && !canRead) notes.push(`the role ${client.user ?? ''} may not read pg_subscription.subconninfo: the subscriptions' connections were not captured (a superuser, or GRANT SELECT (subconninfo) ON pg_subscription TO it)`);
  return r.map((x) => {
    const options: Record<string, string | boolean> = {};
    if (f.binary) options.binary = x.binary === true;
    if (f.streaming !== 'none') options.streaming = STREAMING[String(x.streaming)] ?? 'off';
    if (f.twoPhase) options.two_phase = String(x.two_phase) !== 'd';
    if (f.disableOnError) options.disable_on_error = x.disable_on_error === true;
    if (f.passwordRequired) options.password_required = x.password_required === true;
    if (f.runAsOwner) options.run_as_owner = x.run_as_owner === true;
    if (f.origin) options.origin = String(x.origin ?? 'any');
    if (f.failover) options.failover = x.failover === true;
    const conninfo = str(x.conninfo);
    registerConninfoSecrets(conninfo);
    return {
      name: String(x.name),
      database: String(x.database),
      owner: String(x.owner),
      enabled: x.enabled === true,
      conninfo,
      slotName: str(x.slot_name),
      synchronousCommit: String(x.sync_commit ?? 'off'),
      publications: (x.publications as string[] | null) ?? [],
      options,
    };
  });
}

/** pg_publication is per database: every database that accepts connections is asked. */
async function publications(req: CaptureRequest, notes: string[]): Promise<PublicationRecord[]> {
  const f = versionFacts(req.major);
  const dbs = (await rows(req.session, 'SELECT datname::text AS name FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname')).map((x) => String(x.name));
  const out: PublicationRecord[] = [];
  for (const db of dbs) {
    let client: pg.Client | undefined;
    try {
      client = db === req.connection.database ? req.session : await openSession({ ...req.connection, database: db }, { applicationName: 'pgbacula topology' });
      const r = await rows(client, `SELECT p.pubname::text AS name, pg_get_userbyid(p.pubowner)::text AS owner, p.puballtables AS all_tables, p.pubinsert, p.pubupdate, p.pubdelete
          ${f.publicationTruncate ? ', p.pubtruncate' : ''}${f.publicationViaRoot ? ', p.pubviaroot' : ''},
          CASE WHEN p.puballtables THEN ARRAY[]::text[] ELSE ARRAY(SELECT quote_ident(t.schemaname) || '.' || quote_ident(t.tablename) FROM pg_publication_tables t WHERE t.pubname = p.pubname ORDER BY 1) END AS tables
        FROM pg_publication p ORDER BY p.pubname`);
      for (const x of r) {
        out.push({
          name: String(x.name),
          database: db,
          owner: String(x.owner),
          allTables: x.all_tables === true,
          actions: (['insert', 'update', 'delete', 'truncate'] as const).filter((a) => x[`pub${a}`] === true),
          ...(f.publicationViaRoot ? { viaRoot: x.pubviaroot === true } : {}),
          tables: (x.tables as string[] | null) ?? [],
        });
      }
    } catch (e) {
      notes.push(`publications of database ${db} not captured: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      if (client && client !== req.session) await client.end().catch(() => undefined);
    }
  }
  return out;
}

/** recovery.conf (before 12): key = 'value' lines, the last occurrence winning. */
export function parseRecoveryConf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_]+)\s*=?\s*(?:'((?:[^'\\]|''|\\.)*)'|([^#\s]*))/.exec(line);
    if (!m || line.trim().startsWith('#')) continue;
    out.set(m[1]!.toLowerCase(), m[2] !== undefined ? m[2].replace(/''/g, "'").replace(/\\(.)/g, '$1') : (m[3] ?? ''));
  }
  return out;
}

/** A standby's own settings: from the server (12+, where it lets us read them) or recovery.conf. */
async function ownStandbySettings(req: CaptureRequest, notes: string[]): Promise<StandbySettings> {
  const f = versionFacts(req.major);
  let primaryConninfo: string | null = null;
  let primarySlotName: string | null = null;
  let restoreCommand: string | null = null;
  let source: StandbySettings['source'] = 'unreadable';
  let standbySignal = false;
  if (f.recoveryConfig === 'recovery.conf') {
    const path = join(req.pgdata, 'recovery.conf');
    if (existsSync(path)) {
      const conf = parseRecoveryConf(readFileSync(path, 'utf8'));
      primaryConninfo = conf.get('primary_conninfo') ?? null;
      primarySlotName = conf.get('primary_slot_name') ?? null;
      restoreCommand = conf.get('restore_command') ?? null;
      standbySignal = /^(on|true|yes|1)$/i.test(conf.get('standby_mode') ?? '');
      source = 'recovery.conf';
    }
  } else {
    standbySignal = existsSync(join(req.pgdata, 'standby.signal'));
    try {
      const x = (await rows(req.session, "SELECT current_setting('primary_conninfo') AS c, current_setting('primary_slot_name') AS s, current_setting('restore_command') AS r"))[0]!;
      primaryConninfo = str(x.c);
      primarySlotName = str(x.s);
      restoreCommand = str(x.r);
      source = 'settings';
    } catch {
      notes.push(`the role may not read primary_conninfo on this standby: its recovery settings were not captured (a superuser, or GRANT pg_read_all_settings TO it)`);
    }
  }
  registerConninfoSecrets(primaryConninfo);
  let upstream: StandbySettings['upstream'] = null;
  try {
    const x = (await rows(req.session, `SELECT status, slot_name::text AS slot, ${f.walReceiverSender ? 'sender_host AS host, sender_port AS port' : 'conninfo'} FROM pg_stat_wal_receiver`))[0];
    if (x) {
      let host = str(x.host);
      let port = x.port === null || x.port === undefined ? null : Number(x.port);
      if (!f.walReceiverSender && typeof x.conninfo === 'string') {
        host = /\bhost=(\S+)/.exec(x.conninfo)?.[1] ?? null;
        const p = /\bport=(\d+)/.exec(x.conninfo)?.[1];
        port = p ? Number(p) : null;
      }
      upstream = { host, port, slot: str(x.slot), status: str(x.status) };
    }
  } catch {
    // pg_stat_wal_receiver hides its columns from roles without pg_read_all_stats: no upstream then.
  }
  return { primaryConninfo: primaryConninfo === '' ? null : primaryConninfo, primarySlotName: primarySlotName === '' ? null : primarySlotName, restoreCommand: restoreCommand === '' ? null : restoreCommand, standbySignal, source, upstream };
}

/** application_name=… of a key/value conninfo (quoted or not), or undefined. */
export function applicationNameOf(conninfo: string | null): string | undefined {
  const m = conninfo ? /(?:^|\s)application_name\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/.exec(conninfo) : null;
  if (!m) return undefined;
  const v = m[1]!;
  return v.startsWith("'") ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v;
}

/**
 * standby_hosts: each standby is asked for its own recovery settings (12+: its settings; before,
 * only its WAL receiver's slot — recovery.conf is read when that standby is itself backed up) and
 * matched to a walsender of the server backed up by application_name, else cluster_name, else slot.
 * One that cannot be reached or matched is a note, never a failed backup.
 */
async function reachStandbys(req: CaptureRequest, standbys: StandbyRecord[], notes: string[]): Promise<StandbyRecord[]> {
  const out = [...standbys];
  for (const ep of req.standbys ?? []) {
    let client: pg.Client | undefined;
    try {
      client = await openSession(ep.connection, { applicationName: 'pgbacula topology' });
      const major = (await serverVersion(client)).major;
      const f = versionFacts(major);
      const head = (await rows(client, "SELECT pg_is_in_recovery() AS rec, current_setting('cluster_name') AS cluster"))[0]!;
      if (head.rec !== true) {
        notes.push(`standby_hosts: ${ep.label} is not a standby (not in recovery): nothing read from it`);
        continue;
      }
      let primaryConninfo: string | null = null;
      let primarySlotName: string | null = null;
      let restoreCommand: string | null = null;
      let source: StandbySettings['source'] = 'unreadable';
      if (f.recoveryConfig === 'signal-files') {
        try {
          const x = (await rows(client, "SELECT current_setting('primary_conninfo') AS c, current_setting('primary_slot_name') AS s, current_setting('restore_command') AS r"))[0]!;
          primaryConninfo = str(x.c) || null;
          primarySlotName = str(x.s) || null;
          restoreCommand = str(x.r) || null;
          source = 'settings';
        } catch {
          notes.push(`standby_hosts: the role may not read primary_conninfo on ${ep.label} (a superuser, or GRANT pg_read_all_settings TO it)`);
        }
      }
      registerConninfoSecrets(primaryConninfo);
      // Its conninfo (passwords masked by the server) names it when its settings cannot be read.
      const wr = (await rows(client, 'SELECT status, slot_name::text AS slot, conninfo FROM pg_stat_wal_receiver').catch(() => [] as Row[]))[0];
      if (source === 'unreadable' && wr) {
        primarySlotName = str(wr.slot) || null;
        source = 'wal-receiver';
      }
      const settings: StandbySettings = { primaryConninfo, primarySlotName, restoreCommand, standbySignal: true, source, upstream: wr ? { host: null, port: null, slot: str(wr.slot), status: str(wr.status) } : null };
      const name = applicationNameOf(primaryConninfo) ?? applicationNameOf(str(wr?.conninfo)) ?? (str(head.cluster) || undefined);
      const i = out.findIndex((r) => (name !== undefined && r.name === name) || (primarySlotName !== null && r.slot === primarySlotName));
      if (i < 0) {
        notes.push(`standby_hosts: ${ep.label}${name ? ` (${name})` : ''} streams from no walsender of this server: its settings were not recorded`);
        continue;
      }
      out[i] = { ...out[i]!, settings, reachedAt: ep.label };
    } catch (e) {
      notes.push(`standby_hosts: ${ep.label} could not be read: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
  return out;
}

/** The topology of the server the session is connected to, at this moment. */
export async function captureTopology(req: CaptureRequest): Promise<TopologyDocument> {
  const { session: client, major } = req;
  const notes: string[] = [];
  const head = (await rows(client, `SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text AS lsn,
      current_setting('wal_level') AS wal_level, current_setting('synchronous_standby_names') AS sync_names`))[0]!;
  const walsenders = await replicationRows(client);
  const allSlots = await slots(client, major);
  const kept = allSlots.filter((s) => !req.ownSlots.includes(s.name));
  const slotOfPid = new Map(kept.filter((s) => s.activePid !== null).map((s) => [s.activePid!, s.name]));
  const replication: ReplicationRow[] = walsenders
    // This backup's own WAL stream is not part of what is captured.
    .filter((w) => !w.applicationName.startsWith('pgbacula backup'))
    .map(({ pid, ...w }) => ({ ...w, slot: slotOfPid.get(pid) ?? null }));
  const slotRecords: SlotRecord[] = kept.map(({ activePid: _unused, ...s }) => s);
  const subs = await subscriptions(client, major, notes);
  const pubs = await publications(req, notes);
  const standbySettings = req.inRecovery ? await ownStandbySettings(req, notes) : null;
  return {
    format: TOPOLOGY_FORMAT,
    version: TOPOLOGY_VERSION,
    capturedAt: new Date().toISOString(),
    role: req.inRecovery ? 'standby' : 'primary',
    major,
    pgVersion: req.pgVersion,
    timeline: req.timeline,
    lsn: String(head.lsn ?? '0/0'),
    walLevel: String(head.wal_level),
    synchronousStandbyNames: String(head.sync_names ?? ''),
    replication,
    slots: slotRecords,
    subscriptions: subs,
    publications: pubs,
    standbys: await reachStandbys(req, standbysOf(replication, slotRecords, req.connection.host, req.connection.port), notes),
    standbySettings,
    notes,
  };
}
