/**
 * Mode `pitr` as a source of items:
 *
 *   <cluster>/pitr/<backup-id>/...            a base backup in the repository's stored form
 *                                             (files/ of a repository backup, then manifest.json)
 *   <cluster>/wal/<TLI>/<segment>             WAL segments from the local spool
 *   <cluster>/wal/<TLI>/<TLI>.history         timeline history files
 *
 * What a job stores is decided by its caller (for Bacula, from the level and the chain of earlier
 * jobs: src/command/bacula/pitr-chain.ts): a base backup with the spool's WAL from its start on
 * (storeBaseBackup), or the spool's WAL after a point (shipWal). Before WAL is shipped the primary
 * switches to a new segment and we wait for it to reach the spool, so a job holds the WAL up to
 * its own start of shipping; a job whose WAL does not arrive fails, and so does one whose spool
 * the archiver cannot fill (spool-check.ts) — never "OK" with a warning.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConnectionSettings } from '../../config/connection.js';
import { PgbaculaError } from '../../errors.js';
import { runBaseBackup } from '../../physical/base-backup.js';
import type { BackupPlanner } from '../../physical/planner.js';
import type { ReplicationConnection } from '../../server/replication.js';
import type { StandbyEndpoint } from '../../server/topology-capture.js';
import { openSession } from '../../server/session.js';
import { serverVersion } from '../../server/server-facts.js';
import { planCluster, type PlanEntry, type PlanEntryList } from '../../pipeline/cluster-walk.js';
import { DEFAULT_RANGE_SIZE, emitFiles } from '../../pipeline/emit-files.js';
import type { ItemSink } from '../../item/item.js';
import { formatBytes, formatCount, type JobLog } from '../../item/job-log.js';
import type { WorkerPool } from '../../pipeline/pool.js';
import { PrefixedSink } from '../../pipeline/prefixed-sink.js';
import { registerScratch, removeScratch } from '../../pipeline/scratch-dirs.js';
import { newBackupId } from '../../repo/layout.js';
import { redactCommand } from '../../config/redact.js';
import { parseLsn } from '../../wal/lsn.js';
import { hex8, parseWalFileName, segmentNumberOfName, walSegmentName, walSegmentNumber } from '../../wal/segment.js';
import { ARCHIVE_META_FILE } from '../../archive/layout.js';
import { listWalArchive, type WalArchiveListing } from '../../archive/listing.js';
import { storeHistoryFile } from '../../archive/history-files.js';
import { parseTimelineHistory, type TimelineHistoryEntry } from '../../wal/timeline-history.js';
import { archiverOf, checkSpool, giveToSpoolOwner } from './spool-check.js';
import { prepareTmpdir } from '../../os/tmpdir.js';
import { makeDirs } from '../../os/user-dirs.js';
import { posixStorage } from '../../storage/posix.js';
import { lineageSegments, planBaseWal, type SegmentRef, type ServerNow, type SpoolSegment } from './wal-plan.js';

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
  /** pitr_label as given: 'auto' leaves the label to the caller (bacula_<jobid>, pgbacula_<backup-id>). */
  readonly label: string;
  readonly parallelJobs: number;
  readonly progressIntervalMs: number;
  /** How long to wait for the switched segment to reach the spool. */
  readonly archiveWaitMs: number;
  /** track_replication_state: capture slots, subscriptions and standbys with each base backup. */
  readonly trackReplicationState: boolean;
  /** standby_hosts: the standbys whose own settings the capture reads. */
  readonly standbyEndpoints?: readonly StandbyEndpoint[];
}

export interface PitrRunOptions {
  readonly log: JobLog;
  readonly signal: AbortSignal;
  /** Estimate: names and sizes only, nothing changes on the server or in the spool. */
  readonly estimate: boolean;
}

export interface Situation {
  readonly server: ServerNow;
  readonly major: number;
  readonly dataDirectory: string | null;
  readonly listing: WalArchiveListing;
}

/** Who the server is, where it stands, and what the spool holds for it. */
export async function situation(s: PitrSettings, repl: ReplicationConnection): Promise<Situation> {
  const ident = await repl.identifySystem();
  const walSegmentSize = await repl.walSegmentSize();
  const session = await openSession(s.connection, { applicationName: 'pgbacula pitr' });
  let major: number;
  let dataDirectory: string | null;
  try {
    major = (await serverVersion(session)).major;
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
export async function switchAndAwait(s: PitrSettings, systemId: string, segmentSize: number, log: JobLog, signal: AbortSignal): Promise<void> {
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

export function describeRange(ship: readonly SpoolSegment[]): string {
  if (ship.length === 0) return 'none (no new segment in the spool)';
  return `${ship[0]!.name}..${ship.at(-1)!.name} (${ship.length} segment${ship.length === 1 ? '' : 's'})`;
}

/** Timelines whose history a restore along the server's lineage needs. */
export function lineageTimelines(server: ServerNow): number[] {
  return [...(server.history ?? []).map((e) => e.parentTimeline), server.timeline].filter((t) => t > 1);
}

/** Ship `ship` (and the lineage's history files) from the spool under `<cluster>/wal/`. */
export async function shipWal(s: PitrSettings, server: ServerNow, listing: WalArchiveListing, ship: readonly SpoolSegment[], cluster: string, pool: WorkerPool, sink: ItemSink, o: PitrRunOptions): Promise<void> {
  const entries = await walItemEntries(listing, ship, lineageTimelines(server));
  await emitFiles(entries, { pool, sink: new PrefixedSink(sink, `${cluster}/wal/`), log: o.log, verifyPages: false, compress: s.compress, rangeSize: DEFAULT_RANGE_SIZE, signal: o.signal });
  o.log.info(`WAL shipped: ${describeRange(ship)}`);
}

/** What storeBaseBackup stored: a base backup and the spool's WAL from its start on. */
export interface StoredBase {
  readonly backupId: string;
  readonly startSegno: bigint;
  readonly startLsn: string;
  readonly stopLsn: string;
  /** Every segment from the backup's start through this one was shipped. */
  readonly walThrough: SegmentRef;
  readonly ship: readonly SpoolSegment[];
  /** What the manifest says it is (a block-level backup asked for as incremental may have had to be full). */
  readonly level: 'full' | 'incremental' | 'differential';
}

/** A base backup asked for: the job's number names its work directory; the label as the server records it. */
export interface BaseRequest {
  readonly jobId: number;
  readonly label: string;
  /** Block-level modes: the manifest's mode, the id's level letter, and what becomes of the walked plan. */
  readonly mode?: string;
  readonly level?: 'full' | 'incremental' | 'differential';
  readonly planner?: BackupPlanner;
  /** Ship the spool's WAL from this segment on when it is before the backup's start (the chain's WAL stays contiguous). */
  readonly walFromSegno?: bigint;
  /** Given the sealed manifest file before the work directory goes (block-level modes keep a copy). */
  readonly onManifest?: (path: string) => Promise<void>;
}

/** A base backup under `<cluster>/pitr/<backup-id>/`, then the spool's WAL from its start segment on. */
export async function storeBaseBackup(s: PitrSettings, req: BaseRequest, sit: Situation, cluster: string, pool: WorkerPool, sink: ItemSink, o: PitrRunOptions): Promise<StoredBase> {
  const { log } = o;
  const now = new Date();
  const backupId = newBackupId(now, req.level ?? 'full');
  const work = join(s.tmpdir, `pitr-${req.jobId}-${process.pid}`);
  // Also removes the work directories of backends that did not live to remove them (kill -9).
  await prepareTmpdir(s.tmpdir, log);
  await makeDirs(work, 0o700);
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
      label: req.label,
      verifyChecksums: s.verifyChecksums,
      compress: s.compress,
      backupFromStandby: s.backupFromStandby,
      excludeTablespaces: s.excludeTablespaces,
      tmpdir: work,
      progressIntervalMs: s.progressIntervalMs,
      signal: o.signal,
      manifestPath,
      ...(req.mode ? { mode: req.mode } : {}),
      ...(req.planner ? { planner: req.planner } : {}),
      trackReplicationState: s.trackReplicationState,
      ...(s.standbyEndpoints ? { standbyEndpoints: s.standbyEndpoints } : {}),
    });
    await req.onManifest?.(manifestPath);
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
    const wal = planBaseWal({ server: sit.server, segments: listing.segments, startSegno: req.walFromSegno !== undefined && req.walFromSegno < startSegno ? req.walFromSegno : startSegno, stopSegno });
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
    return { backupId, startSegno, startLsn: m.startLsn, stopLsn: m.stopLsn, walThrough: wal.walThrough, ship: wal.ship, level: m.level };
  } finally {
    removeScratch(work);
  }
}

/** What a block-level estimate makes of the walked cluster: the files it would store (incremental ones among them). */
export type EstimatePlanner = (entries: PlanEntryList) => Promise<{ readonly entries: Iterable<PlanEntry>; readonly level: 'full' | 'incremental' | 'differential' }>;

/** Header-only items: what a job would store now — WAL after a point, or a base backup (whole, or as `planBase` plans it). */
export async function estimateItems(s: PitrSettings, sit: Situation, plan: { readonly kind: 'wal'; readonly ship: readonly SpoolSegment[] } | { readonly kind: 'base' }, cluster: string, pool: WorkerPool, sink: ItemSink, planBase?: EstimatePlanner): Promise<void> {
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
  const planned = planBase ? await planBase(cplan.entries) : { entries: cplan.entries, level: 'full' as const };
  const prefix = `${cluster}/pitr/${newBackupId(new Date(), planned.level)}/`;
  for (const e of planned.entries) {
    if (e.type !== 'file') continue;
    await emitHeader(prefix + e.path, e.size, e.mtimeMs);
  }
  // The newest spool segments the base backup would start with are not known before it starts;
  // the estimate counts the WAL of the current lineage from the newest segment on.
  const lineage = lineageSegments(sit.listing.segments, sit.server);
  for (const e of await walItemEntries(sit.listing, lineage.slice(-1), [])) await emitHeader(walPrefix + e.path, e.size, e.mtimeMs);
}

/**
 * Remove the spool's WAL of `systemId` before segment `limit` (and the backup history files of
 * those segments); returns how many WAL files went.
 */
export async function pruneSpoolBefore(spoolRoot: string, systemId: string, walSegmentSize: number, limit: bigint, log: JobLog): Promise<number> {
  const listing = await listWalArchive(spoolRoot, systemId);
  const victims = [...listing.segments, ...listing.partials].filter((seg) => seg.segno < limit);
  let removed = 0;
  for (const v of victims) {
    try {
      await posixStorage.removeFile(v.path);
      await posixStorage.removeFile(`${v.path}.summary`).catch(() => undefined); // its block summary, when it has one
      removed++;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warning(`cannot prune ${v.path}: ${(e as Error).message}`);
    }
  }
  // Backup history files (informational) of pruned segments go with them.
  for (const tli of await readdir(listing.dir).catch(() => [] as string[])) {
    if (!/^[0-9A-F]{8}$/.test(tli)) continue;
    for (const f of await readdir(join(listing.dir, tli)).catch(() => [] as string[])) {
      const p = parseWalFileName(f, walSegmentSize);
      if (p?.kind === 'backup' && segmentNumberOfName(p, walSegmentSize) < limit) await posixStorage.removeFile(join(listing.dir, tli, f)).catch(() => undefined);
    }
  }
  return removed;
}
