/**
 * Every per-major difference pgbacula relies on, in one table, so no `if (major >= 15)` is
 * scattered through the code: elsewhere a difference is read by name (`versionFacts(m).walSummaries`).
 * test/unit/version-facts-only.test.ts fails on a major or version-number comparison outside
 * this file.
 */
export const SUPPORTED_MAJORS = [10, 11, 12, 13, 14, 15, 16, 17, 18] as const;
export type Major = (typeof SUPPORTED_MAJORS)[number];

/** The supported majors as operators read them: "PostgreSQL 10 to 18". */
export const SUPPORTED_RANGE = `PostgreSQL ${SUPPORTED_MAJORS[0]} to ${SUPPORTED_MAJORS[SUPPORTED_MAJORS.length - 1]}`;

/**
 * What differs by major, decided for any major number: a data directory, a client tool or a
 * server outside SUPPORTED_MAJORS gets the behaviour of the nearest end of the range.
 */
export interface VersionFacts {
  readonly major: number;
  /** Non-exclusive backup start/stop functions (renamed in 15). */
  readonly backupStart: 'pg_backup_start' | 'pg_start_backup';
  readonly backupStop: 'pg_backup_stop' | 'pg_stop_backup';
  /** Their signatures, as GRANT EXECUTE and has_function_privilege name them. */
  readonly backupStartSignature: 'pg_backup_start(text, boolean)' | 'pg_start_backup(text, boolean, boolean)';
  readonly backupStopSignature: 'pg_backup_stop(boolean)' | 'pg_stop_backup(boolean, boolean)';
  /** recovery.conf before 12; recovery.signal / standby.signal + GUCs (postgresql.auto.conf) from 12. */
  readonly recoveryConfig: 'recovery.conf' | 'signal-files';
  /** pg_checksums --enable exists from 12; before, checksums are chosen at initdb only. */
  readonly checksumsEnableOffline: boolean;
  /** Server-side WAL summaries (summarize_wal, pg_wal/summaries) exist from 17. */
  readonly walSummaries: boolean;
  /**
   * pg_combinebackup exists from 17: it combines plain backups whose own backup_label names the
   * backup each incremental one counts from (INCREMENTAL FROM LSN / TLI).
   */
  readonly combineBackup: boolean;
  /** The predefined role pg_read_all_data exists from 14. */
  readonly readAllDataRole: boolean;
  /** The setting idle_session_timeout exists from 14. */
  readonly idleSessionTimeout: boolean;
  /** Temporary replication slots from 10; READ_REPLICATION_SLOT and the generic option syntax from 15. */
  readonly readReplicationSlot: boolean;
  /** The rest of a segment after a WAL switch is zeros, page headers included, from 11 (10 writes headers). */
  readonly switchZeroesSegmentTail: boolean;
  /** WAL records may carry block id 252 (XLR_BLOCK_ID_TOPLEVEL_XID, 4 bytes) from 14. */
  readonly walTopLevelXidBlock: boolean;
  /** bimg_info bits that mark a compressed full-page image: BKPIMAGE_IS_COMPRESSED, lz4/zstd bits from 15. */
  readonly walImageCompressedMask: number;
  /** libpq's target_session_attrs=standby exists from 14 (a client-tool major). */
  readonly targetSessionAttrsStandby: boolean;
  /** pg_replication_slots has wal_status and safe_wal_size (the WAL a slot may still retain) from 13. */
  readonly slotSafeWalSize: boolean;
  /** DROP DATABASE … WITH (FORCE) exists from 13. */
  readonly dropDatabaseForce: boolean;
  /**
   * The contents of pg_dynshmem, pg_notify, pg_serial, pg_snapshots and pg_subtrans are left
   * out of a base backup (as pg_basebackup does) for 10 and later.
   */
  readonly excludeTransientDirectories: boolean;
  /** initdb enables data checksums by default from 18. */
  readonly checksumsDefaultOn: boolean;
  /**
   * Database rmgr record types (xl_info & 0xF0): ≤ 14 CREATE 0x00 and DROP 0x10; 15+
   * CREATE_FILE_COPY 0x00, CREATE_WAL_LOG 0x10, DROP 0x20. Every create carries (db, tablespace) first.
   */
  readonly walDbaseInfo: { readonly createFileCopy: number; readonly createWalLog: number | undefined; readonly drop: number };
  /** XLOG_DBASE_DROP main data: ≤ 12 (u32 db, u32 tablespace); 13+ (u32 db, i32 n, n × u32 tablespace). */
  readonly walDbaseDropTablespaceList: boolean;
  /** Offset of wal_level (i32) in XLOG_PARAMETER_CHANGE: 16 in ≤ 11, 20 from 12 (max_wal_senders added before it). */
  readonly walParameterChangeWalLevelOffset: number;
  /**
   * From 17 the shutdown checkpoint (CheckPoint.wal_level at 20), XLOG_CHECKPOINT_REDO (0xE0, i32
   * wal_level at 0) and XLOG_END_OF_RECOVERY (wal_level at 16) carry wal_level; undefined before.
   */
  readonly walLevelInCheckpointRecords: { readonly checkpointShutdown: number; readonly checkpointRedoInfo: number; readonly endOfRecovery: number } | undefined;
  /** Abort records may carry the DBINFO item (xinfo bit 0) from 11; in 10 they never do. */
  readonly walXactAbortDbInfo: boolean;
  /**
   * What pg_replication_slots shows and pg_create_logical_replication_slot takes: the two_phase
   * column and argument from 14, failover from 17 (docs/replication-topology.md).
   */
  readonly slotTwoPhase: boolean;
  readonly slotFailover: boolean;
  /**
   * The pg_subscription columns that map to CREATE SUBSCRIPTION options, by the release that
   * added them: binary and streaming 14 (streaming a bool until 15, a char f/t/p from 16),
   * two_phase and disable_on_error 15, password_required, run_as_owner and origin 16, failover 17.
   */
  readonly subscriptionOptions: {
    readonly binary: boolean;
    readonly streaming: 'none' | 'bool' | 'char';
    readonly twoPhase: boolean;
    readonly disableOnError: boolean;
    readonly passwordRequired: boolean;
    readonly runAsOwner: boolean;
    readonly origin: boolean;
    readonly failover: boolean;
  };
  /** pg_publication columns: pubtruncate from 11, pubviaroot from 13. */
  readonly publicationTruncate: boolean;
  readonly publicationViaRoot: boolean;
  /** pg_stat_wal_receiver names the upstream (sender_host, sender_port) from 11. */
  readonly walReceiverSender: boolean;
}

/** The facts that are constants of each supported release. */
export interface SupportedVersionFacts extends VersionFacts {
  readonly major: Major;
  /** XLOG_PAGE_MAGIC of the major (validating WAL segment files). */
  readonly xlogPageMagic: number;
  /** pg_control_version in global/pg_control (bytes 8–11). */
  readonly pgControlVersion: number;
}

const RELEASE: Record<Major, { readonly xlogPageMagic: number; readonly pgControlVersion: number }> = {
  10: { xlogPageMagic: 0xd097, pgControlVersion: 1002 },
  11: { xlogPageMagic: 0xd098, pgControlVersion: 1100 },
  12: { xlogPageMagic: 0xd101, pgControlVersion: 1201 },
  13: { xlogPageMagic: 0xd106, pgControlVersion: 1300 },
  14: { xlogPageMagic: 0xd10d, pgControlVersion: 1300 },
  15: { xlogPageMagic: 0xd110, pgControlVersion: 1300 },
  16: { xlogPageMagic: 0xd113, pgControlVersion: 1300 },
  17: { xlogPageMagic: 0xd116, pgControlVersion: 1700 },
  18: { xlogPageMagic: 0xd118, pgControlVersion: 1800 },
};

export function isSupportedMajor(major: number): major is Major {
  return (SUPPORTED_MAJORS as readonly number[]).includes(major);
}

function decide(major: number): VersionFacts {
  const renamedBackupFunctions = major >= 15;
  return {
    major,
    backupStart: renamedBackupFunctions ? 'pg_backup_start' : 'pg_start_backup',
    backupStop: renamedBackupFunctions ? 'pg_backup_stop' : 'pg_stop_backup',
    backupStartSignature: renamedBackupFunctions ? 'pg_backup_start(text, boolean)' : 'pg_start_backup(text, boolean, boolean)',
    backupStopSignature: renamedBackupFunctions ? 'pg_backup_stop(boolean)' : 'pg_stop_backup(boolean, boolean)',
    recoveryConfig: major >= 12 ? 'signal-files' : 'recovery.conf',
    checksumsEnableOffline: major >= 12,
    walSummaries: major >= 17,
    combineBackup: major >= 17,
    readAllDataRole: major >= 14,
    idleSessionTimeout: major >= 14,
    readReplicationSlot: major >= 15,
    switchZeroesSegmentTail: major >= 11,
    walTopLevelXidBlock: major >= 14,
    walImageCompressedMask: major >= 15 ? 0x1c : 0x02,
    targetSessionAttrsStandby: major >= 14,
    dropDatabaseForce: major >= 13,
    slotSafeWalSize: major >= 13,
    excludeTransientDirectories: major >= 10,
    checksumsDefaultOn: major >= 18,
    walDbaseInfo: major >= 15 ? { createFileCopy: 0x00, createWalLog: 0x10, drop: 0x20 } : { createFileCopy: 0x00, createWalLog: undefined, drop: 0x10 },
    walDbaseDropTablespaceList: major >= 13,
    walParameterChangeWalLevelOffset: major >= 12 ? 20 : 16,
    walLevelInCheckpointRecords: major >= 17 ? { checkpointShutdown: 20, checkpointRedoInfo: 0xe0, endOfRecovery: 16 } : undefined,
    walXactAbortDbInfo: major >= 11,
    slotTwoPhase: major >= 14,
    slotFailover: major >= 17,
    subscriptionOptions: {
      binary: major >= 14,
      streaming: major >= 16 ? 'char' : major >= 14 ? 'bool' : 'none',
      twoPhase: major >= 15,
      disableOnError: major >= 15,
      passwordRequired: major >= 16,
      runAsOwner: major >= 16,
      origin: major >= 16,
      failover: major >= 17,
    },
    publicationTruncate: major >= 11,
    publicationViaRoot: major >= 13,
    walReceiverSender: major >= 11,
  };
}

// Built once: the WAL scanner and the base-backup walk look facts up per segment and per entry.
const TABLE = new Map<number, VersionFacts>(
  SUPPORTED_MAJORS.map((m): [number, SupportedVersionFacts] => [m, Object.freeze({ ...decide(m), ...RELEASE[m], major: m })]),
);

export function versionFacts(major: Major): SupportedVersionFacts;
export function versionFacts(major: number): VersionFacts;
export function versionFacts(major: number): VersionFacts {
  return TABLE.get(major) ?? decide(major);
}

/** server_version_num → major (10+ numbering: 150018 → 15). */
export function majorOf(serverVersionNum: number): number {
  return Math.floor(serverVersionNum / 10000);
}
