/**
 * `pgbacula wal-receive`: a long-running WAL receiver over a physical replication slot that
 * feeds the same archive as wal-push (src/archive/push.ts), the way pg_receivewal works
 * (physical START_REPLICATION, segments written as `.partial` until complete) plus what an
 * archive needs:
 *
 * - WAL is streamed by streamWal (src/server/wal-stream.ts) into ROOT/<sysid>/.receive/: the open
 *   segment is `<name>.partial` there; each completed segment (fsynced) is moved into its
 *   timeline directory by link + unlink, never replacing a different file;
 * - the flush position reported to the server is what is fsynced, so the slot keeps every byte
 *   we do not durably have: a receiver killed at any point and restarted loses nothing (it
 *   publishes completed segments left in .receive/, and restarts the open one from its start);
 * - before streaming timeline N > 1 its history file (and its ancestors') is archived, fetched
 *   with TIMELINE_HISTORY; at the end of a timeline (a promotion upstream) the old timeline's
 *   last segment is archived as `.partial` and streaming follows the next timeline from the
 *   start of the segment holding the switch point;
 * - connection losses, server restarts and a slot still held by our killed predecessor are
 *   retried with exponential backoff; everything else (another system in a repository, a
 *   different segment under an existing name, WAL the server no longer has) stops the receiver
 *   with the reason.
 */
import { join } from 'node:path';
import type { ConnectionSettings } from '../config/connection.js';
import { PgbaculaError } from '../errors.js';
import type { JobLog } from '../item/job-log.js';
import { closeClient, destroyClient, ReplicationConnection } from '../server/replication.js';
import { openSession } from '../server/session.js';
import { versionFacts, type Major } from '../pg/versions.js';
import { streamWal } from '../server/wal-stream.js';
import { acquireStoredPidLock } from '../storage/pid-lock.js';
import { posixStorage } from '../storage/posix.js';
import { formatLsn, parseLsn, type Lsn } from '../wal/lsn.js';
import { hex8, parseWalFileName, walSegmentStart, walSegmentStartOf } from '../wal/segment.js';
import { isHistoryArchived, storeHistoryFile } from './history-files.js';
import { listArchivedSystems, listWalArchive } from './listing.js';
import { publishReceivedFile } from './publish-received.js';
import { receiveDir, systemDir } from './layout.js';
import { sweepDeadTemporaries } from './archive-io.js';
import { isInLineage, parseTimelineHistory, switchPointOf, timelineOfLsn, type TimelineHistoryEntry } from '../wal/timeline-history.js';

export interface ReceiverOptions {
  readonly connection: ConnectionSettings;
  /** Archive root (walArchiveRoot). */
  readonly root: string;
  /** A repository: refuse to archive a second system. */
  readonly singleSystem: boolean;
  /** Physical slot to stream from; undefined streams without one (WAL may then be lost). */
  readonly slot: string | undefined;
  readonly createSlot: boolean;
  readonly synchronous: boolean;
  readonly applicationName: string;
  readonly statusIntervalMs: number;
  readonly signal: AbortSignal;
  readonly log: JobLog;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
}

export interface ReceiverSummary {
  readonly systemId: string | undefined;
  readonly segments: number;
  readonly historyFiles: string[];
  readonly timelineSwitches: number;
  readonly reconnects: number;
  readonly lastTimeline: number | undefined;
}

/** Run until the signal aborts (resolves) or a non-retryable error (rejects). */
export async function runWalReceiver(o: ReceiverOptions): Promise<ReceiverSummary> {
  const state = {
    systemId: undefined as string | undefined,
    segments: 0,
    historyFiles: [] as string[],
    timelineSwitches: 0,
    reconnects: 0,
    lastTimeline: undefined as number | undefined,
    releaseLock: undefined as (() => Promise<void>) | undefined,
  };
  const initial = o.backoffInitialMs ?? 1000;
  const max = o.backoffMaxMs ?? 30_000;
  let backoff = initial;
  try {
    for (;;) {
      if (o.signal.aborted) break;
      const before = state.segments;
      const t0 = Date.now();
      try {
        const done = await session(o, state);
        if (done) break;
        throw new PgbaculaError('CONNECTION', 'the server ended the WAL stream (shut down or restarted)', { hint: 'wal-receive reconnects by itself.' });
      } catch (e) {
        if (o.signal.aborted) break;
        if (!isRetryable(e)) throw e;
        if (state.segments > before || Date.now() - t0 > 60_000) backoff = initial;
        const err = e as PgbaculaError;
        o.log.warning(`${err.message}; reconnecting in ${(backoff / 1000).toFixed(backoff < 1000 ? 1 : 0)} s`);
        state.reconnects++;
        await sleep(backoff, o.signal);
        backoff = Math.min(max, backoff * 2);
      }
    }
  } finally {
    await state.releaseLock?.();
  }
  return {
    systemId: state.systemId,
    segments: state.segments,
    historyFiles: state.historyFiles,
    timelineSwitches: state.timelineSwitches,
    reconnects: state.reconnects,
    lastTimeline: state.lastTimeline,
  };
}

/** A transient condition: the connection, the server's availability, our killed predecessor's slot. */
export function isRetryable(e: unknown): boolean {
  if (!(e instanceof PgbaculaError)) return false;
  if (e.code === 'CONNECTION' || e.code === 'CONNECTION_TIMEOUT') return true;
  if (e.code === 'PREREQUISITE' && /is active for PID|in use|is active/i.test(e.message)) return true;
  if (e.code === 'PROTOCOL' && /did not end the WAL stream|terminat|shutdown|shutting down/i.test(e.message)) return true;
  // Connected to a standby that is behind the archive: it catches up.
  if (e.code === 'PARAM_INVALID' && /ahead of the WAL flush position/.test(e.message)) return true;
  return false;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

type State = {
  systemId: string | undefined;
  segments: number;
  historyFiles: string[];
  timelineSwitches: number;
  reconnects: number;
  lastTimeline: number | undefined;
  releaseLock: (() => Promise<void>) | undefined;
};

/** One connection: identify, prepare, stream timeline after timeline. True = stopped by the signal. */
async function session(o: ReceiverOptions, state: State): Promise<boolean> {
  const conn = await ReplicationConnection.open(o.connection, { applicationName: o.applicationName });
  let clean = false;
  try {
    const major = await conn.major();
    const segSize = await conn.walSegmentSize();
    const ident = await conn.identifySystem();
    const systemId = ident.systemId;
    if (state.systemId !== undefined && state.systemId !== systemId) {
      throw new PgbaculaError('WAL_CONFLICT', `${conn.endpoint} is now database system ${systemId}, but this receiver archived system ${state.systemId}`, {
        hint: 'The connection reaches another cluster than before (a re-created server?); start a receiver per cluster.',
      });
    }
    state.systemId = systemId;
    if (o.singleSystem) {
      const other = (await listArchivedSystems(o.root)).find((s) => s !== systemId);
      if (other !== undefined) {
        throw new PgbaculaError('WAL_CONFLICT', `${conn.endpoint} is database system ${systemId}, but the repository's WAL archive ${o.root} holds WAL of system ${other}`, {
          hint: 'A repository holds one cluster: give this cluster its own repository, or use a spool directory.',
        });
      }
    }
    const rdir = receiveDir(o.root, systemId);
    try {
      // streamWal (src/server/wal-stream.ts) writes .receive/ on the file system: the receiver works on POSIX storage.
      await posixStorage.makeDirs(rdir, { mode: 0o750 });
    } catch (e) {
      throw new PgbaculaError('IO', `cannot create ${rdir}: ${(e as Error).message}`, { hint: 'The archive must be writable by the OS user that runs wal-receive.' });
    }
    state.releaseLock ??= await lockReceiveDir(rdir);
    const magic = versionFacts(major).xlogPageMagic;
    const publish = async (path: string, name: string): Promise<void> => {
      const out = await publishReceivedFile(o.root, systemId, path, { segmentSize: segSize, magic }, posixStorage, (t) => o.log.warning(t));
      if (!name.endsWith('.partial')) state.segments++;
      o.log.info(`archived ${name}${out.status === 'identical' ? ' (already archived, identical)' : out.status === 'kept-aside' ? ` (differs from the archived copy: kept as ${out.path})` : ''}`);
    };

    // Server history: which timeline a position belongs to, and the history files to archive.
    const serverEntries: TimelineHistoryEntry[] = ident.timeline > 1 ? parseTimelineHistory((await conn.timelineHistory(ident.timeline)).content, ident.timeline) : [];
    const archiveHistories = async (tli: number): Promise<void> => {
      const chain = tli === ident.timeline ? serverEntries.map((e) => e.parentTimeline).filter((t) => t > 1) : [];
      for (const t of [...chain, tli]) {
        if (t < 2 || (await isHistoryArchived(o.root, systemId, t))) continue;
        const h = await conn.timelineHistory(t);
        const out = await storeHistoryFile(o.root, systemId, t, h.content, `TIMELINE_HISTORY ${t} on ${conn.endpoint}`);
        state.historyFiles.push(h.fileName);
        o.log.info(`archived ${h.fileName}${out.status === 'identical' ? ' (already archived, identical)' : ''}`);
      }
    };

    // What a killed predecessor was writing into the archive (a segment or its block summary,
    // before the rename) goes first: its temporary files.
    for (const d of (await posixStorage.list(systemDir(o.root, systemId)).catch(() => [] as string[])).filter((x) => /^[0-9A-F]{8}$/.test(x))) {
      await sweepDeadTemporaries(posixStorage, join(systemDir(o.root, systemId), d));
    }
    // Completed segments a killed predecessor left in .receive/ (fsynced, not yet moved).
    for (const name of (await posixStorage.list(rdir)).sort()) {
      const p = parseWalFileName(name, segSize);
      if (p?.kind !== 'segment') continue;
      if (p.timeline > 1) await archiveHistories(p.timeline);
      await publish(join(rdir, name), name);
    }

    const slotStart = o.slot === undefined ? undefined : await ensureSlot(o, conn, major, o.slot);
    let { startLsn, timeline } = await startPoint(o.root, systemId, segSize, slotStart, ident, serverEntries);
    startLsn = walSegmentStartOf(startLsn, segSize);

    for (;;) {
      await archiveHistories(timeline);
      state.lastTimeline = timeline;
      o.log.info(`streaming WAL of system ${systemId} from ${conn.endpoint}: timeline ${hex8(timeline)} from ${formatLsn(startLsn)}${o.slot ? ` (slot ${o.slot})` : ' (no slot)'}${o.synchronous ? ', synchronous' : ''}`);
      const r = await streamWal({
        connection: conn,
        startLsn,
        timeline,
        ...(o.slot === undefined ? {} : { slot: o.slot }),
        targetDir: rdir,
        statusIntervalMs: o.statusIntervalMs,
        signal: o.signal,
        fetchHistory: false,
        synchronous: o.synchronous,
        // This loop reconnects itself (backoff, log lines, the slot's restart point).
        reconnect: false,
        onSegment: (seg) => publish(seg.path, seg.name),
      });
      if (r.stoppedBy === 'signal') {
        clean = true;
        return true;
      }
      if (r.stoppedBy !== 'end-of-timeline' || !r.endOfTimeline) {
        clean = true;
        return false; // server shut down: reconnect
      }
      // The upstream server switched timelines (a promotion): keep the old timeline's last
      // segment as .partial in the archive, archive the new history file, follow it.
      if (r.partial) await publish(join(rdir, r.partial), r.partial);
      const { nextTimeline, switchLsn } = r.endOfTimeline;
      await archiveHistories(nextTimeline);
      o.log.info(`timeline ${hex8(timeline)} ended at ${formatLsn(switchLsn)}; following timeline ${hex8(nextTimeline)}`);
      state.timelineSwitches++;
      timeline = nextTimeline;
      startLsn = walSegmentStartOf(switchLsn, segSize);
    }
  } finally {
    if (clean) await closeClient(conn.client, 5000);
    else destroyClient(conn.client);
  }
}

interface SlotStart {
  readonly restartLsn: Lsn | null;
  readonly restartTimeline: number | null;
}

/** The slot must exist (or be created with --create-slot) and be physical; its restart point. */
async function ensureSlot(o: ReceiverOptions, conn: ReplicationConnection, major: Major, slot: string): Promise<SlotStart> {
  const read = async (): Promise<SlotStart & { slotType: string } | null> => {
    if (versionFacts(major).readReplicationSlot) {
      const info = await conn.readSlot(slot);
      return info && { slotType: info.slotType, restartLsn: info.restartLsn, restartTimeline: info.restartTimeline };
    }
    // Before 15: pg_replication_slots over a regular session.
    const client = await openSession(o.connection, { applicationName: `${o.applicationName} slot check` });
    try {
      const r = await client.query<{ slot_type: string; restart_lsn: string | null }>('SELECT slot_type, restart_lsn::text AS restart_lsn FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      const row = r.rows[0];
      return row ? { slotType: row.slot_type, restartLsn: row.restart_lsn === null ? null : parseLsn(row.restart_lsn), restartTimeline: null } : null;
    } finally {
      await closeClient(client);
    }
  };
  let info = await read();
  if (!info) {
    if (!o.createSlot) {
      throw new PgbaculaError('PREREQUISITE', `replication slot "${slot}" does not exist on ${conn.endpoint}`, {
        hint: `Run wal-receive once with --create-slot, or create it: SELECT pg_create_physical_replication_slot('${slot}', true);`,
      });
    }
    await conn.createPhysicalSlot(slot, { reserveWal: true }).catch((e: unknown) => {
      if (!(e instanceof PgbaculaError && /already exists/.test(e.message))) throw e;
    });
    o.log.info(`created physical replication slot "${slot}" on ${conn.endpoint}`);
    info = await read();
    if (!info) throw new PgbaculaError('PROTOCOL', `replication slot "${slot}" was created on ${conn.endpoint} but is not visible`);
  }
  if (info.slotType !== 'physical') {
    throw new PgbaculaError('PREREQUISITE', `replication slot "${slot}" on ${conn.endpoint} is a ${info.slotType} slot`, { hint: 'wal-receive needs a physical slot; choose another name with --slot-name.' });
  }
  return info;
}

/**
 * Where to start: after the newest complete segment of the archive, or at the
 * start of the open `.partial` in .receive/ when that is newer; else the slot's restart point;
 * else the server's flush position. The timeline is that of the local file unless the server's
 * history says the position belongs to a later one.
 */
async function startPoint(
  root: string,
  systemId: string,
  segSize: number,
  slot: SlotStart | undefined,
  ident: { xlogPos: Lsn; timeline: number },
  serverEntries: readonly TimelineHistoryEntry[],
): Promise<{ startLsn: Lsn; timeline: number }> {
  const listing = await listWalArchive(root, systemId).catch(() => undefined);
  let local: { segno: bigint; timeline: number; partial: boolean } | undefined;
  const better = (c: { segno: bigint; timeline: number; partial: boolean }): boolean =>
    !local || c.segno > local.segno || (c.segno === local.segno && (c.timeline > local.timeline || (c.timeline === local.timeline && local.partial && !c.partial)));
  if (listing && listing.segmentSize === segSize) {
    const last = listing.segments.at(-1);
    for (const s of listing.segments) {
      if (last && s.segno === last.segno) {
        const c = { segno: s.segno, timeline: s.timeline, partial: false };
        if (better(c)) local = c;
      }
    }
    if (listing.receiving) {
      const c = { segno: listing.receiving.segno, timeline: listing.receiving.timeline, partial: true };
      if (better(c)) local = c;
    }
  }
  if (local) {
    const startLsn = walSegmentStart(local.partial ? local.segno : local.segno + 1n, segSize);
    let timeline = local.timeline;
    const onServerLineage = isInLineage(serverEntries, ident.timeline, timeline);
    const sw = switchPointOf(serverEntries, timeline);
    if (!onServerLineage || (sw !== undefined && startLsn > sw)) timeline = timelineOfLsn(serverEntries, ident.timeline, startLsn);
    return { startLsn, timeline };
  }
  if (slot?.restartLsn) {
    return { startLsn: slot.restartLsn, timeline: slot.restartTimeline ?? timelineOfLsn(serverEntries, ident.timeline, slot.restartLsn) };
  }
  return { startLsn: ident.xlogPos, timeline: ident.timeline };
}

/** One receiver per archive of a system: a pid file in .receive/ (a dead owner's is taken over). */
async function lockReceiveDir(rdir: string): Promise<() => Promise<void>> {
  const path = join(rdir, 'lock');
  return acquireStoredPidLock(path, {
    busy: (pid) =>
      new PgbaculaError('PREREQUISITE', `another wal-receive (process ${pid}) already archives into ${rdir}`, {
        hint: 'Run one receiver per cluster and archive; stop the other one first.',
      }),
    cannotCreate: (cause) => new PgbaculaError('IO', `cannot create ${path}: ${cause.message}`, { hint: 'The archive must be writable by the OS user that runs wal-receive.' }),
  });
}
