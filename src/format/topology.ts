/**
 * The replication topology document a backup carries under `topology/topology.json` when
 * track_replication_state=true, and what a restore makes of it: the SQL that recreates the slots,
 * the staged subscription SQL, the settings of each standby. Pure: no I/O, no server. The format
 * and the rules are described in docs/replication-topology.md.
 */
import { versionFacts } from '../pg/versions.js';

export const TOPOLOGY_FORMAT = 'pgbacula-topology';
export const TOPOLOGY_VERSION = 1;
/** Where the document is stored inside a backup (an item like any other, listed in the manifest). */
export const TOPOLOGY_ITEM = 'topology/topology.json';

/** One walsender row of pg_stat_replication, for the record. */
export interface ReplicationRow {
  readonly applicationName: string;
  readonly user: string | null;
  readonly clientAddr: string | null;
  readonly clientHostname: string | null;
  readonly state: string | null;
  readonly syncState: string | null;
  readonly syncPriority: number | null;
  readonly sentLsn: string | null;
  readonly writeLsn: string | null;
  readonly flushLsn: string | null;
  readonly replayLsn: string | null;
  readonly writeLag: string | null;
  readonly flushLag: string | null;
  readonly replayLag: string | null;
  /** The slot the walsender streams through, if any (matched by the walsender's pid). */
  readonly slot: string | null;
}

export interface SlotRecord {
  readonly name: string;
  readonly type: 'physical' | 'logical';
  readonly plugin: string | null;
  readonly database: string | null;
  readonly temporary: boolean;
  /** 14+: the slot decodes prepared transactions; undefined where the server has no such flag. */
  readonly twoPhase?: boolean;
  /** 17+: the slot is synchronized to standbys. */
  readonly failover?: boolean;
  readonly active: boolean;
  /** Positions, for the record only: a new slot can never be put back at them. */
  readonly restartLsn: string | null;
  readonly confirmedFlushLsn: string | null;
}

export interface SubscriptionRecord {
  readonly name: string;
  readonly database: string;
  readonly owner: string;
  readonly enabled: boolean;
  /** As the catalog holds it, password included; null when the role may not read subconninfo. Never logged. */
  readonly conninfo: string | null;
  /** null: slot_name = NONE. */
  readonly slotName: string | null;
  readonly synchronousCommit: string;
  readonly publications: readonly string[];
  /** The CREATE SUBSCRIPTION options the server's catalog knows (binary, streaming, two_phase, …), by option name. */
  readonly options: Readonly<Record<string, string | boolean>>;
}

export interface PublicationRecord {
  readonly name: string;
  readonly database: string;
  readonly owner: string;
  readonly allTables: boolean;
  /** The actions published: insert, update, delete, truncate. */
  readonly actions: readonly string[];
  readonly viaRoot?: boolean;
  /** schema.table, for publications that are not FOR ALL TABLES. */
  readonly tables: readonly string[];
}

/** A standby's own recovery settings, as found on the standby (the server backed up, or one connected to). */
export interface StandbySettings {
  readonly primaryConninfo: string | null;
  readonly primarySlotName: string | null;
  readonly restoreCommand: string | null;
  readonly standbySignal: boolean;
  /**
   * Where the settings were read: the server's settings (12+), recovery.conf in its data directory,
   * or — a standby reached over the network before 12 — its WAL receiver (the slot only).
   */
  readonly source: 'settings' | 'recovery.conf' | 'wal-receiver' | 'unreadable';
  /** What pg_stat_wal_receiver says of the upstream (its conninfo is obfuscated by the server itself). */
  readonly upstream: { readonly host: string | null; readonly port: number | null; readonly slot: string | null; readonly status: string | null } | null;
}

/** A standby streaming from the server backed up: what rebuilding it needs. */
export interface StandbyRecord {
  /** Its application_name (what synchronous_standby_names and pg_stat_replication name it by). */
  readonly name: string;
  /** The directory a restore stages its settings in (standby-<dirName>/): a plain, unique name. */
  readonly dirName: string;
  readonly clientAddr: string | null;
  readonly user: string | null;
  readonly syncState: string | null;
  readonly slot: string | null;
  /** The primary_conninfo it is rebuilt with, when its own settings were not read: host and port of the server backed up, its user and name. */
  readonly primaryConninfo: string;
  /** Its own settings, when it was reached (standby_hosts) and let us read them. */
  readonly settings?: StandbySettings;
  /** Where it was reached (host:port as given in standby_hosts). */
  readonly reachedAt?: string;
}

export interface TopologyDocument {
  readonly format: typeof TOPOLOGY_FORMAT;
  readonly version: typeof TOPOLOGY_VERSION;
  readonly capturedAt: string;
  readonly role: 'primary' | 'standby';
  readonly major: number;
  readonly pgVersion: string;
  readonly timeline: number;
  /** pg_current_wal_lsn() on a primary, the last replayed position on a standby. */
  readonly lsn: string;
  readonly walLevel: string;
  readonly synchronousStandbyNames: string;
  readonly replication: readonly ReplicationRow[];
  readonly slots: readonly SlotRecord[];
  readonly subscriptions: readonly SubscriptionRecord[];
  readonly publications: readonly PublicationRecord[];
  readonly standbys: readonly StandbyRecord[];
  /** Backed up from a standby: its own settings and upstream. */
  readonly standbySettings: StandbySettings | null;
  /** What could not be captured (a privilege missing), said once more at restore. */
  readonly notes: readonly string[];
}

export class TopologyError extends Error {}

/** Application names of walsenders that are tools, never standbys. */
const TOOL_SENDERS = /^(?:pgbacula|pg_basebackup|pg_receivewal|pg_recvlogical)/;

/**
 * The standbys among the walsenders: not a base backup in progress, not a WAL-archiving tool, not
 * a logical decoding session (a walsender whose slot is logical).
 */
export function standbysOf(rows: readonly ReplicationRow[], slots: readonly SlotRecord[], primaryHost: string, primaryPort: number): StandbyRecord[] {
  const logical = new Set(slots.filter((s) => s.type === 'logical').map((s) => s.name));
  const used = new Set<string>();
  const out: StandbyRecord[] = [];
  for (const r of rows) {
    if (r.state === 'backup' || TOOL_SENDERS.test(r.applicationName) || (r.slot !== null && logical.has(r.slot))) continue;
    const base = r.applicationName.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_').slice(0, 60) || 'standby';
    let dirName = base;
    for (let i = 2; used.has(dirName); i++) dirName = `${base}-${i}`;
    used.add(dirName);
    out.push({
      name: r.applicationName,
      dirName,
      clientAddr: r.clientAddr,
      user: r.user,
      syncState: r.syncState,
      slot: r.slot,
      primaryConninfo: conninfo({ host: primaryHost, port: String(primaryPort), user: r.user ?? undefined, application_name: r.applicationName }),
    });
  }
  return out;
}

/** A libpq key/value conninfo: values quoted when they need it. */
export function conninfo(pairs: Readonly<Record<string, string | undefined>>): string {
  return Object.entries(pairs)
    .filter((e): e is [string, string] => e[1] !== undefined && e[1] !== '')
    .map(([k, v]) => `${k}=${/^[A-Za-z0-9_./:@-]+$/.test(v) ? v : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`}`)
    .join(' ');
}

/** Does a key/value conninfo name this key (application_name=…)? */
export function conninfoHas(text: string, key: string): boolean {
  return new RegExp(`(?:^|\\s)${key}\\s*=`).test(text);
}

// ---------------------------------------------------------------- the stored document

export function serializeTopology(doc: TopologyDocument): string {
  return JSON.stringify(doc, null, 2) + '\n';
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isStrOrNull = (v: unknown): boolean => v === null || typeof v === 'string';

/** The document read back (untrusted: a repository, a Bacula stream): checked field by field. */
export function parseTopology(text: string): TopologyDocument {
  let d: Record<string, unknown>;
  try {
    d = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new TopologyError(`not JSON: ${(e as Error).message}`);
  }
  if (typeof d !== 'object' || d === null || d.format !== TOPOLOGY_FORMAT) throw new TopologyError('not a pgbacula topology document');
  if (d.version !== TOPOLOGY_VERSION) throw new TopologyError(`topology version ${String(d.version)} is not supported by this pgbacula`);
  if (d.role !== 'primary' && d.role !== 'standby') throw new TopologyError('role is neither primary nor standby');
  if (!Number.isInteger(d.major) || !Number.isInteger(d.timeline) || !isStr(d.lsn)) throw new TopologyError('major, timeline or lsn missing');
  for (const k of ['replication', 'slots', 'subscriptions', 'publications', 'standbys', 'notes'] as const) {
    if (!Array.isArray(d[k])) throw new TopologyError(`${k} is not a list`);
  }
  for (const s of d.slots as Record<string, unknown>[]) {
    if (!isStr(s.name) || (s.type !== 'physical' && s.type !== 'logical') || typeof s.temporary !== 'boolean') throw new TopologyError('a slot lacks its name, type or temporary flag');
    if (s.type === 'logical' && (!isStr(s.plugin) || !isStr(s.database))) throw new TopologyError(`logical slot ${s.name} lacks its plugin or database`);
  }
  for (const s of d.subscriptions as Record<string, unknown>[]) {
    if (!isStr(s.name) || !isStr(s.database) || !isStr(s.owner) || !isStrOrNull(s.conninfo) || !isStrOrNull(s.slotName) || !Array.isArray(s.publications) || !(s.publications as unknown[]).every(isStr)) {
      throw new TopologyError('a subscription lacks its name, database, owner, conninfo, slot or publications');
    }
    if (typeof s.options !== 'object' || s.options === null) throw new TopologyError(`subscription ${s.name} has no options`);
  }
  for (const s of d.standbys as Record<string, unknown>[]) {
    if (!isStr(s.name) || !isStr(s.dirName) || !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(s.dirName) || !isStr(s.primaryConninfo) || !isStrOrNull(s.slot)) {
      throw new TopologyError('a standby lacks its name, a plain directory name, its conninfo or its slot');
    }
    if (s.settings !== undefined && !standbySettingsOk(s.settings)) throw new TopologyError(`standby ${s.name} has unreadable settings`);
  }
  if (d.standbySettings !== null && d.standbySettings !== undefined && !standbySettingsOk(d.standbySettings)) throw new TopologyError('the standby settings are unreadable');
  return d as unknown as TopologyDocument;
}

function standbySettingsOk(v: unknown): boolean {
  const s = v as Record<string, unknown>;
  return typeof s === 'object' && s !== null && isStrOrNull(s.primaryConninfo) && isStrOrNull(s.primarySlotName) && isStrOrNull(s.restoreCommand) && typeof s.standbySignal === 'boolean';
}

/** The primary_conninfo and slot a captured standby is rebuilt with: its own when they were read. */
export function rebuildSettings(s: StandbyRecord): { readonly primaryConninfo: string; readonly primarySlotName: string | null } {
  return {
    primaryConninfo: s.settings?.primaryConninfo ?? s.primaryConninfo,
    primarySlotName: s.settings ? (s.settings.primarySlotName ?? s.slot) : s.slot,
  };
}

// ---------------------------------------------------------------- what the capture says

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Slots a restore recreates: the persistent ones (a temporary slot lives and dies with its session). */
export function persistentSlots(doc: TopologyDocument): SlotRecord[] {
  return doc.slots.filter((s) => !s.temporary);
}

/** The job log line: "captured 2 replication slots, 1 subscription, 2 standbys". */
export function captureSummary(doc: TopologyDocument): string {
  const temp = doc.slots.length - persistentSlots(doc).length;
  const parts = [
    `${plural(persistentSlots(doc).length, 'replication slot')}${temp ? ` (and ${temp} temporary, not recreated)` : ''}`,
    plural(doc.subscriptions.length, 'subscription'),
    `${plural(doc.standbys.length, 'standby', 'standbys')}${doc.standbys.some((x) => x.settings) ? ` (own settings read from ${doc.standbys.filter((x) => x.settings).length})` : ''}`,
  ];
  if (doc.publications.length) parts.push(plural(doc.publications.length, 'publication'));
  if (doc.standbySettings) parts.push(`this standby's own settings (upstream ${describeUpstream(doc.standbySettings)})`);
  return `captured ${parts.join(', ')}`;
}

function describeUpstream(s: StandbySettings): string {
  const u = s.upstream;
  if (u?.host) return `${u.host}${u.port ? `:${u.port}` : ''}${u.slot ? ` slot ${u.slot}` : ''}`;
  return s.primarySlotName ? `slot ${s.primarySlotName}` : 'unknown';
}

/**
 * The topology as `pgbacula info` shows it. `redact` masks passwords of conninfo strings; it is
 * the caller's (src/config/redact.ts), so no secret is ever printed.
 */
export function describeTopology(doc: TopologyDocument, redact: (s: string) => string): string[] {
  const lines = [`topology: ${doc.role}, timeline ${doc.timeline}, lsn ${doc.lsn}, wal_level ${doc.walLevel}${doc.synchronousStandbyNames ? `, synchronous_standby_names '${doc.synchronousStandbyNames}'` : ''} (captured ${doc.capturedAt})`];
  for (const s of doc.slots) {
    lines.push(`  slot ${s.name}: ${s.type}${s.type === 'logical' ? ` (${s.plugin}, database ${s.database}${s.twoPhase ? ', two_phase' : ''}${s.failover ? ', failover' : ''})` : ''}${s.temporary ? ', temporary' : ''}, restart_lsn ${s.restartLsn ?? '-'}${s.confirmedFlushLsn ? `, confirmed_flush_lsn ${s.confirmedFlushLsn}` : ''}`);
  }
  for (const s of doc.standbys) {
    lines.push(`  standby ${s.name}: ${s.syncState ?? 'async'}${s.slot ? `, slot ${s.slot}` : ', no slot'}${s.clientAddr ? `, from ${s.clientAddr}` : ''}${
      s.settings ? `; its own settings (${s.reachedAt ?? 'reached'}): primary_conninfo ${s.settings.primaryConninfo === null ? 'not readable' : `'${redact(s.settings.primaryConninfo)}'`}, primary_slot_name ${s.settings.primarySlotName || 'none'}` : ''}`);
  }
  for (const s of doc.subscriptions) {
    lines.push(`  subscription ${s.name} in ${s.database}: publications ${s.publications.join(', ')}, ${s.enabled ? 'enabled' : 'disabled'}, slot ${s.slotName ?? 'NONE'}, connection ${s.conninfo === null ? 'not readable' : redact(s.conninfo)}`);
  }
  for (const p of doc.publications) {
    lines.push(`  publication ${p.name} in ${p.database}: ${p.allTables ? 'all tables' : `${p.tables.length} table(s)`}, ${p.actions.join('/')}`);
  }
  const own = doc.standbySettings;
  if (own) {
    lines.push(`  this standby: primary_conninfo ${own.primaryConninfo === null ? 'not readable' : `'${redact(own.primaryConninfo)}'`}, primary_slot_name ${own.primarySlotName || 'none'}, standby.signal ${own.standbySignal ? 'present' : 'absent'}, upstream ${describeUpstream(own)}`);
  }
  for (const n of doc.notes) lines.push(`  note: ${n}`);
  return lines;
}

// ---------------------------------------------------------------- SQL

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal that reads the same whatever standard_conforming_strings is. */
export function quoteLiteral(value: string): string {
  const body = value.replace(/'/g, "''");
  return value.includes('\\') ? `E'${body.replace(/\\/g, '\\\\')}'` : `'${body}'`;
}

/** One statement and the database it runs in (null: any — the maintenance database). */
export interface TopologyStatement {
  /** The slot or subscription it recreates. */
  readonly name: string;
  readonly database: string | null;
  /** What it recreates, for the job log. */
  readonly what: string;
  readonly sql: string;
}

/**
 * The statements that recreate the persistent slots on a server of `major`. Each creates its slot
 * only if no slot of that name exists, so running them again does nothing. Physical slots reserve
 * WAL at once; logical slots start at the server's current position.
 */
export function slotStatements(doc: TopologyDocument, major: number): TopologyStatement[] {
  const f = versionFacts(major);
  return persistentSlots(doc).map((s) => {
    const absent = `WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(s.name)})`;
    if (s.type === 'physical') {
      return { name: s.name, database: null, what: `physical slot ${s.name}`, sql: `SELECT slot_name FROM pg_create_physical_replication_slot(${quoteLiteral(s.name)}, true) ${absent};` };
    }
    const args = [quoteLiteral(s.name), quoteLiteral(s.plugin!), 'false'];
    if (f.slotTwoPhase || f.slotFailover) args.push(s.twoPhase ? 'true' : 'false');
    if (f.slotFailover) args.push(s.failover ? 'true' : 'false');
    return { name: s.name, database: s.database, what: `logical slot ${s.name} (${s.plugin}, database ${s.database})`, sql: `SELECT slot_name FROM pg_create_logical_replication_slot(${args.join(', ')}) ${absent};` };
  });
}

function renderScript(head: readonly string[], statements: readonly TopologyStatement[], after: (s: TopologyStatement) => readonly string[] = () => []): string {
  const out = [...head.map((l) => `-- ${l}`), ''];
  let current: string | null | undefined;
  for (const s of statements) {
    if (s.database !== null && s.database !== current) {
      out.push(`\\connect ${quoteIdent(s.database)}`);
      current = s.database;
    }
    out.push(`-- ${s.what}`, s.sql, ...after(s), '');
  }
  return out.join('\n');
}

/** recreate_slots.sql: for psql, as a superuser (or a role with REPLICATION) on the restored primary. */
export function slotScript(doc: TopologyDocument, major: number): string {
  const logical = persistentSlots(doc).some((s) => s.type === 'logical');
  return renderScript(
    [
      `Replication slots of the server backed up (${doc.role}, captured ${doc.capturedAt}), written by pgbacula restore.`,
      'Run with: psql -X -v ON_ERROR_STOP=1 -d postgres -f recreate_slots.sql (a slot that exists is left as it is).',
      ...(logical ? ['Logical slots start at the current WAL position: their consumers must resynchronise (changes made', 'between the backup and now cannot be decoded from them).'] : []),
    ],
    slotStatements(doc, major),
  );
}

function optionValue(v: string | boolean): string {
  return typeof v === 'boolean' ? (v ? 'true' : 'false') : quoteLiteral(v);
}

/**
 * The statements that create the captured subscriptions on a server of `major`: disabled, without
 * connecting to the publisher, creating a slot or copying data (connect = false), each only if the
 * subscription is absent from its database. The options the target server does not know are left out.
 */
export function subscriptionStatements(doc: TopologyDocument, major: number): TopologyStatement[] {
  const f = versionFacts(major).subscriptionOptions;
  const known: Record<string, boolean> = {
    binary: f.binary,
    streaming: f.streaming !== 'none',
    two_phase: f.twoPhase,
    disable_on_error: f.disableOnError,
    password_required: f.passwordRequired,
    run_as_owner: f.runAsOwner,
    origin: f.origin,
    failover: f.failover,
  };
  return doc.subscriptions.filter((s) => s.conninfo !== null).map((s) => {
    const opts: string[] = ['connect = false', `slot_name = ${s.slotName === null ? 'NONE' : quoteLiteral(s.slotName)}`, `synchronous_commit = ${quoteLiteral(s.synchronousCommit)}`];
    for (const [k, v] of Object.entries(s.options)) {
      if (!known[k]) continue;
      // Streaming is captured as off/on/parallel; 'parallel' exists from 16 only: an older target streams 'on'.
      opts.push(`${k} = ${optionValue(k === 'streaming' && f.streaming === 'bool' && v === 'parallel' ? 'on' : v)}`);
    }
    const create = `CREATE SUBSCRIPTION ${quoteIdent(s.name)} CONNECTION ${quoteLiteral(s.conninfo!)} PUBLICATION ${s.publications.map(quoteIdent).join(', ')} WITH (${opts.join(', ')})`;
    // A DO block, so an existing subscription (a physical restore brings them back with the
    // catalog) is left as it is and the script can run again. CREATE SUBSCRIPTION with
    // connect = false creates no slot and may run inside one.
    const sql = [
      'DO $pgbacula$ BEGIN',
      `  IF NOT EXISTS (SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = current_database() AND s.subname = ${quoteLiteral(s.name)}) THEN`,
      `    EXECUTE ${quoteLiteral(create)};`,
      `    EXECUTE ${quoteLiteral(`ALTER SUBSCRIPTION ${quoteIdent(s.name)} OWNER TO ${quoteIdent(s.owner)}`)};`,
      '  END IF;',
      'END $pgbacula$;',
    ].join('\n');
    return { name: s.name, database: s.database, what: `subscription ${s.name} (publications ${s.publications.join(', ')}; ${s.enabled ? 'enabled' : 'disabled'} when captured)`, sql };
  });
}

/**
 * recreate_subscriptions.sql.DISABLED: staged for review, never run by default. It holds the
 * connection strings as the catalog held them (passwords included), so it is written readable by
 * its owner only.
 */
export function subscriptionScript(doc: TopologyDocument, major: number): string {
  const unreadable = doc.subscriptions.filter((s) => s.conninfo === null).map((s) => s.name);
  const statements = subscriptionStatements(doc, major);
  return renderScript(
    [
      `Subscriptions of the server backed up (captured ${doc.capturedAt}), staged by pgbacula restore for review.`,
      'Each is created only where it is missing, DISABLED, without connecting to its publisher, creating a slot or',
      'copying data (connect = false). The connection strings are as the catalog held them: this file may hold passwords.',
      'Run with: psql -X -v ON_ERROR_STOP=1 -d postgres -f recreate_subscriptions.sql.DISABLED',
      'Then, once the publisher has the slot each subscription names (its recreate_slots.sql), for each one:',
      '  ALTER SUBSCRIPTION <name> ENABLE;  (and REFRESH PUBLICATION WITH (copy_data = false) if tables changed)',
      ...(unreadable.length ? [`Left out (the role that took the backup could not read their connection): ${unreadable.join(', ')}.`] : []),
    ],
    statements,
    (s) => [`-- to start it: ALTER SUBSCRIPTION ${quoteIdent(s.name)} ENABLE;`],
  );
}

/** The standby settings file of one captured standby: recovery settings as a restore writes them. */
export function standbySettingsText(doc: TopologyDocument, s: StandbyRecord): string {
  const r = rebuildSettings(s);
  return [
    `# standby ${s.name} of the server backed up (captured ${doc.capturedAt})`,
    `# sync state ${s.syncState ?? 'unknown'}${s.clientAddr ? `, connected from ${s.clientAddr}` : ''}`,
    `# primary_conninfo: ${s.settings?.primaryConninfo ? `as the standby itself had it (read at ${s.reachedAt ?? 'capture'})` : 'the server backed up, with the standby\'s user and application_name'}`,
    `primary_conninfo = ${gucQuoted(r.primaryConninfo)}`,
    `primary_slot_name = ${gucQuoted(r.primarySlotName ?? '')}`,
    `recovery_target_timeline = 'latest'`,
    '',
  ].join('\n');
}

function gucQuoted(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}
