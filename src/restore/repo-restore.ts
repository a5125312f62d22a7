/**
 * A point-in-time restore from a repository: choose the base backup for the target, check
 * before anything is written that the WAL there is reaches the target, then run the six phases.
 * Shared by `pgbacula restore --repo` and the Bacula restore of mode pitr (which first stages
 * what the FD sends as a repository).
 */
import { PgbaculaError } from '../errors.js';
import type { BackupManifest } from '../format/backup-manifest.js';
import type { JobLog } from '../item/job-log.js';
import { createWorkerPool } from '../pipeline/pool.js';
import { assertRepository, listBackups, loadBackup } from '../repo/catalog.js';
import { ChainError, chainOf } from '../repo/chain.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { formatLsn, parseLsn } from '../wal/lsn.js';
import { listArchivedSystems } from '../archive/listing.js';
import { restoreCommandLine } from '../archive/archive-command.js';
import { walArchiveRoot } from '../archive/layout.js';
import { judgeRecoveryTarget } from '../archive/window.js';
import { windowReport } from '../archive/window-report.js';
import type { RecoveryTarget } from './recovery-settings.js';
import { RestoreJob, type RestoreSummary } from './restore-job.js';
import { unreachedWal } from './unreached-wal.js';
import type { NamedPath } from './target.js';
import { capturedStandby, loadTopology } from './topology-restore.js';
import { conninfo as conninfoText, conninfoHas, type StandbyRecord } from '../format/topology.js';
import { redactConninfo } from '../config/redact.js';

function parseRemap(pairs: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of pairs) {
    const m = /^(\d+)=(\/.*)$/.exec(p);
    if (!m) {
      throw new PgbaculaError('PARAM_INVALID', `invalid value "${p}" for parameter remap_tablespace`, { hint: 'Accepted: OID=/absolute/dir, comma-separated.' });
    }
    out.set(m[1]!, m[2]!);
  }
  return out;
}

/** ISO-8601 as the schema accepts it ('2026-04-23 14:30:00-03') → epoch milliseconds. */
export function isoTimeMs(text: string): number {
  const t = text.trim().replace(' ', 'T').replace(/([+-]\d{2})$/, '$1:00').replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
  return Date.parse(t);
}

/**
 * The base backup for a target: the latest complete one that ends before it (time or LSN);
 * for xid and restore-point targets, which no backup records, the latest.
 */
export async function chooseBaseBackup(repo: string, target: RecoveryTarget | undefined, where = `repository ${repo}`, storage: Storage = posixStorage): Promise<BackupManifest> {
  return pickBaseBackup(await completeBackups(repo, storage), target, where);
}

/** The manifests of the complete backups of a repository, oldest first. */
export async function completeBackups(repo: string, storage: Storage = posixStorage): Promise<BackupManifest[]> {
  return (await listBackups(repo, false, storage)).filter((b): b is Extract<typeof b, { state: 'complete' }> => b.state === 'complete').map((b) => b.manifest);
}

/** chooseBaseBackup over manifests already read. */
export function pickBaseBackup(complete: readonly BackupManifest[], target: RecoveryTarget | undefined, where: string): BackupManifest {
  if (complete.length === 0) throw new PgbaculaError('REPOSITORY', `${where} holds no complete backup`, { hint: 'Run pgbacula backup first.' });
  let fits = complete;
  if (target?.kind === 'time') {
    const at = isoTimeMs(target.value);
    fits = complete.filter((m) => Date.parse(m.stopTime) <= at);
  } else if (target?.kind === 'lsn') {
    const at = parseLsn(target.value);
    fits = complete.filter((m) => parseLsn(m.stopLsn) <= at);
  }
  const chosen = fits.at(-1);
  if (!chosen) {
    const first = complete[0]!;
    throw new PgbaculaError('RESTORE_PRECHECK', `no backup ends before the target ${(target as { value: string }).value}: the earliest ends at ${first.stopTime} (lsn ${first.stopLsn})`, {
      hint: 'A point in time can only be reached from a backup that finished before it; choose a later target.',
    });
  }
  return chosen;
}

/** What the restore parameters ask for, read once by the command (src/command/restore-settings.ts). */
export interface RestoreOptions {
  /** The stop point; undefined: the end of the WAL there is. */
  readonly target: RecoveryTarget | undefined;
  /** undefined: the backup's own data directory. */
  readonly pgdataDir: string | undefined;
  readonly overwriteExisting: boolean;
  readonly pgBinDir: string | undefined;
  readonly restorePort: number | undefined;
  /** remap_tablespace: `OID=/new/dir` pairs. */
  readonly remapTablespaces: readonly string[];
  readonly skipWalReplay: boolean;
  readonly restoreAsStandby: boolean;
  /** Given or not (restore_as_standby takes the captured one without it). */
  readonly primaryConninfo: string | undefined;
  /** restore_as_standby: which captured standby is rebuilt (its conninfo and slot). */
  readonly standbyName?: string | undefined;
  /** recreate_replication_slots (default true), recreate_subscriptions (default false). */
  readonly recreateSlots?: boolean;
  readonly recreateSubscriptions?: boolean;
  readonly action: 'promote' | 'pause' | 'shutdown';
  readonly archiveAfterRestore: boolean;
  /** The spool no restore target may touch. */
  readonly walSpool: string;
  /** A Bacula restore: replay also what the spool holds beyond the restored jobs (adopt-wal.ts). */
  readonly walFromSpool: boolean;
}

export interface RepoRestoreRequest {
  readonly repo: string;
  readonly options: RestoreOptions;
  readonly log: JobLog;
  readonly progressIntervalMs: number;
  /** Restore this backup instead of choosing one for the target. */
  readonly backupId?: string;
  /** Or this one, already read (and chosen) by the caller. */
  readonly manifest?: BackupManifest;
  /** How the repository is named in messages. */
  readonly describe?: string;
  /** Called with the chosen backup before anything is written (e.g. to log it). */
  readonly onChosen?: (m: BackupManifest) => void;
  /** A staging repository: its files are moved into place rather than copied. */
  readonly consume?: boolean;
  /** More places no restore target may touch (the spool a Bacula job reads, …). */
  readonly protect?: readonly NamedPath[];
}

export interface RepoRestoreResult extends RestoreSummary {
  readonly manifest: BackupManifest;
}

export async function restoreFromRepository(req: RepoRestoreRequest): Promise<RepoRestoreResult> {
  const { repo, options: o } = req;
  const target = o.target;
  await assertRepository(repo);
  const manifest = req.manifest ?? (req.backupId !== undefined ? await loadBackup(repo, req.backupId) : await chooseBaseBackup(repo, target, req.describe));
  // A newer backup that cannot be used is said, never passed over in silence.
  const states = await listBackups(repo);
  for (const b of states) {
    if ((b.state === 'damaged' || b.state === 'running') && b.id > manifest.backupId) {
      req.log.warning(`backup ${b.id} is newer than the one restored (${manifest.backupId}) but ${b.state === 'damaged' ? 'damaged' : 'still being written'}: ${b.reason}${b.state === 'damaged' ? ' — pgbacula verify --repo reports it' : ''}`);
    }
  }
  // A block-level backup is restored with its chain: every link present, complete and the backup its successor was taken against.
  let chain: BackupManifest[] = [];
  if (manifest.reference) {
    try {
      chain = chainOf(manifest, states.flatMap((b) => (b.state === 'complete' ? [b.manifest] : []))).slice(0, -1);
    } catch (e) {
      if (!(e instanceof ChainError)) throw e;
      throw new PgbaculaError('REPOSITORY', `backup ${manifest.backupId} cannot be restored: ${e.message}`, {
        hint: 'An incremental or differential backup needs every backup of its chain back to a full one (pgbacula info --repo shows the chains); restore an older complete chain or a full backup.',
      });
    }
  }
  req.onChosen?.(manifest);
  // WAL after the backup's own comes from the repository's WAL archive (wal-push / wal-receive).
  const archiveRoot = walArchiveRoot({ repo });
  const archived = (await listArchivedSystems(archiveRoot).catch(() => [] as string[])).includes(manifest.systemIdentifier);
  // Before anything is written: is the target reachable from this backup with the WAL there is?
  // (Every archived segment's records are read, up to an LSN target: a damaged one ends the window
  // like a gap.)
  let expectedReplay: { lastRecord: string; endLsn: string; segment: string } | undefined;
  const replays = !o.skipWalReplay && !o.restoreAsStandby;
  if (archived && (target?.kind === 'time' || target?.kind === 'lsn' || (target === undefined && replays))) {
    const { window } = await windowReport({ root: archiveRoot, systemId: manifest.systemIdentifier, backups: [manifest], ...(target?.kind === 'lsn' ? { readUpTo: parseLsn(target.value) } : {}) });
    if (target?.kind === 'time' || target?.kind === 'lsn') {
      const verdict = judgeRecoveryTarget(window, target.kind === 'lsn' ? { lsn: parseLsn(target.value), backupId: manifest.backupId } : { time: target.value, backupId: manifest.backupId });
      if (!verdict.ok) {
        throw new PgbaculaError('WAL_GAP', `recovery target ${target.value} cannot be reached from backup ${manifest.backupId}: ${verdict.reason}`, {
          hint: 'pgbacula info shows the recoverable window and every gap; choose a target inside it, or bring the missing or an intact copy of the damaged WAL back into the archive.',
        });
      }
    } else {
      // To the end of WAL: replay must get to the last record of the backup's range, or the restore failed.
      const range = window.ranges.find((r) => r.backupId === manifest.backupId);
      if (range?.lastRecordLsn !== undefined && range.lastSegment !== undefined) {
        expectedReplay = { lastRecord: formatLsn(range.lastRecordLsn), endLsn: formatLsn(range.to.lsn), segment: range.lastSegment };
      }
      const unreached = await unreachedWal({ archiveRoot, systemId: manifest.systemIdentifier, range, stopLsn: manifest.stopLsn, segmentSize: manifest.walSegmentSize });
      if (unreached) req.log.warning(unreached);
      if (range?.endsAtDamage) {
        req.log.warning(`WAL segment ${range.endsAtDamage.segment} in ${archiveRoot} is damaged (${range.endsAtDamage.problem}): recovery will stop before it and this restore will fail; run pgbacula verify --repo`);
      }
    }
  }
  const restoreAsStandby = o.restoreAsStandby;
  // The replication topology the backup captured: phase 5 works from it, and a standby is rebuilt
  // with its captured primary_conninfo and slot (primary_conninfo, when given, overrides).
  const topology = loadTopology(repo, manifest);
  const captured = restoreAsStandby ? capturedStandby(topology, o.standbyName, o.primaryConninfo) : undefined;
  if (restoreAsStandby && o.primaryConninfo === undefined && captured === undefined) {
    throw new PgbaculaError('PARAM_MISSING', 'restore_as_standby=true needs primary_conninfo (the primary to follow): this backup captured no standby to take it from', {
      hint: "Give primary_conninfo='host=db1 user=replicator' (a password belongs in the standby's ~/.pgpass), or back up with track_replication_state=true.",
    });
  }
  let standby: { primaryConninfo: string; primarySlotName?: string } | undefined;
  if (restoreAsStandby) {
    const conninfo = o.primaryConninfo ?? captured!.primaryConninfo;
    // The captured standby's name stays its application_name: synchronous_standby_names and
    // pg_stat_replication know it by that name.
    const named = captured?.name !== undefined && !conninfoHas(conninfo, 'application_name') ? `${conninfo} ${conninfoText({ application_name: captured.name })}` : conninfo;
    standby = { primaryConninfo: named, ...(captured?.primarySlotName ? { primarySlotName: captured.primarySlotName } : {}) };
    req.log.info(`restore as a standby${captured?.name !== undefined ? ` (captured standby ${captured.name})` : ''}: primary_conninfo ${o.primaryConninfo !== undefined ? 'as given' : 'as captured'} '${redactConninfo(named)}'${standby.primarySlotName ? `, primary_slot_name ${standby.primarySlotName}` : ''}`);
  }
  const rebuildCommand = (st: StandbyRecord): string =>
    req.consume
      ? `bconsole: restore the same job(s) of this backup (${manifest.backupId}) with the Plugin Options restore_as_standby=yes standby_name=${st.name} pgdata_dir=/new/standby/data (add primary_conninfo='…' when the primary moved)`
      : `pgbacula restore --repo ${repo} --backup ${manifest.backupId} --pgdata-dir /new/standby/data --restore-as-standby=true --standby-name=${st.name}`;
  const pgdataDir = o.pgdataDir ?? manifest.dataDirectory;
  const pool = createWorkerPool();
  try {
    const job = new RestoreJob({
      repo,
      manifest,
      pgdataDir,
      overwriteExisting: o.overwriteExisting,
      pgBinDir: o.pgBinDir,
      restorePort: o.restorePort,
      remapTablespaces: parseRemap(o.remapTablespaces),
      pool,
      log: req.log,
      progressIntervalMs: req.progressIntervalMs,
      startTimeoutSeconds: 600,
      skipWalReplay: o.skipWalReplay,
      ...(target ? { target } : {}),
      action: o.action,
      ...(standby ? { standby } : {}),
      ...(topology ? { topology } : {}),
      recreateSlots: o.recreateSlots ?? true,
      recreateSubscriptions: o.recreateSubscriptions ?? false,
      rebuildCommand,
      ...(archived ? { archiveRestoreCommand: restoreCommandLine({ repo }) } : {}),
      archiveAfterRestore: o.archiveAfterRestore,
      ...(req.consume ? { consumeRepository: true } : {}),
      protectedPaths: [
        { what: req.consume ? 'staged restore' : 'repository', path: repo },
        { what: 'WAL spool', path: o.walSpool },
        ...(req.protect ?? []),
      ],
      ...(expectedReplay ? { expectedReplay } : {}),
      ...(chain.length ? { chain } : {}),
    });
    const s = await job.run();
    return { ...s, manifest };
  } finally {
    await pool.destroy();
  }
}
