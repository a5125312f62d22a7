/**
 * Every per-major difference pgbacula relies on, in one table (pgBackRest's habit), so no
 * `if (major >= 15)` is scattered through modes.
 */
export const SUPPORTED_MAJORS = [10, 11, 12, 13, 14, 15, 16, 17, 18] as const;
export type Major = (typeof SUPPORTED_MAJORS)[number];

export interface VersionFacts {
  readonly major: Major;
  /** Non-exclusive backup start/stop functions. */
  readonly backupStart: 'pg_start_backup' | 'pg_backup_start';
  readonly backupStop: 'pg_stop_backup' | 'pg_backup_stop';
  /** recovery.conf before 12; recovery.signal / standby.signal + GUCs from 12. */
  readonly recoveryConfig: 'recovery.conf' | 'signal-files';
  /** Server-side WAL summaries (summarize_wal) exist from 17. */
  readonly walSummaries: boolean;
  /** The predefined role pg_read_all_data exists from 14. */
  readonly readAllDataRole: boolean;
  /** Temporary replication slots from 10; READ_REPLICATION_SLOT from 15. */
  readonly readReplicationSlot: boolean;
  /** XLOG_PAGE_MAGIC of the major (validating WAL segment files). */
  readonly xlogPageMagic: number;
  /** initdb enables data checksums by default from 18. */
  readonly checksumsDefaultOn: boolean;
}

const MAGIC: Record<Major, number> = {
  10: 0xd097, 11: 0xd098, 12: 0xd101, 13: 0xd106, 14: 0xd10d, 15: 0xd110, 16: 0xd113, 17: 0xd116, 18: 0xd118,
};

export function isSupportedMajor(major: number): major is Major {
  return (SUPPORTED_MAJORS as readonly number[]).includes(major);
}

export function versionFacts(major: Major): VersionFacts {
  return {
    major,
    backupStart: major >= 15 ? 'pg_backup_start' : 'pg_start_backup',
    backupStop: major >= 15 ? 'pg_backup_stop' : 'pg_stop_backup',
    recoveryConfig: major >= 12 ? 'signal-files' : 'recovery.conf',
    walSummaries: major >= 17,
    readAllDataRole: major >= 14,
    readReplicationSlot: major >= 15,
    xlogPageMagic: MAGIC[major],
    checksumsDefaultOn: major >= 18,
  };
}

/** server_version_num → major (10+ numbering: 150018 → 15). */
export function majorOf(serverVersionNum: number): number {
  return Math.floor(serverVersionNum / 10000);
}
