import { getBool, getInt, getList, getString } from '../config/params.js';
import { PgbaculaError } from '../errors.js';
import { formatBytes } from '../pipeline/job-log.js';
import { createWorkerPool, workerCount } from '../pipeline/pool.js';
import { assertRepository, listBackups, loadBackup } from '../repo/catalog.js';
import type { BackupManifest } from '../format/backup-manifest.js';
import type { RecoveryTarget } from '../restore/recovery-settings.js';
import { parseLsn } from '../wal/lsn.js';
import { listArchivedSystems, restoreCommandLine, walArchiveRoot } from '../wal/spool.js';
import { judgeRecoveryTarget } from '../wal/window.js';
import { windowReport } from '../wal/window-report.js';
import { RestoreJob } from '../restore/restore-job.js';
import { requireRepo } from './backup.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './output.js';

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

/** The stop point asked for: lsn wins over time (PRODUCT.md), then xid, name. */
function recoveryTargetOf(ctx: CommandContext): RecoveryTarget | undefined {
  if (ctx.params.has('target_lsn')) return { kind: 'lsn', value: getString(ctx.params, 'target_lsn')! };
  if (ctx.params.has('target_time')) return { kind: 'time', value: getString(ctx.params, 'target_time')! };
  if (ctx.params.has('target_xid')) return { kind: 'xid', value: getString(ctx.params, 'target_xid')! };
  if (ctx.params.has('target_name')) return { kind: 'name', value: getString(ctx.params, 'target_name')! };
  return undefined;
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
async function chooseBaseBackup(repo: string, target: RecoveryTarget | undefined): Promise<BackupManifest> {
  const complete = (await listBackups(repo)).filter((b): b is Extract<typeof b, { state: 'complete' }> => b.state === 'complete').map((b) => b.manifest);
  if (complete.length === 0) throw new PgbaculaError('REPOSITORY', `repository ${repo} holds no complete backup`, { hint: 'Run pgbacula backup first.' });
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
    throw new PgbaculaError('RESTORE_PRECHECK', `no backup ends before the target ${target!.kind === 'time' ? target!.value : (target as { value: string }).value}: the earliest ends at ${first.stopTime} (lsn ${first.stopLsn})`, {
      hint: 'A point in time can only be reached from a backup that finished before it; choose a later target.',
    });
  }
  return chosen;
}

/** `pgbacula restore --repo DIR --pgdata-dir DIR`: the six phases, to consistency or a point in time. */
export async function runRestoreCommand(ctx: CommandContext): Promise<CommandResult> {
  const repo = requireRepo(ctx);
  await assertRepository(repo);
  const target = recoveryTargetOf(ctx);
  const explicit = typeof ctx.argv.globals.backup === 'string' ? ctx.argv.globals.backup : undefined;
  const manifest = explicit !== undefined ? await loadBackup(repo, explicit) : await chooseBaseBackup(repo, target);
  // WAL after the backup's own comes from the repository's WAL archive (wal-push / wal-receive).
  const archiveRoot = walArchiveRoot({ repo });
  const archived = (await listArchivedSystems(archiveRoot).catch(() => [] as string[])).includes(manifest.systemIdentifier);
  // Before anything is written: is the target reachable from this backup with the WAL there is?
  if (archived && (target?.kind === 'time' || target?.kind === 'lsn')) {
    const { window } = await windowReport({ root: archiveRoot, systemId: manifest.systemIdentifier, backups: [manifest] });
    const verdict = judgeRecoveryTarget(window, target.kind === 'lsn' ? { lsn: parseLsn(target.value), backupId: manifest.backupId } : { time: target.value, backupId: manifest.backupId });
    if (!verdict.ok) {
      throw new PgbaculaError('WAL_GAP', `recovery target ${target.value} cannot be reached from backup ${manifest.backupId}: ${verdict.reason}`, {
        hint: 'pgbacula info --repo shows the recoverable window and every gap; choose a target inside it, or restore the missing WAL into the archive.',
      });
    }
  }
  const restoreAsStandby = getBool(ctx.params, 'restore_as_standby');
  if (restoreAsStandby && !ctx.params.has('primary_conninfo')) {
    throw new PgbaculaError('PARAM_MISSING', 'restore_as_standby=true needs primary_conninfo (the primary to follow)', {
      hint: "Give --primary-conninfo 'host=db1 user=replicator' (a password belongs in the standby's ~/.pgpass).",
    });
  }
  const pgdataDir = getString(ctx.params, 'pgdata_dir') ?? manifest.dataDirectory;
  const pool = createWorkerPool(workerCount(undefined));
  try {
    const job = new RestoreJob({
      repo,
      manifest,
      pgdataDir,
      overwriteExisting: getBool(ctx.params, 'overwrite_existing'),
      pgBinDir: getString(ctx.params, 'pg_bin_dir'),
      restorePort: ctx.params.has('restore_port') ? getInt(ctx.params, 'restore_port') : undefined,
      remapTablespaces: parseRemap(getList(ctx.params, 'remap_tablespace')),
      pool,
      log: ctx.log,
      progressIntervalMs: ctx.progressIntervalMs,
      startTimeoutSeconds: 600,
      skipWalReplay: getBool(ctx.params, 'skip_wal_replay'),
      ...(target ? { target } : {}),
      action: getString(ctx.params, 'recovery_target_action') as 'promote' | 'pause' | 'shutdown',
      ...(restoreAsStandby ? { standby: { primaryConninfo: getString(ctx.params, 'primary_conninfo')! } } : {}),
      ...(archived ? { archiveRestoreCommand: restoreCommandLine({ repo }) } : {}),
      archiveAfterRestore: getBool(ctx.params, 'archive_after_restore'),
    });
    const s = await job.run();
    return ok(
      { backupId: manifest.backupId, ...s },
      `restored backup ${manifest.backupId} (${formatBytes(s.bytes)}) into ${s.pgdataDir}${s.stoppedAt ? `; ${s.stoppedAt}` : ''}; PostgreSQL ${s.state === 'shut down' ? 'shut down at the target' : `is ${s.state} on port ${s.port} (socket ${s.socketDir ?? 'none'})`}`,
    );
  } finally {
    await pool.destroy();
  }
}
