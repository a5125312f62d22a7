/**
 * Mode pitr_block under Bacula (docs/block-incremental.md): every job stores a base backup, and an
 * Incremental or Differential stores only the blocks changed since the base backup of the job
 * Bacula names as its reference (by `Since=`, as for mode pitr: pitr-chain.ts). Counting from a
 * reference needs its file list, so each job keeps a copy of its manifest in the spool, next to
 * the chain record:
 *
 *   ROOT/.bacula-chain/<cluster>.manifests/<backup-id>.json
 *
 * The copies of the jobs the chain record keeps (and of their references, back to a full backup)
 * stay; the others go with their records.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseManifest, type BackupManifest } from '../../format/backup-manifest.js';
import type { BackupPlanner } from '../../physical/planner.js';
import type { JobLog } from '../../item/job-log.js';
import { isSupportedMajor } from '../../pg/versions.js';
import type { BaseRequest, EstimatePlanner, PitrSettings, Situation } from '../../modes/pitr/pitr.js';
import { openSession } from '../../server/session.js';
import type { ServerNow } from '../../modes/pitr/wal-plan.js';
import { blockPlanner } from '../../modes/pitr_block/planner.js';
import { BACKUP_ID } from '../../repo/layout.js';
import { posixStorage } from '../../storage/posix.js';
import { CHAIN_DIR } from './pitr-chain-file.js';
import { findReference, type BlockJobSettings, type ChainRecord, type PitrChainJob } from './pitr-chain.js';

export function keptManifestDir(spoolRoot: string, cluster: string): string {
  return join(spoolRoot, CHAIN_DIR, `${cluster.replace(/[^A-Za-z0-9_.-]/g, '_')}.manifests`);
}

/** The reference job of an Incremental or Differential, its manifest and its chain (full first). */
export interface BlockBase {
  readonly record: ChainRecord;
  readonly manifest: BackupManifest;
  readonly chain: readonly BackupManifest[];
}

async function keptManifest(dir: string, backupId: string): Promise<BackupManifest> {
  if (!BACKUP_ID.test(backupId)) throw new Error(`${JSON.stringify(backupId)} is not a backup id`);
  const path = join(dir, `${backupId}.json`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`the copy of its manifest ${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const m = parseManifest(text);
  if (m.backupId !== backupId) throw new Error(`the copy of its manifest ${path} names backup ${m.backupId}`);
  return m;
}

/**
 * The reference of an Incremental or Differential job, or why there is none (the job then stores
 * a full base backup and says why).
 */
export async function blockReference(
  s: PitrSettings,
  _block: BlockJobSettings,
  job: PitrChainJob,
  records: readonly ChainRecord[],
  cluster: string,
  server: ServerNow,
  _log: JobLog,
): Promise<{ readonly kind: 'reference'; readonly base: BlockBase } | { readonly kind: 'base'; readonly reason: string }> {
  const what = job.level === 'I' ? 'the previous job' : 'the last Full';
  if (job.since === undefined) return { kind: 'base', reason: `the FD gave no reference time for this ${job.level === 'I' ? 'Incremental' : 'Differential'} job` };
  const ref = findReference(records, job.since);
  if (!ref) return { kind: 'base', reason: `no pitr_block job of this FileSet started at or after ${new Date(job.since * 1000).toISOString()} (${what} as Bacula counts it) is recorded in the spool` };
  if (job.level === 'D' && ref.level !== 'F') return { kind: 'base', reason: `the job recorded at ${what}'s time (JobId ${ref.jobId}) is not a Full job` };
  if (ref.stored !== 'base' || !ref.backupId) return { kind: 'base', reason: `JobId ${ref.jobId} stored no base backup to count changed blocks from` };
  if (ref.systemId !== server.systemId) return { kind: 'base', reason: `the system identifier changed from ${ref.systemId} (JobId ${ref.jobId}) to ${server.systemId}` };
  const dir = keptManifestDir(s.spoolRoot, cluster);
  try {
    const manifest = await keptManifest(dir, ref.backupId);
    const chain: BackupManifest[] = [manifest];
    for (let at = manifest; at.reference; ) {
      at = await keptManifest(dir, at.reference.backupId);
      chain.unshift(at);
      if (chain.length > 10_000) throw new Error('its references go round in a circle');
    }
    return { kind: 'reference', base: { record: ref, manifest, chain } };
  } catch (e) {
    return { kind: 'base', reason: `the base backup ${ref.backupId} of JobId ${ref.jobId} cannot be counted from: ${(e as Error).message}` };
  }
}

function plannerFor(s: PitrSettings, block: BlockJobSettings, type: 'full' | 'incr' | 'diff', base: BlockBase | undefined, summarizerWaitMs = block.summarizerWaitMs): BackupPlanner {
  return blockPlanner({ type, summaryDays: block.summaryDays, archiveRoot: s.spoolRoot, summarizerWaitMs, ...(base ? { reference: base.manifest } : {}) }, async () => (base ? base.chain : []));
}

/** What storeBaseBackup is asked for a pitr_block job: the planner, the level, the WAL and the manifest copy. */
export function blockRequest(s: PitrSettings, block: BlockJobSettings, job: PitrChainJob, base: BlockBase | undefined, cluster: string): Omit<BaseRequest, 'jobId' | 'label'> {
  const type = base === undefined ? 'full' : job.level === 'D' ? 'diff' : 'incr';
  const dir = keptManifestDir(s.spoolRoot, cluster);
  return {
    mode: block.mode,
    level: type === 'full' ? 'full' : type === 'incr' ? 'incremental' : 'differential',
    planner: plannerFor(s, block, type, base),
    // The chain's WAL stays contiguous: from the segment after what the reference's chain holds.
    ...(base ? { walFromSegno: BigInt(base.record.walThrough.segno) + 1n } : {}),
    onManifest: async (path) => {
      const text = await readFile(path, 'utf8');
      const m = parseManifest(text);
      await posixStorage.makeDirs(dir, { mode: 0o750 });
      await posixStorage.writeFileDurable(join(dir, `${m.backupId}.json`), text, { mode: 0o640 });
    },
  };
}

/**
 * What an estimate of an Incremental or Differential lists: the files the job would store if it
 * started now (incremental ones for the relation segments changed since the reference). No backup
 * is started: the changed blocks are counted up to the WAL the server has flushed, read only.
 */
export function blockEstimatePlanner(s: PitrSettings, block: BlockJobSettings, job: PitrChainJob, base: BlockBase, sit: Situation, log: JobLog, signal: AbortSignal): EstimatePlanner {
  return async (entries) => {
    if (!sit.dataDirectory || !isSupportedMajor(sit.major)) return { entries, level: 'full' };
    const session = await openSession(s.connection, { applicationName: 'pgbacula pitr_block' });
    try {
      const row = (await session.query<{ lsn: string; bs: string }>(
        "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END)::text AS lsn, current_setting('block_size') AS bs",
      )).rows[0]!;
      // No waiting for the server's summarizer (an idle one may never reach the flushed WAL):
      // what it has not summarized is counted from the spool's summaries and pg_wal.
      const planned = await plannerFor(s, block, job.level === 'D' ? 'diff' : 'incr', base, 0)({
        entries,
        startLsn: row.lsn,
        timeline: sit.server.timeline,
        systemId: sit.server.systemId,
        major: sit.major,
        pgdata: sit.dataDirectory,
        blockSize: Number(row.bs),
        walSegmentSize: sit.server.walSegmentSize,
        session,
        log,
        signal,
      });
      return { entries: planned.entries, level: planned.level };
    } finally {
      await session.end().catch(() => undefined);
    }
  };
}

/** Remove the manifest copies no kept record needs (its own, or one of its chain). */
export async function pruneKeptManifests(spoolRoot: string, cluster: string, kept: readonly ChainRecord[]): Promise<void> {
  const dir = keptManifestDir(spoolRoot, cluster);
  const needed = new Set<string>();
  for (const r of kept) {
    let id = r.backupId;
    while (id && !needed.has(id)) {
      needed.add(id);
      id = await keptManifest(dir, id).then((m) => m.reference?.backupId, () => undefined);
    }
  }
  for (const name of await posixStorage.list(dir).catch(() => [] as string[])) {
    const id = name.replace(/\.json$/, '');
    if (name.endsWith('.json') && BACKUP_ID.test(id) && !needed.has(id)) await posixStorage.removeFile(join(dir, name)).catch(() => undefined);
  }
}
