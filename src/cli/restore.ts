import { getBool, getInt, getList, getString } from '../config/params.js';
import { PgbaculaError } from '../errors.js';
import { formatBytes } from '../pipeline/job-log.js';
import { createWorkerPool, workerCount } from '../pipeline/pool.js';
import { assertRepository, loadBackup } from '../repo/catalog.js';
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

/** `pgbacula restore --repo DIR --pgdata-dir DIR`: the six phases, to consistency. */
export async function runRestoreCommand(ctx: CommandContext): Promise<CommandResult> {
  const repo = requireRepo(ctx);
  await assertRepository(repo);
  for (const unsupported of ['target_time', 'target_lsn', 'target_xid', 'target_name']) {
    if (ctx.params.has(unsupported)) {
      throw new PgbaculaError('PARAM_INVALID', `${unsupported} is not available in this version: a restore goes to the end of the backup (consistency)`, {
        hint: 'Point-in-time targets arrive with continuous WAL archiving.',
      });
    }
  }
  const manifest = await loadBackup(repo, typeof ctx.argv.globals.backup === 'string' ? ctx.argv.globals.backup : undefined);
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
    });
    const s = await job.run();
    return ok(
      { backupId: manifest.backupId, ...s },
      `restored backup ${manifest.backupId} (${formatBytes(s.bytes)}) into ${s.pgdataDir}; PostgreSQL is running on port ${s.port} (socket ${s.socketDir ?? 'none'})`,
    );
  } finally {
    await pool.destroy();
  }
}
