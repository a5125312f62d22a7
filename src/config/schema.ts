/**
 * ONE definition of every parameter pgbacula accepts: backup and restore parameters (Bacula
 * plugin strings, restore-time Plugin Options, CLI flags), connection settings and the keys of
 * pgbacula.conf. Validation, the plugin-string parser, CLI flags and help, the README tables and
 * the FD shim's list of accepted keys are all derived from this table (pgBackRest's habit:
 * definitions in data, code derived from them).
 */

export type ParamType =
  | 'string'
  | 'int'
  | 'bool'
  | 'enum'
  | 'time'
  | 'lsn'
  | 'xid'
  | 'path'
  | 'list'
  | 'host';

/**
 * Where a parameter may be given.
 * - backup: Bacula FileSet plugin string and `pgbacula backup` flags
 * - restore: restore-time Plugin Options and `pgbacula restore` flags
 * - connection: `[connection]` of pgbacula.conf, flags, and (except secrets) plugin strings
 * - options: `[options]` of pgbacula.conf (also accepted as flags)
 * - protocol: keys the Bacula FD itself adds or interprets; accepted, never documented as ours
 */
export type ParamScope = 'backup' | 'restore' | 'connection' | 'options' | 'protocol';

export interface ParameterDef {
  readonly name: string;
  readonly type: ParamType;
  readonly scopes: readonly ParamScope[];
  /** Default as text, exactly as a user would write it; undefined = no default. */
  readonly default?: string;
  /** What the default means when it is not a literal value (shown in docs instead). */
  readonly defaultDoc?: string;
  /** A default that depends on who runs pgbacula (used when `default` is absent). */
  readonly defaultOf?: () => string;
  /** A value the schema knows but this version cannot honour: refused, with why and what to do. */
  readonly unavailable?: { readonly value: string; readonly why: string; readonly hint: string };
  readonly min?: number;
  readonly max?: number;
  readonly values?: readonly string[];
  readonly doc: string;
  /** Never printed, logged, or accepted where it would be stored in clear (plugin strings). */
  readonly secret?: boolean;
  /** Accepted in a Bacula plugin string (FileSet or Plugin Options). */
  readonly inPluginString: boolean;
  /** Offered as a bconsole restore "Plugin Option" by the FD shim. */
  readonly restoreOption?: boolean;
}

const BACKUP_MODES = ['dump', 'parallel_dump', 'pitr', 'pitr_block', 'cdp'] as const;
export type BackupMode = (typeof BACKUP_MODES)[number];

export const PARAMETERS: readonly ParameterDef[] = [
  // ---- backup parameters
  { name: 'mode', type: 'enum', scopes: ['backup'], default: 'dump', values: BACKUP_MODES, doc: 'backup strategy', inPluginString: true },
  { name: 'database', type: 'list', scopes: ['backup'], default: '*', doc: 'databases to dump (dump modes): a name or a comma list; * = all', inPluginString: true },
  { name: 'exclude_database', type: 'list', scopes: ['backup'], default: '', doc: 'databases to skip (comma list)', inPluginString: true },
  { name: 'parallel_jobs', type: 'int', scopes: ['backup', 'options'], default: '4', min: 1, max: 64, doc: 'pg_dump -j, and the worker count of physical modes (capped at the cores)', inPluginString: true },
  { name: 'dump_format', type: 'enum', scopes: ['backup'], default: 'custom', values: ['custom', 'directory', 'tar', 'plain'], doc: 'pg_dump -F', inPluginString: true },
  { name: 'compression_level', type: 'int', scopes: ['backup'], default: '0', min: 0, max: 9, doc: '0 = leave compression to Bacula', inPluginString: true },
  { name: 'include_blobs', type: 'bool', scopes: ['backup'], default: 'true', doc: 'large objects in dumps', inPluginString: true },
  { name: 'track_replication_state', type: 'bool', scopes: ['backup', 'options'], default: 'false', doc: 'physical modes: capture the replication topology at backup start (role, LSN, slots, subscriptions, publications, standbys and, on a standby, its own settings) under topology/ of the backup; a restore recreates the slots and stages the subscriptions (docs/replication-topology.md)', inPluginString: true },
  { name: 'backup_from_standby', type: 'bool', scopes: ['backup', 'options'], default: 'false', doc: 'connect with target_session_attrs=standby', inPluginString: true },
  { name: 'standby_host', type: 'host', scopes: ['backup'], default: '', doc: 'explicit standby (overrides the connection host)', inPluginString: true },
  { name: 'standby_hosts', type: 'list', scopes: ['backup', 'options'], defaultDoc: 'none', doc: 'track_replication_state: standbys (host[:port], comma-separated) whose own primary_conninfo and primary_slot_name are read at capture, with the connection\'s user and its password or pgpass', inPluginString: true },
  { name: 'pitr_label', type: 'string', scopes: ['backup'], default: 'auto', doc: 'backup label passed to the backup-start call (auto = bacula_<jobid> or pgbacula_<time>)', inPluginString: true },
  { name: 'wal_segment_overlap', type: 'int', scopes: ['backup'], default: '2', min: 1, max: 32, doc: 'extra WAL segments kept in the spool after a job', inPluginString: true },
  { name: 'type', type: 'enum', scopes: ['backup'], default: 'full', values: ['full', 'incr', 'diff'], doc: 'standalone pgbacula backup: full, incr (changed blocks since the last backup) or diff (since the last full); mode pitr_block. Bacula jobs take their level instead', inPluginString: false },
  { name: 'repo_bundle', type: 'enum', scopes: ['backup'], default: 'auto', values: ['auto', 'on', 'off'], doc: 'standalone pgbacula backup --repo: store the cluster\'s files of at most 256 KiB one after another in bundle files of about 16 MiB (one create and one fsync per bundle instead of per file; restore, verify and info unchanged). auto = on, except mode pitr_block with compression_level=0, whose files/pgdata/ stays a plain directory PostgreSQL 17+\'s pg_combinebackup can read (docs/repository-format.md)', inPluginString: false },
  { name: 'pitr_block_summary_days', type: 'int', scopes: ['backup'], default: '14', min: 1, max: 365, doc: 'how far back WAL summaries are kept and usable', inPluginString: true },
  { name: 'cdp_window_seconds', type: 'int', scopes: ['backup'], default: '300', min: 10, max: 86400, doc: 'how often cdp ships WAL: the interval of the Bacula Schedule that runs the cdp Job (a job more than twice this after the previous one warns)', inPluginString: true },
  { name: 'cdp_max_lag_seconds', type: 'int', scopes: ['backup'], default: '60', min: 1, max: 86400, doc: 'cdp: a job warns when the receiver\'s flush lags the server by more than this many seconds', inPluginString: true },
  { name: 'cdp_start_receiver', type: 'bool', scopes: ['backup'], default: 'false', doc: 'cdp: a job that finds no wal-receive running starts one that outlives it (detached, as the spool\'s owner, with slot_name, application_name, synchronous_receive); off: the job fails with the fix (run the receiver under systemd instead)', inPluginString: true },
  { name: 'cdp_max_lag_mb', type: 'int', scopes: ['backup'], default: '1024', min: 1, max: 1048576, doc: 'cdp: a job warns when the receiver\'s slot holds more WAL than this (MiB between the server and restart_lsn)', inPluginString: true },
  // Per user: a directory one user made 0700 (root through Bacula) must not block another (postgres
  // running the CLI). /var/tmp, not $TMPDIR: staged dumps can be large and /tmp is often a small tmpfs.
  { name: 'tmpdir', type: 'path', scopes: ['backup', 'options'], defaultDoc: '/var/tmp/pgbacula-<uid>', defaultOf: () => `/var/tmp/pgbacula-${process.getuid?.() ?? 0}`, doc: 'staging directory (absolute path), made 0700 for the user running pgbacula', inPluginString: true },
  { name: 'exclude_tablespace', type: 'list', scopes: ['backup'], default: '', doc: 'tablespaces to skip (oid or name list)', inPluginString: true },
  { name: 'connection_timeout', type: 'int', scopes: ['backup', 'connection'], default: '30', min: 1, max: 600, doc: 'seconds to wait for a connection', inPluginString: true },
  { name: 'verify_checksum', type: 'bool', scopes: ['backup'], default: 'true', doc: 'verify every data page checksum while backing up', inPluginString: true },

  // ---- restore parameters
  { name: 'restore_mode', type: 'enum', scopes: ['restore'], default: 'auto', values: ['auto', 'dump', 'pitr', 'pitr_block'], doc: 'normally read from the backup metadata', inPluginString: true, restoreOption: true },
  { name: 'target_time', type: 'time', scopes: ['restore'], defaultDoc: 'end of WAL', doc: 'ISO-8601 time with zone; recovery stops at that second (one target_* only)', inPluginString: true, restoreOption: true },
  { name: 'target_lsn', type: 'lsn', scopes: ['restore'], defaultDoc: 'none', doc: 'stop at this WAL location', inPluginString: true, restoreOption: true },
  { name: 'target_xid', type: 'xid', scopes: ['restore'], defaultDoc: 'none', doc: 'stop after this transaction id', inPluginString: true, restoreOption: true },
  { name: 'target_name', type: 'string', scopes: ['restore'], defaultDoc: 'none', doc: 'stop at this named restore point (pg_create_restore_point)', inPluginString: true, restoreOption: true },
  { name: 'target_database', type: 'string', scopes: ['restore'], defaultDoc: 'all', doc: 'dump modes: restore only this database', inPluginString: true, restoreOption: true },
  { name: 'pgdata_dir', type: 'path', scopes: ['restore'], defaultDoc: 'from backup', doc: 'where PGDATA is laid down (absolute path)', inPluginString: true, restoreOption: true },
  { name: 'recovery_target_action', type: 'enum', scopes: ['restore'], default: 'promote', values: ['promote', 'pause', 'shutdown'], doc: 'what the server does when the target is reached', inPluginString: true, restoreOption: true },
  { name: 'recreate_replication_slots', type: 'bool', scopes: ['restore'], default: 'true', doc: 'run the captured slot SQL', inPluginString: true, restoreOption: true },
  { name: 'recreate_subscriptions', type: 'bool', scopes: ['restore'], default: 'false', doc: 'subscription SQL is staged as .DISABLED for review, never run by default', inPluginString: true, restoreOption: true },
  { name: 'restore_as_standby', type: 'bool', scopes: ['restore'], default: 'false', doc: 'write standby.signal + primary_conninfo instead of promoting', inPluginString: true, restoreOption: true },
  { name: 'primary_conninfo', type: 'string', scopes: ['restore'], defaultDoc: 'captured', doc: 'conninfo for restore_as_standby (default: the one the backup captured for standby_name, or of the standby backed up)', inPluginString: true, restoreOption: true },
  { name: 'standby_name', type: 'string', scopes: ['restore'], defaultDoc: 'the only one captured', doc: 'restore_as_standby: which captured standby (its application_name) to rebuild — its primary_conninfo and primary_slot_name are used', inPluginString: true, restoreOption: true },
  { name: 'skip_wal_replay', type: 'bool', scopes: ['restore'], default: 'false', doc: 'crash-consistent restore only', inPluginString: true, restoreOption: true },
  { name: 'restore_port', type: 'int', scopes: ['restore'], defaultDoc: 'as backed up', min: 1, max: 65535, doc: 'port the restored server listens on (written to postgresql.auto.conf); for restore drills next to the source', inPluginString: true, restoreOption: true },
  { name: 'remap_tablespace', type: 'list', scopes: ['restore'], defaultDoc: 'original locations', doc: 'OID=/new/dir pairs: where tablespaces are laid down instead of their original location', inPluginString: true, restoreOption: true },
  { name: 'archive_after_restore', type: 'bool', scopes: ['restore'], default: 'false', doc: 'keep archive_mode/archive_command in the restored cluster (default off, so a restored copy never writes into the source\'s WAL archive; turn on for a real disaster recovery)', inPluginString: true, restoreOption: true },
  { name: 'wal_from_spool', type: 'bool', scopes: ['restore'], default: 'false', doc: 'physical restores through Bacula: replay also the WAL the local wal_spool holds beyond the restored jobs (segments archived since the last job, the cdp receiver\'s open segment) — the spool\'s RPO instead of the media\'s; the spool is only read (docs/cdp.md)', inPluginString: true, restoreOption: true },
  { name: 'overwrite_existing', type: 'bool', scopes: ['restore'], default: 'false', doc: 'safety gate: a non-empty target is refused unless true', inPluginString: true, restoreOption: true },

  // ---- connection ([connection] of pgbacula.conf; libpq environment variables apply when unset)
  // host, port, user and config are also restore-time Plugin Options: a dump restore goes into the
  // server they name (e.g. a fresh server next to the source), not necessarily the one backed up.
  { name: 'host', type: 'host', scopes: ['connection'], defaultDoc: 'PGHOST or the local socket', doc: 'server host name, address or socket directory', inPluginString: true, restoreOption: true },
  { name: 'port', type: 'int', scopes: ['connection'], defaultDoc: 'PGPORT or 5432', min: 1, max: 65535, doc: 'server port', inPluginString: true, restoreOption: true },
  { name: 'user', type: 'string', scopes: ['connection'], defaultDoc: 'PGUSER or the OS user', doc: 'role to connect as', inPluginString: true, restoreOption: true },
  { name: 'password', type: 'string', scopes: ['connection'], defaultDoc: 'PGPASSWORD or the pgpass file', doc: 'password (config file only: never in a plugin string or on a command line)', secret: true, inPluginString: false },
  { name: 'pgpass_file', type: 'path', scopes: ['connection'], defaultDoc: 'PGPASSFILE or ~/.pgpass', doc: 'password file in libpq format', inPluginString: true },
  { name: 'dbname', type: 'string', scopes: ['connection'], defaultDoc: 'PGDATABASE or postgres', doc: 'maintenance database to connect to', inPluginString: true },
  { name: 'sslmode', type: 'enum', scopes: ['connection'], defaultDoc: 'PGSSLMODE or prefer', values: ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'], doc: 'libpq sslmode', inPluginString: true },

  // ---- [options] of pgbacula.conf (those shared with backup are above)
  { name: 'wal_spool', type: 'path', scopes: ['options'], default: '/var/lib/pgbacula/wal-spool', doc: 'local WAL spool fed by wal-push / wal-receive (a restore reads it with wal_from_spool)', inPluginString: true, restoreOption: true },
  // A restore Plugin Option too: bconsole cannot pass the CLI's --pg-bin-dir, and the client a
  // restore runs on may keep its binaries elsewhere than the one backed up (issue 9, item 10).
  { name: 'pg_bin_dir', type: 'path', scopes: ['options'], defaultDoc: 'searched: client tools in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, /usr/local/pgsql/bin, PATH (newest); server binaries of the backup\'s major in /usr/lib/postgresql/<major>/bin', doc: 'bin directory of PostgreSQL: pg_dump, pg_restore, psql (dump modes) and, for a physical restore, postgres and pg_ctl of the backup\'s major', inPluginString: true, restoreOption: true },
  // ---- wal-receive (the streaming receiver that feeds the spool or a repository)
  { name: 'slot_name', type: 'string', scopes: ['options'], default: 'pgbacula', doc: 'wal-receive: physical replication slot to stream from; it holds the WAL on the server until it is archived (empty = no slot: WAL can be lost while the receiver is down)', inPluginString: true },
  { name: 'create_slot', type: 'bool', scopes: ['options'], default: 'false', doc: 'wal-receive: create the slot (RESERVE_WAL) when it does not exist', inPluginString: true },
  { name: 'synchronous_receive', type: 'bool', scopes: ['options'], default: 'false', doc: 'wal-receive: fsync and report WAL as flushed as soon as it arrives, so the server can wait for it (list application_name in synchronous_standby_names)', inPluginString: true },
  { name: 'application_name', type: 'string', scopes: ['options'], default: 'pgbacula_wal_receive', doc: 'wal-receive: application_name of its replication connection (pg_stat_replication, synchronous_standby_names)', inPluginString: true },
  { name: 'status_interval', type: 'int', scopes: ['options'], default: '10', min: 1, max: 3600, doc: 'wal-receive: seconds between status updates to the server (keep it below wal_sender_timeout)', inPluginString: true },

  // ---- where pgbacula itself reads its settings
  { name: 'config', type: 'path', scopes: ['backup', 'restore'], defaultDoc: '/etc/pgbacula/pgbacula.conf if present', doc: 'pgbacula.conf to read', inPluginString: true, restoreOption: true },
  { name: 'cluster', type: 'string', scopes: ['backup', 'restore'], defaultDoc: 'system identifier', doc: 'cluster name used in virtual paths and the repository', inPluginString: true },

  // ---- keys the Bacula FD adds or interprets itself
  { name: 'abort_on_error', type: 'bool', scopes: ['protocol'], default: 'false', doc: 'FD: every backend error becomes fatal', inPluginString: true },
  { name: 'listing', type: 'string', scopes: ['protocol'], doc: 'FD: path listed by .ls', inPluginString: true },
  { name: 'query', type: 'string', scopes: ['protocol'], doc: 'FD: .query parameter', inPluginString: true },
  { name: 'accurate', type: 'bool', scopes: ['protocol'], doc: 'FD: the job is an accurate one', inPluginString: true },
];

const BY_NAME = new Map(PARAMETERS.map((p) => [p.name, p]));

export function findParameter(name: string): ParameterDef | undefined {
  return BY_NAME.get(name.toLowerCase());
}

export function parametersIn(scope: ParamScope): ParameterDef[] {
  return PARAMETERS.filter((p) => p.scopes.includes(scope));
}

/** Keys accepted in `[connection]` and `[options]` of pgbacula.conf. */
export const CONFIG_FILE_SECTIONS = {
  connection: ['host', 'port', 'user', 'password', 'pgpass_file', 'dbname', 'sslmode', 'connection_timeout'],
  options: ['backup_from_standby', 'track_replication_state', 'standby_hosts', 'parallel_jobs', 'tmpdir', 'wal_spool', 'pg_bin_dir', 'cluster', 'slot_name', 'create_slot', 'synchronous_receive', 'application_name', 'status_interval'],
} as const satisfies Record<string, readonly string[]>;

export type ConfigSection = keyof typeof CONFIG_FILE_SECTIONS;
