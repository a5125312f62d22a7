/**
 * Mode `pitr` as a source of items for a Bacula job:
 *
 *   <cluster>/pitr/<backup-id>/...            a base backup in the repository's stored form
 *                                             (files/ of a repository backup, then manifest.json)
 *   <cluster>/wal/<TLI>/<segment>             WAL segments from the local spool
 *   <cluster>/wal/<TLI>/<TLI>.history         timeline history files
 *
 * Full = base backup + the spool's WAL from its start on; Incremental = the spool's WAL since the
 * job Bacula counts as the previous one; Differential = since the last Full. Which job that is,
 * whether its chain still holds and what the spool may lose: pitr-chain.ts. Before WAL is
 * shipped the primary switches to a new segment and we wait for it to reach the spool, so a job
 * holds the WAL up to its own start of shipping; a job whose WAL does not arrive fails, and so
 * does one whose spool the archiver cannot fill (pitr-spool.ts) — never "OK" with a warning.
 */
import { mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConnectionSettings } from '../../config/connection.js';
import { PgbaculaError } from '../../errors.js';
import { levelName } from '../../bacula/job-info.js';
import { encodeName } from '../../format/path-name.js';
import { runBaseBackup } from './base-backup.js';
import { ReplicationConnection } from '../../server/replication.js';
import { openSession } from '../../server/session.js';
import { majorOf } from '../../pg/versions.js';
import { planCluster, type PlanEntry } from '../../pipeline/cluster-walk.js';
import { DEFAULT_RANGE_SIZE, emitFiles } from '../../pipeline/emit-files.js';
import type { ItemSink } from '../../item/item.js';
import { formatBytes, formatCount, type JobLog } from '../../item/job-log.js';
import { createWorkerPool, workerCount, type WorkerPool } from '../../pipeline/pool.js';
import { PrefixedSink } from '../../pipeline/prefixed-sink.js';
import { forgetScratch, registerScratch, removeScratch } from '../../pipeline/scratch-dirs.js';
import { newBackupId } from '../../repo/layout.js';
import { writeFileAtomic } from '../../os/durable.js';
import { acquirePidLock } from '../../os/pid-lock.js';
import { redactCommand } from '../../config/redact.js';
import { parseLsn } from '../../wal/lsn.js';
import { hex8, parseWalFileName, segmentNumberOfName, walSegmentName, walSegmentNumber } from '../../wal/segment.js';
import { ARCHIVE_META_FILE, listWalArchive, storeHistoryFile, type WalArchiveListing } from '../../archive/spool.js';
import { parseTimelineHistory, type TimelineHistoryEntry } from '../../wal/timeline-history.js';
import { archiverOf, checkSpool, giveToSpoolOwner } from './spool-check.js';
import { prepareTmpdir } from '../../os/tmpdir.js';
import {
  CHAIN_FORMAT, lineageSegments, planBaseWal, planWalJob, pruneLimit, retainRecords, findReference,
  type BaculaLevel, type ChainFile, type ChainRecord, type ChainSegmentRef, type ServerNow, type SpoolSegment,
} from '../../command/bacula/pitr-chain.js';

export interface PitrSettings {
  readonly connection: ConnectionSettings;
  /** The spool root (wal_spool): what wal-push / wal-receive fill. */
  readonly spoolRoot: string;
  /** Configured cluster name, or undefined for the system identifier. */
  readonly cluster: string | undefined;
  readonly overlap: number;
  readonly tmpdir: string;
  readonly verifyChecksums: boolean;
  readonly compress: boolean;
  readonly backupFromStandby: boolean;
  readonly excludeTablespaces: readonly string[];
  /** pitr_label: 'auto' → pgbacula_<backup-id>. */
  readonly label: string;
  readonly parallelJobs: number;
  readonly progressIntervalMs: number;
  /** How long to wait for the switched segment to reach the spool. */
  readonly archiveWaitMs: number;
}

export interface PitrJob {
  readonly jobId: number;
  readonly name: string;
  readonly level: BaculaLevel;
  readonly since: number | undefined;
}

export interface PitrRunOptions {
  readonly log: JobLog;
  readonly signal: AbortSignal;
  /** Estimate: names and sizes only, nothing changes on the server or in the spool. */
  readonly estimate: boolean;
}

/**
 * `ROOT/.bacula-chain/<cluster>.json`: dot directories are not systems of the archive. One file per
 * cluster; each record names its Job, and a job continues only records of its own Job (Bacula's
 * Since= is per Job) — console estimates (Job `-Console-`) look at all of them.
 */
export const CHAIN_DIR = '.bacula-chain';

/** The Job name without Bacula's `.YYYY-MM-DD_HH.MM.SS_NN` suffix: Since= is per Job. */
export function jobBaseName(name: string): string {
  return name.replace(/\.\d{4}-\d{2}-\d{2}_\d{2}\.\d{2}\.\d{2}_\d+$/, '') || 'job';
}

export function chainFilePath(spoolRoot: string, cluster: string): string {
  return join(spoolRoot, CHAIN_DIR, `${cluster.replace(/[^A-Za-z0-9_.-]/g, '_')}.json`);
}

/** The records a job may continue: its own Job's (all of them for a console estimate). */
export function recordsOfJob(records: readonly ChainRecord[], jobName: string): ChainRecord[] {
  const base = jobBaseName(jobName);
  return base === '-Console-' ? [...records] : records.filter((r) => jobBaseName(r.jobName) === base);
}

export async function loadChain(path: string): Promise<ChainRecord[]> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new PgbaculaError('IO', `cannot read the chain record ${path}: ${(e as Error).message}`);
  }
  try {
    const f = JSON.parse(text) as ChainFile;
    if (f.format !== CHAIN_FORMAT || !Array.isArray(f.records)) throw new Error(`format ${String(f.format)}`);
    return [...f.records];
  } catch (e) {
    // A damaged record only costs a Full: say so, never fail the job for it.
    throw new PgbaculaError('REPOSITORY', `the chain record ${path} is damaged (${(e as Error).message})`, {
      hint: 'Remove it: the next job stores a base backup and starts a new chain.',
    });
  }
}

async function saveChain(path: string, records: readonly ChainRecord[]): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true, mode: 0o750 });
  await writeFileAtomic(path, JSON.stringify({ format: CHAIN_FORMAT, records } satisfies ChainFile, null, 1) + '\n', 0o640);
}

interface Situation {
  readonly server: ServerNow;
  readonly major: number;
  readonly dataDirectory: string | null;
  readonly listing: WalArchiveListing;
}

/** Who the server is, where it stands, and what the spool holds for it. */
async function situation(s: PitrSettings, repl: ReplicationConnection): Promise<Situation> {
  const ident = await repl.identifySystem();
  const walSegmentSize = await repl.walSegmentSize();
  const session = await openSession(s.connection, { applicationName: 'pgbacula pitr' });
  let major: number;
  let dataDirectory: string | null;
  try {
    major = majorOf(Number((await session.query<{ n: string }>("SELECT current_setting('server_version_num') AS n")).rows[0]!.n));
    const dd = await session.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'data_directory'");
    dataDirectory = dd.rows[0]?.setting ?? null;
  } finally {
    await session.end().catch(() => undefined);
  }
  // Before the job creates anything in the spool: the archiver must be able to fill it.
  await checkSpool(s.spoolRoot, await archiverOf(dataDirectory), ident.systemId, ident.timeline);
  let listing = await listWalArchive(s.spoolRoot, ident.systemId);
  let history: TimelineHistoryEntry[] | undefined = ident.timeline === 1 ? [] : listing.histories.find((h) => h.timeline === ident.timeline)?.entries;
  if (history === undefined && ident.timeline > 1) {
    // The server has it: fetch it over replication and keep it in the spool (history first: recovery reads it before any WAL of its timeline).
    const file = await repl.timelineHistory(ident.timeline);
    await storeHistoryFile(s.spoolRoot, ident.systemId, ident.timeline, file.content, `TIMELINE_HISTORY ${ident.timeline}`);
    const sysDir = join(s.spoolRoot, ident.systemId);
    await giveToSpoolOwner(s.spoolRoot, [sysDir, join(sysDir, ARCHIVE_META_FILE), join(sysDir, `${hex8(ident.timeline)}.history`)]);
    history = parseTimelineHistory(file.content, ident.timeline);
    listing = await listWalArchive(s.spoolRoot, ident.systemId);
  }
  return { server: { systemId: ident.systemId, timeline: ident.timeline, walSegmentSize, history }, major, dataDirectory, listing };
}

/**
 * On a primary: close the current segment (pg_switch_wal) and wait until the spool has it, so the
 * job ships WAL up to now. On a standby nothing can be switched: what the spool has is shipped.
 */
async function switchAndAwait(s: PitrSettings, systemId: string, segmentSize: number, log: JobLog, signal: AbortSignal): Promise<void> {
  const session = await openSession(s.connection, { applicationName: 'pgbacula pitr' });
  let segment: string;
  try {
    if ((await session.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0]!.rec) {
      log.info('WAL: the server is a standby (no segment switch): shipping what the spool holds');
      return;
    }
    // Wait for the newest complete segment: the one before the segment now in use. The value
    // pg_switch_wal returns is no guide — with no WAL since the last switch it does nothing and
    // returns a position inside the segment in use (which is not complete).
    await session.query('SELECT pg_switch_wal()');
    const now = (await session.query<{ lsn: string; f: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_insert_lsn()) AS f')).rows[0]!;
    const inUse = walSegmentNumber(parseLsn(now.lsn), segmentSize);
    segment = walSegmentName(parseInt(now.f.slice(0, 8), 16), inUse - 1n, segmentSize);
  } finally {
    await session.end().catch(() => undefined);
  }
  // Right after a promotion the newest complete segment may be the old timeline's: any timeline counts.
  const suffix = segment.slice(8);
  const present = async (): Promise<boolean> => {
    const dirs = (await readdir(join(s.spoolRoot, systemId)).catch(() => [] as string[])).filter((d) => /^[0-9A-F]{8}$/.test(d));
    for (const d of dirs) if (await stat(join(s.spoolRoot, systemId, d, `${d}${suffix}`)).then(() => true, () => false)) return true;
    return false;
  };
  const deadline = Date.now() + s.archiveWaitMs;
  let said = false;
  const sayAfter = Date.now() + 5000;
  for (;;) {
    if (await present()) return;
    if (signal.aborted) throw new PgbaculaError('CANCELLED', 'the job was canceled while waiting for WAL');
    if (Date.now() > deadline) {
      // Not a warning: a job that ends OK without the WAL up to its start is a point-in-time
      // recovery that fails the day it is needed, and a stalled archiver fills pg_wal.
      throw new PgbaculaError('WAL_GAP', `WAL segment ${segment} has not reached the spool ${s.spoolRoot} after ${Math.round(s.archiveWaitMs / 1000)} s (${await archiverState(s)})`, {
        hint: archiveHint(s.spoolRoot),
      });
    }
    if (!said && Date.now() > sayAfter) {
      said = true;
      log.info(`waiting for WAL segment ${segment} to reach the spool (up to ${Math.round(s.archiveWaitMs / 1000)} s)`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What to do when WAL does not reach the spool. */
function archiveHint(spoolRoot: string): string {
  return `Make the server archive into this spool: archive_mode = on and archive_command = 'pgbacula wal-push --wal-spool ${spoolRoot} %p' (or run pgbacula wal-receive --wal-spool ${spoolRoot}); the spool must be writable by the OS user that runs PostgreSQL. The server log says why archiving fails; run the job again once pg_stat_archiver shows WAL archived.`;
}

/** pg_stat_archiver and the archive settings, for the message of a job whose WAL did not arrive. */
async function archiverState(s: PitrSettings): Promise<string> {
  try {
    const session = await openSession(s.connection, { applicationName: 'pgbacula pitr' });
    try {
      const r = (await session.query<{ mode: string; cmd: string; archived: string; lastok: string | null; failed: string; lastfail: string | null; failtime: string | null }>(
        "SELECT current_setting('archive_mode') AS mode, current_setting('archive_command') AS cmd, archived_count::text AS archived, last_archived_wal AS lastok, failed_count::text AS failed, last_failed_wal AS lastfail, last_failed_time::text AS failtime FROM pg_stat_archiver",
      )).rows[0]!;
      return `archive_mode = ${r.mode}, archive_command = '${redactCommand(r.cmd)}'; pg_stat_archiver: ${r.archived} archived${r.lastok ? ` (last ${r.lastok})` : ''}, ${r.failed} failed${r.lastfail ? ` (last ${r.lastfail} at ${r.failtime})` : ''}`;
    } finally {
      await session.end().catch(() => undefined);
    }
  } catch (e) {
    return `pg_stat_archiver not readable: ${(e as Error).message}`;
  }
}

function walItemEntries(listing: WalArchiveListing, segments: readonly SpoolSegment[], histories: readonly number[]): Promise<PlanEntry[]> {
  return Promise.all([
    ...listing.histories
      .filter((h) => histories.includes(h.timeline))
      .map(async (h): Promise<PlanEntry> => {
        const st = await stat(h.path);
        return { path: `${hex8(h.timeline)}/${h.name}`, absPath: h.path, type: 'file', mode: 0o640, mtimeMs: st.mtimeMs, size: st.size, verifyPages: false, firstBlock: 0 };
      }),
    ...segments.map(async (seg): Promise<PlanEntry> => {
      const path = join(listing.dir, hex8(seg.timeline), seg.name);
      const st = await stat(path);
      return { path: `${hex8(seg.timeline)}/${seg.name}`, absPath: path, type: 'file', mode: 0o640, mtimeMs: st.mtimeMs, size: st.size, verifyPages: false, firstBlock: 0 };
    }),
  ]);
}

function describeRange(ship: readonly SpoolSegment[]): string {
  if (ship.length === 0) return 'none (no new segment in the spool)';
  return `${ship[0]!.name}..${ship.at(-1)!.name} (${ship.length} segment${ship.length === 1 ? '' : 's'})`;
}

/** Timelines whose history a restore along the server's lineage needs. */
function lineageTimelines(server: ServerNow): number[] {
  return [...(server.history ?? []).map((e) => e.parentTimeline), server.timeline].filter((t) => t > 1);
}

/**
 * Run one pitr job of Bacula into `sink` (paths relative to the plugin namespace). Returns when
 * every item is written; the chain record is saved before returning (estimates change nothing).
 */
export async function runPitrJob(s: PitrSettings, job: PitrJob, sink: ItemSink, o: PitrRunOptions): Promise<void> {
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
      await mkdir(join(s.spoolRoot, CHAIN_DIR), { recursive: true, mode: 0o750 });
      const lockPath = chainPath.replace(/\.json$/, '.lock');
      const unlock = await acquirePidLock(lockPath, {
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
    pool = createWorkerPool(workerCount(s.parallelJobs));

    let plan: ReturnType<typeof planWalJob> = { kind: 'base', reason: '' };
    let listing = sit.listing;
    if (job.level !== 'F') {
      // WAL up to now: close the current segment first, then judge the chain on what the spool has.
      if (!o.estimate) {
        await switchAndAwait(s, server.systemId, server.walSegmentSize, log, o.signal);
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
      await estimateItems(s, sit, plan, cluster, pool, sink);
      return;
    }

    let record: ChainRecord;
    if (plan.kind === 'wal') {
      const final = plan;
      const entries = await walItemEntries(listing, final.ship, lineageTimelines(server));
      await emitFiles(entries, { pool, sink: new PrefixedSink(sink, `${cluster}/wal/`), log, verifyPages: false, compress: s.compress, rangeSize: DEFAULT_RANGE_SIZE, signal: o.signal });
      log.info(`WAL shipped: ${describeRange(final.ship)}`);
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
      record = await baseJob(s, job, sit, cluster, pool, sink, o, startedAtMs);
    }

    // Prune what Bacula has confirmed (the reference it named is in its catalog as successful).
    const reference = job.level !== 'F' && job.since !== undefined ? findReference(records, job.since) : undefined;
    const others = allRecords.filter((r) => !records.includes(r));
    const kept = [...others, ...retainRecords([...records.filter((r) => r.jobId !== job.jobId || job.jobId === 0), record], reference)];
    await saveChain(chainPath, kept);
    if (reference) await pruneSpool(s, records, reference, others, log);
  } finally {
    await repl.close().catch(() => undefined);
    await pool?.destroy();
    await release?.();
  }
}

async function baseJob(s: PitrSettings, job: PitrJob, sit: Situation, cluster: string, pool: WorkerPool, sink: ItemSink, o: PitrRunOptions, startedAtMs: number): Promise<ChainRecord> {
  const { log } = o;
  const now = new Date();
  const backupId = newBackupId(now, 'full');
  const label = s.label === 'auto' ? `bacula_${job.jobId}` : s.label;
  const work = join(s.tmpdir, `pitr-${job.jobId}-${process.pid}`);
  // Also removes the work directories of backends that did not live to remove them (kill -9).
  await prepareTmpdir(s.tmpdir, log);
  await mkdir(work, { recursive: true, mode: 0o700 });
  // Removed by every exit path, a cancel (SIGUSR1 ends the process) included.
  registerScratch(work);
  try {
    const manifestPath = join(work, 'manifest.json');
    const result = await runBaseBackup({
      connection: s.connection,
      pool,
      sink: new PrefixedSink(sink, `${cluster}/pitr/${backupId}/`),
      log,
      backupId,
      label,
      verifyChecksums: s.verifyChecksums,
      compress: s.compress,
      backupFromStandby: s.backupFromStandby,
      excludeTablespaces: s.excludeTablespaces,
      tmpdir: work,
      progressIntervalMs: s.progressIntervalMs,
      signal: o.signal,
      manifestPath,
    });
    // The sealed manifest last: a restore treats a backup without it as incomplete.
    await emitFiles([{ path: 'manifest.json', absPath: manifestPath, type: 'file', mode: 0o640, mtimeMs: Date.now(), size: (await stat(manifestPath)).size, verifyPages: false, firstBlock: 0 }], {
      pool, sink: new PrefixedSink(sink, `${cluster}/pitr/${backupId}/`), log, verifyPages: false, compress: false, rangeSize: DEFAULT_RANGE_SIZE, signal: o.signal,
    });
    const m = result.manifest;
    const S = sit.server.walSegmentSize;
    await switchAndAwait(s, sit.server.systemId, sit.server.walSegmentSize, log, o.signal);
    const listing = await listWalArchive(s.spoolRoot, sit.server.systemId);
    const startSegno = walSegmentNumber(parseLsn(m.startLsn), S);
    const stopSegno = walSegmentNumber(parseLsn(m.stopLsn), S);
    const wal = planBaseWal({ server: sit.server, segments: listing.segments, startSegno, stopSegno });
    if (listing.segments.length === 0) {
      // A standby switches no segment, so nothing was awaited: an empty spool is the same failure.
      throw new PgbaculaError('WAL_GAP', `the spool ${s.spoolRoot} holds no WAL of system ${sit.server.systemId} (${await archiverState(s)})`, { hint: archiveHint(s.spoolRoot) });
    }
    if (wal.gapAfter) {
      log.warning(`WAL gap in the spool: ${wal.gapAfter.missing} is missing after ${wal.gapAfter.after}: point-in-time recovery reaches ${wal.gapAfter.after} at most, and the next job stores a base backup again unless the segment comes back`);
    }
    const entries = await walItemEntries(listing, wal.ship, lineageTimelines(sit.server));
    await emitFiles(entries, { pool, sink: new PrefixedSink(sink, `${cluster}/wal/`), log, verifyPages: false, compress: s.compress, rangeSize: DEFAULT_RANGE_SIZE, signal: o.signal });
    log.info(`WAL shipped from the spool: ${describeRange(wal.ship)}`);
    log.info(`base backup ${backupId} complete: ${formatCount(result.fileCount)} files, ${formatBytes(result.rawBytes)}, lsn ${m.startLsn}..${m.stopLsn}, page verification ${m.pageVerification}`);
    return {
      jobId: job.jobId,
      jobName: job.name,
      level: job.level,
      stored: 'base',
      backupId,
      startedAtMs,
      completedAtMs: Date.now(),
      systemId: sit.server.systemId,
      timeline: sit.server.timeline,
      walSegmentSize: S,
      startSegno: String(startSegno),
      startLsn: m.startLsn,
      stopLsn: m.stopLsn,
      walThrough: wal.walThrough satisfies ChainSegmentRef,
      ...(wal.ship.length ? { shippedFirst: wal.ship[0]!.name, shippedLast: wal.ship.at(-1)!.name } : {}),
      shippedCount: wal.ship.length,
    };
  } finally {
    removeScratch(work);
  }
}

/** Header-only items: what a job of this level would store now. */
async function estimateItems(s: PitrSettings, sit: Situation, plan: ReturnType<typeof planWalJob>, cluster: string, pool: WorkerPool, sink: ItemSink): Promise<void> {
  const emitHeader = async (path: string, size: number, mtimeMs: number): Promise<void> => {
    await sink.begin({ path, type: 'file', mode: 0o640, mtimeMs, size, encoding: 'raw' });
    await sink.end({ hash: '', rawSize: size, storedSize: size });
  };
  const walPrefix = `${cluster}/wal/`;
  if (plan.kind === 'wal') {
    for (const e of await walItemEntries(sit.listing, plan.ship, lineageTimelines(sit.server))) await emitHeader(walPrefix + e.path, e.size, e.mtimeMs);
    return;
  }
  if (!sit.dataDirectory) throw new PgbaculaError('PREREQUISITE', 'cannot read data_directory from the server (the role lacks pg_read_all_settings)');
  const cplan = await planCluster(pool, sit.dataDirectory, sit.major, s.excludeTablespaces);
  const prefix = `${cluster}/pitr/${newBackupId(new Date(), 'full')}/`;
  for (const e of cplan.entries) {
    if (e.type !== 'file') continue;
    await emitHeader(prefix + e.path, e.size, e.mtimeMs);
  }
  // The newest spool segments the base backup would start with are not known before it starts;
  // the estimate counts the WAL of the current lineage from the newest segment on.
  const lineage = lineageSegments(sit.listing.segments, sit.server);
  for (const e of await walItemEntries(sit.listing, lineage.slice(-1), [])) await emitHeader(walPrefix + e.path, e.size, e.mtimeMs);
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
  const listing = await listWalArchive(s.spoolRoot, reference.systemId);
  const victims = [...listing.segments, ...listing.partials].filter((seg) => seg.segno < limit);
  let removed = 0;
  for (const v of victims) {
    try {
      await unlink(v.path);
      removed++;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warning(`cannot prune ${v.path}: ${(e as Error).message}`);
    }
  }
  // Backup history files (informational) of pruned segments go with them.
  for (const tli of await readdir(listing.dir).catch(() => [] as string[])) {
    if (!/^[0-9A-F]{8}$/.test(tli)) continue;
    for (const f of await readdir(join(listing.dir, tli)).catch(() => [] as string[])) {
      const p = parseWalFileName(f, reference.walSegmentSize);
      if (p?.kind === 'backup' && segmentNumberOfName(p, reference.walSegmentSize) < limit) await unlink(join(listing.dir, tli, f)).catch(() => undefined);
    }
  }
  if (removed > 0) {
    const firstKept = walSegmentName(reference.walThrough.timeline, limit, reference.walSegmentSize);
    log.info(`spool pruned: ${removed} WAL file${removed === 1 ? '' : 's'} before ${firstKept} (Bacula confirmed JobId ${reference.jobId}; the spool keeps all WAL since the start of that chain's base backup, + ${s.overlap} segments of overlap)`);
  }
}
