import { EXIT, PgbaculaError } from '../errors.js';
import { formatBytes, formatCount } from '../item/job-log.js';
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
 * `verify --repo DIR [--backup ID]`: every file present with its hash, and the WAL from start to
 * stop. A backup whose manifest is damaged is reported DAMAGED (exit 1), never left out.
 */
export async function verifyRepo(ctx: CommandContext, repo: string): Promise<CommandResult> {
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
