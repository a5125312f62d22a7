import { getInt, getString } from '../config/params.js';
import { EXIT, PgbaculaError } from '../errors.js';
import { runBaseBackup } from '../physical/base-backup.js';
import { formatBytes, formatCount } from '../item/job-log.js';
import { createWorkerPool } from '../pipeline/pool.js';
import { createBackupDir, initRepository, newestCompleteWithChain, removeInterruptedBackups } from '../repo/catalog.js';
import { newBackupId } from '../repo/layout.js';
import { acquireRepoLock } from '../repo/lock.js';
import { RepoSink } from '../repo/repo-sink.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './result.js';
import { prepareTmpdir } from '../os/tmpdir.js';
import { pitrSettings } from './modes/pitr.js';
import { blockPlanner } from '../modes/pitr_block/planner.js';
import { isReferenceCandidate, type BlockBackupType } from '../modes/pitr_block/reference.js';
import { walArchiveRoot } from '../archive/layout.js';

export function requireRepo(ctx: CommandContext): string {
  const repo = ctx.argv.globals.repo;
  if (typeof repo !== 'string') {
    throw new PgbaculaError('USAGE', 'this command needs --repo DIR', { hint: 'Name the repository directory with --repo /path.' });
  }
  return repo;
}

/**
 * repo_bundle=auto bundles small files except where the repository doubles as input of
 * PostgreSQL's pg_combinebackup: an uncompressed block-level backup, whose files/pgdata/ must
 * stay a plain directory (docs/block-incremental.md).
 */
export function bundleFiles(setting: string, mode: string, compress: boolean): boolean {
  if (setting === 'on') return true;
  if (setting === 'off') return false;
  return !(mode === 'pitr_block' && !compress);
}

/** `pgbacula backup --repo DIR`: a full physical backup into a local repository. */
export async function runBackupCommand(ctx: CommandContext): Promise<CommandResult> {
  const repo = requireRepo(ctx);
  const type = getString(ctx.params, 'type') as BlockBackupType;
  // Without --mode, an incremental or differential backup is a block-level one.
  const mode = ctx.params.has('mode') ? getString(ctx.params, 'mode') : type === 'full' ? 'pitr' : 'pitr_block';
  if (mode !== 'pitr' && mode !== 'pitr_block') {
    throw new PgbaculaError('PARAM_INVALID', `mode ${mode} is not available for standalone backups in this version`, {
      hint: 'Use --mode=pitr (whole base backups, the default) or --mode=pitr_block (block-level incremental); dump modes run through Bacula.',
    });
  }
  if (mode === 'pitr' && type !== 'full') {
    throw new PgbaculaError('PARAM_INVALID', `--type=${type} needs --mode=pitr_block: mode pitr stores whole base backups`, { hint: 'Use --mode=pitr_block --type=incr (or diff), or leave --type out.' });
  }
  const s = pitrSettings(ctx.params, ctx.connection(), ctx.env, ctx.progressIntervalMs);
  await initRepository(repo);
  const release = await acquireRepoLock(repo);
  const log = ctx.log;
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const pool = createWorkerPool({ parallelJobs: ctx.params.has('parallel_jobs') ? s.parallelJobs : undefined });
  try {
    for (const id of await removeInterruptedBackups(repo)) log.info(`removed incomplete backup ${id} (an earlier run was interrupted)`);
    const backupId = await createBackupDir(repo, newBackupId(new Date(), type === 'incr' ? 'incremental' : type === 'diff' ? 'differential' : 'full'));
    const planner = mode === 'pitr_block'
      ? blockPlanner({ type, summaryDays: getInt(ctx.params, 'pitr_block_summary_days'), archiveRoot: walArchiveRoot({ repo }), summarizerWaitMs: Number(ctx.env.PGBACULA_SUMMARIZER_WAIT_SECONDS ?? 60) * 1000 }, (asked) => newestCompleteWithChain(repo, (m) => isReferenceCandidate(m, asked)))
      : undefined;
    const sink = new RepoSink(repo, backupId, undefined, { bundle: bundleFiles(getString(ctx.params, 'repo_bundle') ?? 'auto', mode, s.compress) });
    await sink.open();
    await prepareTmpdir(s.tmpdir, log);
    const label = s.label === 'auto' ? `pgbacula_${backupId}` : s.label;
    const t0 = Date.now();
    let result;
    try {
      result = await runBaseBackup({
        connection: s.connection,
        pool,
        sink,
        log,
        backupId,
        label,
        ...(typeof ctx.argv.globals.pgdata === 'string' ? { pgdata: ctx.argv.globals.pgdata } : {}),
        verifyChecksums: s.verifyChecksums,
        compress: s.compress,
        backupFromStandby: s.backupFromStandby,
        excludeTablespaces: s.excludeTablespaces,
        tmpdir: s.tmpdir,
        progressIntervalMs: s.progressIntervalMs,
        signal: controller.signal,
        manifestPath: sink.manifestTempPath,
        mode,
        ...(planner ? { planner } : {}),
        trackReplicationState: s.trackReplicationState,
        ...(s.standbyEndpoints ? { standbyEndpoints: s.standbyEndpoints } : {}),
      });
    } catch (e) {
      await sink.abort();
      throw e;
    }
    await sink.commit();
    const seconds = (Date.now() - t0) / 1000;
    const m = result.manifest;
    const raw = result.rawBytes;
    const cb = m.changedBlocks;
    if (sink.bundledFiles > 0) log.info(`${formatCount(sink.bundledFiles)} small files stored in ${formatCount(sink.bundleCount)} bundle file(s)`);
    if (cb) log.info(`${m.level} backup stored ${formatBytes(sink.storedBytes)}: changed blocks from ${cb.source}; ${formatBytes(cb.bytesRead)} of relation files read, ${formatBytes(cb.bytesSkipped)} skipped`);
    const text = [
      `backup ${backupId} complete (${m.mode} ${m.level}${m.reference ? ` against ${m.reference.backupId}` : ''}): ${formatCount(result.fileCount)} files, ${formatBytes(raw)} in ${seconds.toFixed(1)} s (${(raw / 1e6 / Math.max(seconds, 0.001)).toFixed(0)} MB/s), stored ${formatBytes(sink.storedBytes)}`,
      `  lsn ${m.startLsn} .. ${m.stopLsn}, timeline ${m.stopTimeline}, page verification ${m.pageVerification}${m.checksumFailures ? ` (${m.checksumFailures} failures)` : ''}`,
      ...(cb ? [`  changed blocks from ${cb.source}: ${formatCount(cb.incrementalFiles)} incremental files, ${formatCount(cb.unchangedFiles)} unchanged, ${formatCount(cb.wholeFiles)} whole relation files; ${formatBytes(cb.bytesRead)} read, ${formatBytes(cb.bytesSkipped)} skipped`] : []),
      ...(m.fullBecause ? [`  full backup: ${m.fullBecause}`] : []),
    ].join('\n');
    return ok({ backupId, manifest: m, fileCount: result.fileCount, rawBytes: raw, storedBytes: sink.storedBytes, seconds }, text, m.checksumFailures > 0 ? EXIT.WARNING : EXIT.OK);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pool.destroy();
    await release();
  }
}
