import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getString } from '../config/params.js';
import { EXIT, PgbaculaError } from '../errors.js';
import { serverBinDirFor } from '../restore/server-binaries.js';
import { inlineWalker, planCluster, type PlanEntryList } from '../pipeline/cluster-walk.js';
import { forkOf } from '../format/relation-file.js';
import { nativePageVerifier } from '../format/kernels.js';
import { verifyInWorkers, verifyNatively, type PageVerification } from '../pipeline/page-verification.js';
import { formatBytes, formatCount, ProgressTracker } from '../item/job-log.js';
import { orderedMerge } from '../pipeline/ordered-merge.js';
import { createWorkerPool } from '../pipeline/pool.js';
import { assertRepository, listBackups, storedPathChecker } from '../repo/catalog.js';
import { storedLocation } from '../repo/layout.js';
import { storedFileTasks, type StoredFileJob } from '../restore/stored-file-jobs.js';
import { parseLsn } from '../wal/lsn.js';
import { walSegmentNameForLsn } from '../wal/segment.js';
import { verifyRepositoryWal } from '../archive/archive-check.js';
import type { BackupManifest, ManifestFile } from '../format/backup-manifest.js';
import { DEFAULT_BLOCKS_PER_SEGMENT } from '../format/page.js';
import { ChainError, chainOf } from '../repo/chain.js';
import { chainSources } from '../restore/chain-sources.js';
import type { CombineFileTask } from '../../workers/combine-file.js';
import type { RestoreFileTask } from '../../workers/restore-file.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './result.js';

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
function dataChecksumVersion(pgdata: string, major: number, pgBinDir: string | undefined): number | undefined {
  let dir: string;
  try {
    dir = serverBinDirFor(major, pgBinDir);
  } catch {
    return undefined;
  }
  try {
    const out = execFileSync(join(dir, 'pg_controldata'), ['-D', pgdata], { encoding: 'utf8', env: { LANG: 'C', LC_ALL: 'C', PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'ignore'] });
    const m = /^Data page checksum version:\s+(\d+)/m.exec(out);
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
  if (dataChecksumVersion(pgdata, major, getString(ctx.params, 'pg_bin_dir')) === 0) throw checksumsDisabled(pgdata, 'pg_control: data page checksum version 0');
  const native = nativePageVerifier();
  const pool = native ? undefined : createWorkerPool();
  const t0 = Date.now();
  try {
    const plan = await planCluster(pool ?? inlineWalker(), pgdata, major);
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
      v = native ? await verifyNatively(relationFiles, native, progress) : await verifyInWorkers(relationFiles, pool!, ctx.log, progress);
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


/**
 * `verify --repo DIR [--backup ID]`: every file present with its hash, and the WAL from start to
 * stop. A backup whose manifest is damaged is reported DAMAGED (exit 1), never left out.
 */
async function verifyRepo(ctx: CommandContext, repo: string): Promise<CommandResult> {
  await assertRepository(repo);
  const id = typeof ctx.argv.globals.backup === 'string' ? ctx.argv.globals.backup : undefined;
  const all = await listBackups(repo);
  const chosen = id ? all.filter((b) => b.id === id) : all;
  if (id && chosen.length === 0) throw new PgbaculaError('REPOSITORY', `no backup ${id} in repository ${repo}`, { hint: 'pgbacula info --repo lists them.' });
  if (chosen.length === 0) throw new PgbaculaError('REPOSITORY', `repository ${repo} holds no backup`, { hint: 'Nothing to verify.' });
  const pool = createWorkerPool();
  const report: { backupId: string; state: string; files: number; bytes: number; problems: string[]; note?: string }[] = [];
  const complete = all.flatMap((b) => (b.state === 'complete' ? [b.manifest] : []));
  try {
    for (const b of chosen) {
      if (b.state !== 'complete') {
        if (b.state === 'damaged') report.push({ backupId: b.id, state: b.state, files: 0, bytes: 0, problems: [b.reason] });
        else report.push({ backupId: b.id, state: b.state, files: 0, bytes: 0, problems: [], note: b.state === 'incomplete' ? `${b.reason}; the next backup removes it` : b.reason });
        continue;
      }
      const backupId = b.id;
      const m = b.manifest;
      const problems: string[] = [];
      const files = m.files.filter((f) => f.type === 'file');
      const outside = storedPathChecker(repo);
      // A block-level backup is checked with its chain: every link, and every incremental file
      // rebuilt to nowhere from the stored files it needs (each of their hashes checked).
      let sourcesOf: ReturnType<typeof chainSources> | undefined;
      if (m.reference) {
        try {
          sourcesOf = chainSources(repo, m, chainOf(m, complete).slice(0, -1));
        } catch (e) {
          if (!(e instanceof ChainError)) throw e;
          problems.push(`chain: ${e.message}`);
        }
      }
      const jobs = files.flatMap((f): { f: ManifestFile; job: StoredFileJob }[] => {
        const at = storedLocation(repo, backupId, f);
        const bad = outside(at.storedPath);
        if (bad) {
          problems.push(`${f.path}: ${bad}`);
          return [];
        }
        if (f.incremental) {
          const sources = sourcesOf?.(f, at) ?? 'its chain cannot be read';
          if (typeof sources === 'string') {
            problems.push(`${f.path}: ${sources}`);
            return [];
          }
          const check: CombineFileTask = { sources, blockSize: m.blockSize, blocksPerSegment: DEFAULT_BLOCKS_PER_SEGMENT, mode: f.mode, mtimeMs: 0, label: f.path };
          return [{ f, job: { kind: 'combine', task: check, bytes: f.incremental.fileSize } }];
        }
        const task: RestoreFileTask = {
          ...at,
          encoding: f.stored ?? 'raw',
          size: f.size,
          expectedHash: f.hash ?? '',
          rangeSize: m.rangeSize,
          mode: f.mode,
          mtimeMs: 0,
          label: f.path,
        };
        return [{ f, job: { kind: 'restore', task } }];
      });
      for await (const outcomes of orderedMerge(storedFileTasks(pool, jobs, m.rangeSize), { windowBytes: 64 * m.rangeSize, maxTasks: pool.options.maxThreads * 4 })) {
        for (const { f, r } of outcomes) if (!r.ok) problems.push(`${f.path}: ${r.problem}`);
      }
      // The WAL from the start segment to the stop segment must all be there.
      const seg = m.walSegmentSize;
      const need = [walSegmentNameForLsn(m.startTimeline, parseLsn(m.startLsn), seg), walSegmentNameForLsn(m.stopTimeline, parseLsn(m.stopLsn) - 1n, seg)];
      for (const name of new Set(need)) if (!m.walSegments.includes(name)) problems.push(`wal/${name}: the WAL segment needed for consistency is not in the backup`);
      report.push({ backupId, state: b.state, files: files.length, bytes: files.reduce((s, f) => s + f.size, 0), problems });
    }
  } finally {
    await pool.destroy();
  }
  // ---- WAL, record by record (issue 9 item 2): the archive's segments, seams and history
  // files, and each verified backup's own WAL (src/archive/archive-check.ts). ----
  const walManifests: BackupManifest[] = chosen.flatMap((b) => (b.state === 'complete' ? [b.manifest] : []));
  const wal = await verifyRepositoryWal(repo, walManifests);
  // ---- end of the WAL block ----
  const bad = report.filter((r) => r.problems.length > 0);
  const text = report
    .map((r) =>
      r.state !== 'complete' && r.state !== 'damaged'
        ? `${r.backupId}: ${r.state.toUpperCase()} — ${r.note ?? ''}`
        : `${r.backupId}: ${r.problems.length === 0 ? 'OK' : 'DAMAGED'} — ${r.state === 'damaged' ? 'not restorable' : `${formatCount(r.files)} files, ${formatBytes(r.bytes)}`}${r.problems.map((p) => `\n  ${p}`).join('')}`,
    )
    .join('\n');
  return ok({ repo, backups: report, wal: { problems: wal.problems, archives: wal.archives, backups: wal.backups } }, [text, ...wal.lines].join('\n'), bad.length > 0 || wal.problems.length > 0 ? EXIT.FAILURE : EXIT.OK);
}

export async function runVerifyCommand(ctx: CommandContext): Promise<CommandResult> {
  const { pgdata, repo } = ctx.argv.globals;
  if (typeof pgdata === 'string' && typeof repo === 'string') throw new PgbaculaError('USAGE', 'give either --pgdata or --repo, not both');
  if (typeof pgdata === 'string') return verifyPgdata(ctx, pgdata);
  if (typeof repo === 'string') return verifyRepo(ctx, repo);
  throw new PgbaculaError('USAGE', 'verify needs --pgdata DIR (page checksums of a cluster) or --repo DIR (a stored backup)');
}
