import { readdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import type { ConnectionSettings } from '../config/connection.js';
import { PgbaculaError } from '../errors.js';
import { MANIFEST_VERSION, MANIFEST_VERSION_BUNDLED, MANIFEST_VERSION_INCREMENTAL, MANIFEST_FORMAT, type ManifestFile, type ManifestHead } from '../format/backup-manifest.js';
import { ManifestWriter } from '../pipeline/manifest-writer.js';
import { hashContent } from '../format/content-hash.js';
import { hexLiteral } from '../format/hex.js';
import { combinableLabel } from '../format/backup-label.js';
import { forkOf } from '../format/relation-file.js';
import { encodeBlocks, createLz4EncodeScratch } from '../format/lz4-frame.js';
import { prepareBackupSession, startBackup, stopBackup, timelineFromLabel } from '../server/backup-api.js';
import { ReplicationConnection } from '../server/replication.js';
import { openSession } from '../server/session.js';
import { isSupportedMajor, SUPPORTED_RANGE, versionFacts, type Major, type VersionFacts } from '../pg/versions.js';
import { serverVersion } from '../server/server-facts.js';
import { streamWal } from '../server/wal-stream.js';
import { captureTopology, type StandbyEndpoint } from '../server/topology-capture.js';
import { captureSummary, serializeTopology, TOPOLOGY_ITEM } from '../format/topology.js';
import { planCluster, type PlanEntry } from '../pipeline/cluster-walk.js';
import { DEFAULT_RANGE_SIZE, emitFiles, type ChecksumFailure } from '../pipeline/emit-files.js';
import type { ItemSink } from '../item/item.js';
import { formatBytes, formatCount, ProgressTracker, type JobLog } from '../item/job-log.js';
import { HASH_ALGORITHM, loadKernels } from '../format/kernels.js';
import type { WorkerPool } from '../pipeline/pool.js';
import { parseLsn } from '../wal/lsn.js';
import { makeDirs, removeTree } from '../os/user-dirs.js';
import type { BackupPlanner, PlannedBackup } from './planner.js';

export interface BaseBackupRequest {
  readonly connection: ConnectionSettings;
  readonly pool: WorkerPool;
  readonly sink: ItemSink;
  readonly log: JobLog;
  readonly backupId: string;
  readonly label: string;
  /** Data directory to read; default: the server's data_directory. */
  readonly pgdata?: string;
  readonly verifyChecksums: boolean;
  readonly compress: boolean;
  readonly backupFromStandby: boolean;
  readonly excludeTablespaces: readonly string[];
  /** Staging for the WAL streamed during the backup. */
  readonly tmpdir: string;
  readonly progressIntervalMs: number;
  readonly signal?: AbortSignal;
  /** Where the sealed manifest is written (fsynced) at the end; the sink commits it. */
  readonly manifestPath: string;
  /** The mode the manifest records (default pitr). */
  readonly mode?: string;
  /** Block-level backups: what becomes of the walked plan once the backup has started. */
  readonly planner?: BackupPlanner;
  /** track_replication_state: the replication topology is captured at the start and stored under topology/. */
  readonly trackReplicationState?: boolean;
  /** standby_hosts: standbys whose own settings the capture reads. */
  readonly standbyEndpoints?: readonly StandbyEndpoint[];
}

export interface BaseBackupResult {
  /** The manifest without its file list (that is in the file at manifestPath). */
  readonly manifest: ManifestHead;
  readonly fileCount: number;
  readonly rawBytes: number;
  readonly failures: readonly ChecksumFailure[];
}

interface ServerBasics {
  version: string;
  versionNum: number;
  major: Major;
  inRecovery: boolean;
  dataChecksums: boolean;
  dataDirectory: string | null;
  blockSize: number;
}

async function serverBasics(client: pg.Client): Promise<ServerBasics> {
  const v = await serverVersion(client);
  const row = (await client.query<{ sums: string; bs: string }>("SELECT current_setting('data_checksums') AS sums, current_setting('block_size') AS bs")).rows[0]!;
  const major = v.major;
  if (!isSupportedMajor(major)) {
    throw new PgbaculaError('VERSION_UNSUPPORTED', `PostgreSQL ${v.version} is not supported`, { hint: `pgbacula supports ${SUPPORTED_RANGE}.` });
  }
  const dd = await client.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'data_directory'");
  return {
    version: v.version,
    versionNum: v.versionNum,
    major,
    inRecovery: v.inRecovery,
    dataChecksums: row.sums === 'on',
    dataDirectory: dd.rows[0]?.setting ?? null,
    blockSize: Number(row.bs),
  };
}

/** Emit a small in-memory file as one item. */
async function emitSmallFile(sink: ItemSink, path: string, content: Uint8Array, compress: boolean): Promise<ManifestFile> {
  const kernels = loadKernels();
  const now = Date.now();
  const encoding = compress ? 'lz4' : 'raw';
  await sink.begin({ path, type: 'file', mode: 0o600, mtimeMs: now, size: content.length, encoding });
  let stored = content;
  if (compress && content.length > 0) {
    const records = encodeBlocks(content, kernels, createLz4EncodeScratch(kernels, content.length));
    stored = new Uint8Array(records[0]!.buffer);
  }
  await sink.write(stored);
  const hash = hashContent(content, DEFAULT_RANGE_SIZE, (b) => kernels.hash(b));
  const placed = await sink.end({ hash, rawSize: content.length, storedSize: stored.length });
  return { path, type: 'file', size: content.length, mode: 0o600, mtime: new Date(now).toISOString(), hash, stored: encoding, storedSize: stored.length, ...(placed?.bundle ? { bundle: placed.bundle } : {}) };
}


/**
 * A hot base backup on one held session (non-exclusive API of the server's version), with the
 * WAL from start to stop streamed by our replication client over a temporary slot created
 * before the start — so the backup restores on its own, without any archive.
 */
export async function runBaseBackup(req: BaseBackupRequest): Promise<BaseBackupResult> {
  const { log } = req;
  const session = await openSession(req.connection, { applicationName: 'pgbacula backup' });
  let repl: ReplicationConnection | undefined;
  let inBackup = false;
  let facts: VersionFacts | undefined;
  let writer: ManifestWriter | undefined;
  const walDir = join(req.tmpdir, `wal-${req.backupId}-${process.pid}`);
  // Stopped on every exit path: the stream reconnects when its connection is lost, so closing
  // the replication session alone would not end it after a failure.
  const streamStop = new AbortController();
  try {
    const server = await serverBasics(session);
    facts = versionFacts(server.major);
    if (req.backupFromStandby && !server.inRecovery) {
      throw new PgbaculaError('PREREQUISITE', 'backup_from_standby=true but the server is a primary', {
        hint: 'Point the connection (or standby_host) at a standby, or set backup_from_standby=false.',
      });
    }
    const pgdata = req.pgdata ?? server.dataDirectory;
    if (!pgdata) {
      throw new PgbaculaError('PREREQUISITE', 'cannot read data_directory from the server (the role lacks pg_read_all_settings)', {
        hint: 'Give the data directory with --pgdata, or grant pg_read_all_settings to the role.',
      });
    }
    try {
      await stat(join(pgdata, 'PG_VERSION'));
    } catch {
      throw new PgbaculaError('PREREQUISITE', `data directory ${pgdata} is not readable here`, {
        hint: 'pgbacula reads PGDATA directly: run it on the database host (or the standby it backs up from) as root or the postgres user.',
      });
    }
    log.info(`starting ${req.mode ?? 'pitr'} backup (PG ${server.version} on ${hostname()}${server.inRecovery ? ', standby' : ''})`);

    // The temporary slot is made before the backup starts, so the server keeps every WAL
    // segment from the start LSN until we have streamed it.
    repl = await ReplicationConnection.open(req.connection, { applicationName: 'pgbacula backup wal' });
    const ident = await repl.identifySystem();
    const segmentSize = await repl.walSegmentSize();
    const slot = `pgbacula_${process.pid}_${Date.now().toString(36)}`;
    await repl.createPhysicalSlot(slot, { temporary: true, reserveWal: true });

    await prepareBackupSession(session, facts);
    const start = await startBackup(session, facts, req.label, true);
    inBackup = true;
    log.info(`backup start label='${req.label}' lsn=${start.startLsn}`);
    let topology: ManifestFile | undefined;
    if (req.trackReplicationState) {
      // What cannot be read is left out with a note; a capture that fails outright is a warning:
      // the data of the backup matters more than the record of its replication.
      const doc = await captureTopology({ session, connection: req.connection, major: server.major, pgVersion: server.version, timeline: ident.timeline, inRecovery: server.inRecovery, pgdata, ownSlots: [slot], ...(req.standbyEndpoints ? { standbys: req.standbyEndpoints } : {}) })
        .catch((e: unknown) => {
          log.warning(`replication topology NOT captured (track_replication_state=true): ${(e as Error).message.split('\n')[0]} — pgbacula check says what the role needs`);
          return undefined;
        });
      if (doc) {
        // Stored raw and never compressed: a restore reads it before anything else of the backup.
        topology = await emitSmallFile(req.sink, TOPOLOGY_ITEM, new TextEncoder().encode(serializeTopology(doc)), false);
        log.info(captureSummary(doc));
        for (const n of doc.notes) log.warning(`replication topology: ${n}`);
      }
    }

    // WAL is streamed while the files are copied (the slot would hold it anyway, but streaming
    // now keeps the server's pg_wal from growing with a long backup).
    await makeDirs(walDir, 0o700);
    writer = new ManifestWriter(join(walDir, 'manifest-entries.spool'));
    const add = writer.add.bind(writer);
    if (topology) add(topology);
    let streamError: unknown;
    const during = streamWal({
      connection: repl,
      startLsn: parseLsn(start.startLsn),
      timeline: ident.timeline,
      slot,
      temporarySlot: true,
      reconnect: req.connection,
      targetDir: walDir,
      statusIntervalMs: 2_000,
      signal: streamStop.signal,
    }).catch((e: unknown) => {
      streamError = e;
      return undefined;
    });

    const plan = await planCluster(req.pool, pgdata, server.major, req.excludeTablespaces);
    const excluded = [...plan.excluded.keys()].filter((k) => k.startsWith('contents of') || k.includes('server rules')).slice(0, 6);
    log.info(`PGDATA walk: ${formatCount(plan.fileCount)} files, ${formatBytes(plan.totalBytes)}${excluded.length ? ` (excluded ${excluded.join(', ')})` : ''}`);

    let planned: PlannedBackup | undefined;
    if (req.planner) {
      planned = await req.planner({
        entries: plan.entries,
        startLsn: start.startLsn,
        timeline: ident.timeline,
        systemId: ident.systemId,
        major: server.major,
        pgdata,
        blockSize: server.blockSize,
        walSegmentSize: segmentSize,
        session,
        log,
        ...(req.signal ? { signal: req.signal } : {}),
      });
    }
    const entries = planned?.entries ?? plan.entries;
    const verify = req.verifyChecksums && server.dataChecksums;
    const progress = new ProgressTracker(log, 'backup', planned?.totalBytes ?? plan.totalBytes, req.progressIntervalMs);
    let emitted;
    try {
      emitted = await emitFiles(entries, {
        pool: req.pool,
        sink: req.sink,
        log,
        progress,
        verifyPages: verify,
        compress: req.compress,
        rangeSize: DEFAULT_RANGE_SIZE,
        onFile: add,
        ...(req.signal ? { signal: req.signal } : {}),
      });
    } finally {
      progress.stop();
    }
    if (!server.dataChecksums) log.warning('page checksums: unavailable (the cluster has data checksums off): pages were not verified');
    else if (!req.verifyChecksums) log.info('page checksums: verification disabled (verify_checksum=false)');
    else {
      log.info(`page checksums verified: ${formatCount(emitted.pagesChecked)} pages, ${emitted.failures.length} failures${emitted.tornPages ? ` (${emitted.tornPages} torn by concurrent writes, re-read)` : ''}`);
      for (const f of emitted.failures.slice(0, 50)) {
        log.warning(`checksum verification failed in ${f.path.replace(/^pgdata\//, '')} (${forkOf(f.path)} fork), block ${f.blkno}: calculated ${hexLiteral(f.computed, 4)} but the page holds ${hexLiteral(f.stored, 4)}`);
      }
    }
    if (emitted.vanished.length) log.info(`${emitted.vanished.length} files vanished during the backup (dropped relations; WAL replay accounts for them)`);

    const stop = await stopBackup(session, facts);
    inBackup = false;
    log.info(`backup stop lsn=${stop.stopLsn}`);
    add(await emitSmallFile(req.sink, 'backup_label', new TextEncoder().encode(stop.labelFile), false));
    if (stop.spcmapFile !== '') add(await emitSmallFile(req.sink, 'tablespace_map', new TextEncoder().encode(stop.spcmapFile), false));
    if (planned && facts.combineBackup) {
      // PostgreSQL's pg_combinebackup takes each backup of a chain as a data directory with its
      // own backup_label, an incremental one naming its reference. The label above stays the one
      // a restore lays down: a server refuses to start from a label with INCREMENTAL lines, so
      // the restore never lays this one down (docs/block-incremental.md).
      const label = combinableLabel(stop.labelFile, planned.reference);
      add(await emitSmallFile(req.sink, 'pgdata/backup_label', new TextEncoder().encode(label), false));
    }

    // Stop the concurrent stream; if it had not yet reached the stop LSN, finish the rest from
    // where it stopped (the slot has held everything since the start).
    const startTimeline = timelineFromLabel(stop.labelFile);
    streamStop.abort();
    const first = await during;
    if (streamError) throw streamError;
    const stopLsn = parseLsn(stop.stopLsn);
    if (!first || first.lastFlushedLsn < stopLsn) {
      await streamWal({
        connection: repl,
        startLsn: first ? first.lastFlushedLsn : parseLsn(start.startLsn),
        timeline: ident.timeline,
        slot,
        temporarySlot: true,
        reconnect: req.connection,
        targetDir: walDir,
        stopAtLsn: stopLsn,
        statusIntervalMs: 2_000,
        ...(req.signal ? { signal: req.signal } : {}),
      });
    }
    const walNames = (await readdir(walDir)).filter((n) => /^[0-9A-F]{24}(\.partial)?$|^[0-9A-F]{8}\.history$/.test(n)).sort();
    // A .partial holds everything up to the stop LSN (zero-padded to the segment size): at
    // restore it is served under its final name, where replay reads to the stop point. The
    // segments go through the same pipeline as data files (ranges, recycled buffers).
    const walEntries: PlanEntry[] = [];
    for (const name of walNames) {
      const st = await stat(join(walDir, name));
      walEntries.push({ path: `wal/${name.replace(/\.partial$/, '')}`, absPath: join(walDir, name), type: 'file', mode: 0o600, mtimeMs: st.mtimeMs, size: st.size, verifyPages: false, firstBlock: 0 });
    }
    await emitFiles(walEntries, { pool: req.pool, sink: req.sink, log, verifyPages: false, compress: req.compress, rangeSize: DEFAULT_RANGE_SIZE, onFile: add });
    const walSegments = walEntries.map((e) => e.path.slice('wal/'.length));
    const firstSeg = walSegments[0] ?? '';
    const lastSeg = walSegments.at(-1) ?? '';
    log.info(`WAL shipped: ${firstSeg}..${lastSeg} (${walSegments.length} segment${walSegments.length === 1 ? '' : 's'})`);

    const manifest: ManifestHead = {
      format: MANIFEST_FORMAT,
      version: writer.bundledCount > 0 ? MANIFEST_VERSION_BUNDLED : planned?.reference ? MANIFEST_VERSION_INCREMENTAL : MANIFEST_VERSION,
      backupId: req.backupId,
      mode: req.mode ?? 'pitr',
      level: planned?.level ?? 'full',
      label: req.label,
      systemIdentifier: ident.systemId,
      pgVersion: server.version,
      pgVersionNum: server.versionNum,
      walSegmentSize: segmentSize,
      blockSize: server.blockSize,
      fromStandby: server.inRecovery,
      dataDirectory: pgdata,
      startLsn: start.startLsn,
      stopLsn: stop.stopLsn,
      startTimeline,
      stopTimeline: ident.timeline,
      startTime: new Date(Date.now() - progress.elapsedSeconds() * 1000).toISOString(),
      stopTime: new Date().toISOString(),
      hashAlgorithm: HASH_ALGORITHM,
      rangeSize: DEFAULT_RANGE_SIZE,
      pageVerification: !server.dataChecksums ? 'unavailable' : !req.verifyChecksums ? 'disabled' : emitted.failures.length ? 'failed' : 'passed',
      checksumFailures: emitted.failures.length,
      tablespaces: plan.tablespaces,
      walSegments,
      ...(planned?.reference ? { reference: planned.reference } : {}),
      ...(planned?.changedBlocks ? { changedBlocks: planned.changedBlocks } : {}),
      ...(planned?.fullBecause ? { fullBecause: planned.fullBecause } : {}),
    };
    await writer.finish(manifest, req.manifestPath);
    return { manifest, fileCount: writer.fileCount, rawBytes: writer.rawBytes, failures: emitted.failures };
  } finally {
    streamStop.abort();
    if (inBackup && facts) {
      // Never leave the server in backup mode: stop it (the result is discarded).
      await stopBackup(session, facts).catch(() => undefined);
    }
    await session.end().catch(() => undefined);
    await repl?.close().catch(() => undefined);
    writer?.discard();
    await removeTree(walDir);
  }
}
