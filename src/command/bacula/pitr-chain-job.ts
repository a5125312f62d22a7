/**
 * A pitr job of Bacula: the level and `Since=` the FD gives, and the chain of earlier jobs
 * recorded in the spool (pitr-chain.ts), decide what the mode stores — a base backup with its
 * WAL (Full, or a broken chain), or the spool's WAL since the reference job (Incremental,
 * Differential); then the job is recorded and what Bacula has confirmed is pruned from the spool.
 */
import { join } from 'node:path';
import { PgbaculaError } from '../../errors.js';
import { levelName } from '../../bacula/job-info.js';
import { encodeName } from '../../format/path-name.js';
import type { ItemSink } from '../../item/item.js';
import type { JobLog } from '../../item/job-log.js';
import { acquireStoredPidLock } from '../../storage/pid-lock.js';
import { posixStorage } from '../../storage/posix.js';
import { createWorkerPool, type WorkerPool } from '../../pipeline/pool.js';
import { forgetScratch, registerScratch } from '../../pipeline/scratch-dirs.js';
import { ReplicationConnection } from '../../server/replication.js';
import { hex8, walSegmentName } from '../../wal/segment.js';
import { listWalArchive } from '../../archive/listing.js';
import {
  estimateItems, pruneSpoolBefore, shipWal, situation, storeBaseBackup, switchAndAwait,
  type PitrRunOptions, type PitrSettings,
} from '../../modes/pitr/pitr.js';
import type { ServerNow } from '../../modes/pitr/wal-plan.js';
import { CHAIN_DIR, chainFilePath, loadChain, saveChain } from './pitr-chain-file.js';
import { blockEstimatePlanner, blockReference, blockRequest, pruneKeptManifests, type BlockBase } from './block-chain.js';
import {
  findReference, jobBaseName, planWalJob, pruneLimit, recordsOfJob, retainRecords,
  type BlockJobSettings, type ChainRecord, type ChainSegmentRef, type PitrChainJob,
} from './pitr-chain.js';

export type { BlockJobSettings, PitrChainJob } from './pitr-chain.js';

/**
 * Mode cdp (src/command/modes/cdp.ts): an Incremental or Differential ships what reached the
 * spool without closing the server's segment, then the receiver's open segment after the
 * complete ones (also after a Full's WAL).
 */
export interface CdpJobHooks {
  shipOpenSegment(a: { readonly server: ServerNow; readonly walThrough: ChainSegmentRef; readonly cluster: string; readonly pool: WorkerPool; readonly sink: ItemSink }): Promise<void>;
}

/**
 * Run one pitr (or pitr_block) job of Bacula into `sink` (paths relative to the plugin
 * namespace). Returns when every item is written; the chain record is saved before returning
 * (estimates change nothing).
 */
export async function runPitrChainJob(s: PitrSettings, job: PitrChainJob, sink: ItemSink, o: PitrRunOptions, block?: BlockJobSettings, cdp?: CdpJobHooks): Promise<void> {
  const { log } = o;
  const startedAtMs = Date.now();
  const repl = await ReplicationConnection.open(s.connection, { applicationName: 'pgbacula pitr' });
  let pool: WorkerPool | undefined;
  let release: (() => Promise<void>) | undefined;
  try {
    const sit = await situation(s, repl);
    const { server } = sit;
    const cluster = encodeName(s.cluster ?? server.systemId);
    const chainPath = chainFilePath(s.spoolRoot, cluster);
    if (!o.estimate) {
      // One pitr job per cluster at a time: the chain record is read, extended and written back,
      // and pruning must not race another job's shipping.
      await posixStorage.makeDirs(join(s.spoolRoot, CHAIN_DIR), { mode: 0o750 });
      const lockPath = chainPath.replace(/\.json$/, '.lock');
      const unlock = await acquireStoredPidLock(lockPath, {
        busy: (pid) =>
          new PgbaculaError('PREREQUISITE', `another pgbacula pitr job of cluster ${cluster} is running (process ${pid})`, {
            hint: 'Let it finish: Bacula can run the jobs of one cluster one after the other (Maximum Concurrent Jobs = 1 on the Job, or Allow Duplicate Jobs = no).',
          }),
        cannotCreate: (cause) => new PgbaculaError('IO', `cannot lock the chain record of cluster ${cluster} in ${s.spoolRoot}: ${cause.message}`, { cause }),
      });
      // A cancel ends the process without unwinding: the exit handler removes the lock then.
      registerScratch(lockPath);
      release = async () => {
        forgetScratch(lockPath);
        await unlock();
      };
    }
    let allRecords: ChainRecord[];
    try {
      allRecords = await loadChain(chainPath);
    } catch (e) {
      // A damaged record breaks the chain like a gap does: a new one starts, and the job says why.
      if (job.level !== 'F') log.warning(`${(e as Error).message}; a new chain starts with this job`);
      allRecords = [];
    }
    const records = recordsOfJob(allRecords, job.name);
    pool = createWorkerPool({ parallelJobs: s.parallelJobs });

    let plan: ReturnType<typeof planWalJob> = { kind: 'base', reason: '' };
    let listing = sit.listing;
    let blockBase: BlockBase | undefined;
    if (block && job.level !== 'F') {
      const decided = await blockReference(s, block, job, records, cluster, server, log);
      if (decided.kind === 'reference') blockBase = decided.base;
      else log.warning(`backup chain broken: ${decided.reason}. This ${levelName(job.level)} job stores a full base backup instead`);
    } else if (job.level !== 'F') {
      // WAL up to now: close the current segment first, then judge the chain on what the spool has.
      if (!o.estimate) {
        if (!cdp) await switchAndAwait(s, server.systemId, server.walSegmentSize, log, o.signal);
        listing = await listWalArchive(s.spoolRoot, server.systemId);
      }
      plan = planWalJob({ level: job.level, since: job.since, records, server, segments: listing.segments });
      if (plan.kind === 'wal') {
        log.info(`${levelName(job.level)}: WAL since JobId ${plan.reference.jobId} (${plan.reference.stored === 'base' ? `base backup ${plan.reference.backupId}` : 'WAL'}, through ${plan.reference.walThrough.name}); chain checked: system ${server.systemId}, timeline ${hex8(server.timeline)}, no gap in the spool`);
      } else {
        log.warning(`backup chain broken: ${plan.reason}. This ${levelName(job.level)} job stores a full base backup instead`);
      }
    }

    if (o.estimate) {
      await estimateItems(s, sit, plan, cluster, pool, sink, block && blockBase ? blockEstimatePlanner(s, block, job, blockBase, sit, log, o.signal) : undefined);
      return;
    }

    let record: ChainRecord;
    if (plan.kind === 'wal') {
      const final = plan;
      await shipWal(s, server, listing, final.ship, cluster, pool, sink, o);
      await cdp?.shipOpenSegment({ server, walThrough: final.walThrough, cluster, pool, sink });
      record = {
        jobId: job.jobId,
        jobName: job.name,
        level: job.level,
        stored: 'wal',
        referenceJobId: final.reference.jobId,
        startedAtMs,
        completedAtMs: Date.now(),
        systemId: server.systemId,
        timeline: server.timeline,
        walSegmentSize: server.walSegmentSize,
        walThrough: final.walThrough,
        ...(final.ship.length ? { shippedFirst: final.ship[0]!.name, shippedLast: final.ship.at(-1)!.name } : {}),
        shippedCount: final.ship.length,
      };
    } else {
      const label = s.label === 'auto' ? `bacula_${job.jobId}` : s.label;
      const base = await storeBaseBackup(s, { jobId: job.jobId, label, ...(block ? blockRequest(s, block, job, blockBase, cluster) : {}) }, sit, cluster, pool, sink, o);
      await cdp?.shipOpenSegment({ server, walThrough: base.walThrough, cluster, pool, sink });
      record = {
        jobId: job.jobId,
        jobName: job.name,
        level: job.level,
        stored: 'base',
        backupId: base.backupId,
        ...(blockBase && base.level !== 'full' ? { referenceJobId: blockBase.record.jobId } : {}),
        startedAtMs,
        completedAtMs: Date.now(),
        systemId: server.systemId,
        timeline: server.timeline,
        walSegmentSize: server.walSegmentSize,
        startSegno: String(base.startSegno),
        startLsn: base.startLsn,
        stopLsn: base.stopLsn,
        walThrough: base.walThrough satisfies ChainSegmentRef,
        ...(base.ship.length ? { shippedFirst: base.ship[0]!.name, shippedLast: base.ship.at(-1)!.name } : {}),
        shippedCount: base.ship.length,
      };
    }

    // Prune what Bacula has confirmed (the reference it named is in its catalog as successful).
    const reference = job.level !== 'F' && job.since !== undefined ? findReference(records, job.since) : undefined;
    const others = allRecords.filter((r) => !records.includes(r));
    const kept = [...others, ...retainRecords([...records.filter((r) => r.jobId !== job.jobId || job.jobId === 0), record], reference)];
    await saveChain(chainPath, kept);
    if (block) await pruneKeptManifests(s.spoolRoot, cluster, kept);
    if (reference) await pruneSpool(s, records, reference, others, log);
  } finally {
    await repl.close().catch(() => undefined);
    await pool?.destroy();
    await release?.();
  }
}

/** Remove spool files before the prune limit of the confirmed reference. */
async function pruneSpool(s: PitrSettings, records: readonly ChainRecord[], reference: ChainRecord, others: readonly ChainRecord[], log: JobLog): Promise<void> {
  let limit = pruneLimit(records, reference, s.overlap);
  if (limit === undefined) return;
  // Another Job of the same cluster keeps what its newest chain may still need.
  for (const base of new Set(others.map((r) => jobBaseName(r.jobName)))) {
    const mine = others.filter((r) => jobBaseName(r.jobName) === base).sort((a, b) => a.startedAtMs - b.startedAtMs);
    const theirs = pruneLimit(mine, mine.at(-1)!, s.overlap);
    if (theirs === undefined) return;
    if (theirs < limit) limit = theirs;
  }
  const removed = await pruneSpoolBefore(s.spoolRoot, reference.systemId, reference.walSegmentSize, limit, log);
  if (removed > 0) {
    const firstKept = walSegmentName(reference.walThrough.timeline, limit, reference.walSegmentSize);
    log.info(`spool pruned: ${removed} WAL file${removed === 1 ? '' : 's'} before ${firstKept} (Bacula confirmed JobId ${reference.jobId}; the spool keeps all WAL since the start of that chain's base backup, + ${s.overlap} segments of overlap)`);
  }
}
