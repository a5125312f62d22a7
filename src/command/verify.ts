import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { getString } from '../config/params.js';
import { EXIT, PgbaculaError } from '../errors.js';
import { serverBinDirForAsync } from '../restore/server-binaries.js';
import { inlineWalker, planCluster, type PlanEntryList } from '../pipeline/cluster-walk.js';
import { forkOf } from '../format/relation-file.js';
import { nativePageVerifier } from '../format/kernels.js';
import { verifyInWorkers, verifyNatively, type PageVerification } from '../pipeline/page-verification.js';
import { formatBytes, formatCount, ProgressTracker } from '../item/job-log.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './result.js';

const execFileAsync = promisify(execFile);

/**
 * `verify --pgdata DIR`: every data page checksum of a cluster, online or offline — on the
 * addon's native threads when it has them (no worker start-up, no copy into JS memory: the walk
 * runs on this thread, native/kernels/page_verify.c checks pages where it reads them), else in
 * the worker pipeline. Same rules, same report.
 */
/**
 * The cluster's data_checksum_version as pg_controldata of its major reports it (0 = disabled),
 * or undefined when no such tool is found: pg_control's layout differs by version, and the tool
 * of that version is the authority that reads it.
 */
async function dataChecksumVersion(pgdata: string, major: number, pgBinDir: string | undefined): Promise<number | undefined> {
  let dir: string;
  try {
    dir = await serverBinDirForAsync(major, pgBinDir);
  } catch {
    return undefined;
  }
  try {
    const { stdout } = await execFileAsync(join(dir, 'pg_controldata'), ['-D', pgdata], { encoding: 'utf8', env: { LANG: 'C', LC_ALL: 'C', PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    const m = /^Data page checksum version:\s+(\d+)/m.exec(stdout);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function checksumsDisabled(pgdata: string, evidence: string): PgbaculaError {
  return new PgbaculaError('PREREQUISITE', `${pgdata} has data checksums disabled (${evidence}): its pages carry no checksum to verify`, {
    hint: 'Enable them with pg_checksums --enable while the server is stopped (PostgreSQL 12 and later), or initdb --data-checksums for a new cluster.',
  });
}

async function verifyPgdata(ctx: CommandContext, pgdata: string): Promise<CommandResult> {
  let major: number;
  try {
    major = Number(readFileSync(join(pgdata, 'PG_VERSION'), 'utf8').trim());
  } catch {
    throw new PgbaculaError('PARAM_INVALID', `${pgdata} is not a PostgreSQL data directory (no PG_VERSION)`, { hint: 'Give --pgdata the cluster\'s data directory.' });
  }
  // pg_controldata runs while the cluster is walked and the first pages are checked; a cluster
  // without checksums is refused after the first native call at the latest.
  const checksumVersion = dataChecksumVersion(pgdata, major, getString(ctx.params, 'pg_bin_dir'));
  const native = nativePageVerifier();
  const pool = native ? undefined : (await import('../pipeline/pool.js')).createWorkerPool();
  const t0 = Date.now();
  try {
    const plan = await planCluster(pool ?? inlineWalker(), pgdata, major);
    const checksumsOn = async (): Promise<void> => {
      if ((await checksumVersion) === 0) throw checksumsDisabled(pgdata, 'pg_control: data page checksum version 0');
    };
    // The relation files by their index in the plan: an entry becomes an object only while it is
    // checked (a million-file cluster's entries would otherwise all be alive at once).
    const kept: number[] = [];
    let total = 0;
    for (let i = 0; i < plan.entries.length; i++) {
      const e = plan.entries.at(i)!;
      if (e.type !== 'file' || !e.verifyPages) continue;
      kept.push(i);
      total += e.size;
    }
    const relationFiles: PlanEntryList = {
      length: kept.length,
      at: (i) => (i >= 0 && i < kept.length ? plan.entries.at(kept[i]!) : undefined),
      *[Symbol.iterator]() {
        for (const i of kept) yield plan.entries.at(i)!;
      },
    };
    const progress = new ProgressTracker(ctx.log, 'verify', total, ctx.progressIntervalMs);
    let v: PageVerification;
    try {
      // The native engine starts at once and hears pg_controldata's answer after its first call
      // (at most 4 GiB or 20,000 files); the worker pipeline waits for it.
      if (native) v = await verifyNatively(relationFiles, native, { progress, afterCall: checksumsOn });
      else {
        await checksumsOn();
        v = await verifyInWorkers(relationFiles, pool!, ctx.log, progress);
      }
      await checksumsOn();
    } finally {
      progress.stop();
    }
    v.failures.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.blkno - b.blkno));
    const seconds = (Date.now() - t0) / 1000;
    const failed = v.failures.length + v.unlisted;
    // A cluster initialised without checksums stores 0 in every page's pd_checksum, a value no
    // computed checksum takes: every page failing with 0 stored means there are none to verify.
    if (failed > 0 && failed === v.pagesChecked && v.failures.every((f) => f.stored === 0)) throw checksumsDisabled(pgdata, 'every page stores checksum 0');
    const lines = [
      `verified ${formatCount(v.pagesChecked)} pages in ${formatCount(relationFiles.length)} relation files (${formatBytes(total)}) in ${seconds.toFixed(2)} s (${(total / 1e6 / Math.max(seconds, 0.001)).toFixed(0)} MB/s)`,
      `  new (all-zero) pages ${formatCount(v.newPages)}, torn by concurrent writes (re-read) ${v.tornPages}, checksum failures ${failed}`,
      ...v.failures.map((f) => `  checksum failure: ${f.path.replace(/^pgdata\//, '')} (${forkOf(f.path)} fork) block ${f.blkno}: calculated 0x${f.computed.toString(16).toUpperCase()} but the page holds 0x${f.stored.toString(16).toUpperCase()}`),
    ];
    if (v.unlisted) lines.push(`  … and ${v.unlisted} more checksum failures not listed`);
    if (v.vanished) lines.push(`  ${v.vanished} files vanished during the run (dropped relations)`);
    if (v.pagesChecked === 0 && v.newPages === 0 && total > 0) lines.push('  note: no page was checked');
    return ok(
      { pgdata, files: relationFiles.length, bytes: total, pagesChecked: v.pagesChecked, newPages: v.newPages, tornPages: v.tornPages, failures: v.failures, failuresNotListed: v.unlisted, seconds },
      lines.join('\n'),
      failed > 0 ? EXIT.WARNING : EXIT.OK,
    );
  } finally {
    await pool?.destroy();
  }
}


export async function runVerifyCommand(ctx: CommandContext): Promise<CommandResult> {
  const { pgdata, repo } = ctx.argv.globals;
  if (typeof pgdata === 'string' && typeof repo === 'string') throw new PgbaculaError('USAGE', 'give either --pgdata or --repo, not both');
  if (typeof pgdata === 'string') return verifyPgdata(ctx, pgdata);
  // Each form loads only its own modules: verify --pgdata starts in a fraction of the time.
  if (typeof repo === 'string') return (await import('./verify-repo.js')).verifyRepo(ctx, repo);
  throw new PgbaculaError('USAGE', 'verify needs --pgdata DIR (page checksums of a cluster) or --repo DIR (a stored backup)');
}
