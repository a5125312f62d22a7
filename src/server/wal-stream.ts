/**
 * Physical WAL streaming written to segment files the way pg_receivewal does.
 *
 * - The stream always starts at a segment boundary (startLsn is rounded down), so every file we
 *   write starts at its first byte.
 * - The segment being written is `<name>.partial`, created at the full segment size with
 *   ftruncate — it reads exactly like pg_receivewal's zero-filled file (zeros after the last
 *   byte received, which recovery reads as the end of WAL) without writing the zeros; the
 *   blocks are not reserved on disk, so a full disk shows up as a write error, not at creation.
 * - A segment is complete when its last byte is written: it is fsynced, renamed to its final
 *   name, the directory fsynced, and `onSegment` awaited. A segment closed early (stop LSN,
 *   signal, end of timeline, error) keeps its `.partial` name: it is never passed off as complete.
 * - The flush position we report is what is fsynced (the slot's restart_lsn follows it:
 *   reporting more than is durable would let the server remove WAL we do not hold); we fsync the open `.partial` each status interval, on a keepalive that asks for
 *   a reply, and before stopping. It is reported with or without a slot (pg_receivewal reports
 *   0 without one; a true flush position is harmless and lets a fast shutdown of the server
 *   finish at once).
 * - Backpressure: each CopyData message is read from the socket only when the previous one is
 *   written (and `onSegment` has returned); pg-copy-streams stops reading the socket when our
 *   small read buffer is full, so a slow disk or consumer makes the server wait instead of
 *   filling our memory. Status updates keep going on a timer meanwhile, so the server's
 *   wal_sender_timeout does not fire while we are busy.
 * - Every page header received is checked (magic of the major, page address, timeline, and
 *   on the first page of each segment the system identifier and segment size); the all-zero
 *   pages after a WAL switch (11+) are accepted, but nothing non-zero after them.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex, DuplexOptions } from 'node:stream';
import type pg from 'pg';
import pgCopyStreams from 'pg-copy-streams';
import { PgbaculaError } from '../errors.js';
import { fsyncPath, writeFileAtomic } from '../os/durable.js';
import { exists } from '../os/exists.js';
import { ioError } from '../os/io-error.js';
import { NewFile } from '../os/new-file.js';
import { makeDirs } from '../os/user-dirs.js';
import { moveFile, removeFile } from '../os/user-files.js';
import type { ConnectionSettings } from '../config/connection.js';
import { DEFAULT_WAL_BLOCK_SIZE, formatLsn, maxLsn, tryParseLsn, type Lsn } from '../wal/lsn.js';
import { isZeroPageHeader, LONG_PAGE_HEADER_SIZE, SHORT_PAGE_HEADER_SIZE, walPageHeaderProblems } from '../wal/page-header.js';
import {
  assertTimeline,
  assertWalSegmentSize,
  timelineHistoryFileName,
  walSegmentEnd,
  walSegmentName,
  walSegmentNumber,
  walSegmentStart,
} from '../wal/segment.js';
import { parseTimelineHistory } from '../wal/timeline-history.js';
import {
  assertSlotName,
  destroyClient,
  isConnectionLoss,
  ReplicationConnection,
  replicationError,
  startReplicationCommand,
} from './replication.js';
import { versionFacts, type Major } from '../pg/versions.js';

// ---------------------------------------------------------------------------------------------
// CopyData payloads (big-endian: XLogData `w`, keepalive `k`, standby status `r`) — pure
// ---------------------------------------------------------------------------------------------

/** Microseconds between the Unix epoch and the PostgreSQL epoch (2000-01-01 00:00:00 UTC). */
export const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

export type ServerCopyMessage =
  | { readonly type: 'xlogdata'; readonly dataStart: Lsn; readonly walEnd: Lsn; readonly sendTime: bigint; readonly data: Buffer }
  | { readonly type: 'keepalive'; readonly walEnd: Lsn; readonly sendTime: bigint; readonly replyRequested: boolean };

/** Decode one CopyData payload sent by a physical walsender. */
export function parseServerCopyMessage(payload: Buffer): ServerCopyMessage {
  const kind = payload.length > 0 ? String.fromCharCode(payload[0]!) : '';
  if (kind === 'w' && payload.length >= 25) {
    return {
      type: 'xlogdata',
      dataStart: payload.readBigUInt64BE(1),
      walEnd: payload.readBigUInt64BE(9),
      sendTime: payload.readBigInt64BE(17),
      data: payload.subarray(25),
    };
  }
  if (kind === 'k' && payload.length >= 18) {
    return { type: 'keepalive', walEnd: payload.readBigUInt64BE(1), sendTime: payload.readBigInt64BE(9), replyRequested: payload[17] !== 0 };
  }
  throw new PgbaculaError('PROTOCOL', `unexpected replication message "${kind}" of ${payload.length} bytes in the WAL stream`, {
    hint: 'The server sent something a physical WAL receiver does not expect; check the server version and log.',
  });
}

/** Now as a protocol timestamp: signed microseconds since 2000-01-01 UTC. */
export function pgTimestampNow(nowMs: number = Date.now()): bigint {
  return BigInt(nowMs) * 1000n - PG_EPOCH_OFFSET_US;
}

export interface StandbyStatus {
  /** Last byte + 1 received and written. */
  readonly write: Lsn;
  /** Last byte + 1 durably stored (fsynced); 0 = unknown. */
  readonly flush: Lsn;
  /** Last byte + 1 applied: always 0 for a receiver that does not replay. */
  readonly apply: Lsn;
  readonly clock: bigint;
  readonly replyRequested: boolean;
}

/** The 34-byte standby status update (`r`). */
export function encodeStandbyStatus(s: StandbyStatus): Buffer {
  const b = Buffer.alloc(34);
  b.write('r', 0, 'latin1');
  b.writeBigUInt64BE(s.write, 1);
  b.writeBigUInt64BE(s.flush, 9);
  b.writeBigUInt64BE(s.apply, 17);
  b.writeBigInt64BE(s.clock, 25);
  b.writeUInt8(s.replyRequested ? 1 : 0, 33);
  return b;
}

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

export interface CompletedSegment {
  /** Final file name, e.g. `000000010000000000000019`. */
  readonly name: string;
  readonly path: string;
  readonly timeline: number;
  readonly segno: bigint;
  readonly startLsn: Lsn;
  /** First byte after the segment. */
  readonly endLsn: Lsn;
}

export interface StreamWalOptions {
  /** Where to connect, or an open walsender session (kept open; e.g. one owning a TEMPORARY slot). */
  readonly connection: ConnectionSettings | ReplicationConnection;
  /** Rounded down to its segment start. */
  readonly startLsn: Lsn;
  readonly timeline: number;
  /** Physical slot to stream from: the flush we report advances its restart_lsn. */
  readonly slot?: string;
  readonly targetDir: string;
  /** Stop once everything up to here is written and fsynced (the last segment stays `.partial`). */
  readonly stopAtLsn?: Lsn;
  /** How often to send a status update (and fsync the open `.partial`); default 10 s. */
  readonly statusIntervalMs?: number;
  /** Abort = stop cleanly (like reaching stopAtLsn); the promise resolves with stoppedBy 'signal'. */
  readonly signal?: AbortSignal;
  /** Awaited for each completed segment, after it is durable under its final name. */
  readonly onSegment?: (segment: CompletedSegment) => void | Promise<void>;
  /** Fetch `<TLI>.history` into targetDir first when timeline > 1 and it is missing (default true). */
  readonly fetchHistory?: boolean;
  readonly applicationName?: string;
  /** How long to wait for the server to end the COPY after our CopyDone (default 30 s). */
  readonly closeTimeoutMs?: number;
  /**
   * Synchronous receiver (pg_receivewal --synchronous): fsync and report the flush position as
   * soon as the received WAL is written (batched while more messages are already buffered), so
   * a server listing our application_name in synchronous_standby_names can commit at once.
   */
  readonly synchronous?: boolean;
  /**
   * Reconnect when the connection is lost (or the server ends the stream before stopAtLsn):
   * a walsender opened around a promotion is ended by the server, and a backup must not fail for
   * that. The stream resumes at the start of the segment it was writing (rewritten from its
   * first byte); completed segments are kept. Default: on, with `connection` when it is
   * settings; with a given session, only when its settings are passed here. `false` = never
   * (wal-receive reconnects by itself, with its own backoff and log).
   */
  readonly reconnect?: ConnectionSettings | false;
  /**
   * The slot is TEMPORARY (dies with the session that made it): after a reconnect a new
   * temporary slot is made on the new session so the server keeps WAL from there on.
   */
  readonly temporarySlot?: boolean;
}

/** How often, and how far apart, streamWal reconnects before giving up. */
const RECONNECT_ATTEMPTS = 6;
const RECONNECT_FIRST_DELAY_MS = 250;
const RECONNECT_MAX_DELAY_MS = 4_000;

export interface StreamWalResult {
  readonly stoppedBy: 'stop-lsn' | 'signal' | 'end-of-timeline' | 'server-ended';
  /** Where streaming started (startLsn rounded down to its segment). */
  readonly startLsn: Lsn;
  /** Last byte + 1 written to files. */
  readonly lastWrittenLsn: Lsn;
  /** Last byte + 1 fsynced (equal to lastWrittenLsn after a clean stop). */
  readonly lastFlushedLsn: Lsn;
  /** Completed segments written by this call, in order. */
  readonly segments: string[];
  /** The `.partial` file left behind (file name with suffix), if any. */
  readonly partial?: string;
  /** Set when the server ended a historic timeline (stoppedBy 'end-of-timeline'). */
  readonly endOfTimeline?: { readonly nextTimeline: number; readonly switchLsn: Lsn };
  /** Highest WAL end the server reported. */
  readonly serverWalEnd: Lsn;
  readonly systemId: string;
  readonly segmentSize: number;
  readonly major: Major;
}

/**
 * Fetch the history file of `timeline` into dir (via a `.tmp` name, fsynced) unless it is there.
 * Returns the file name.
 */
export async function storeTimelineHistory(conn: ReplicationConnection, timeline: number, dir: string): Promise<string> {
  const name = timelineHistoryFileName(timeline);
  const path = join(dir, name);
  if (await exists(path, walDirError)) return name;
  const h = await conn.timelineHistory(timeline);
  if (h.fileName !== name) {
    throw new PgbaculaError('PROTOCOL', `TIMELINE_HISTORY ${timeline} on ${conn.endpoint} returned file "${h.fileName}", expected "${name}"`);
  }
  parseTimelineHistory(h.content, timeline); // refuse to store garbage
  try {
    await writeFileAtomic(path, h.content, 0o600);
  } catch (e) {
    throw walDirError(e, `cannot store ${name} in ${dir}`);
  }
  return name;
}

/**
 * Stream WAL into targetDir until stopAtLsn, the signal, or the end of the timeline; reconnecting
 * after a lost connection (see `reconnect`).
 */
export async function streamWal(o: StreamWalOptions): Promise<StreamWalResult> {
  assertTimeline(o.timeline);
  if (o.slot !== undefined) assertSlotName(o.slot);
  const statusIntervalMs = o.statusIntervalMs ?? 10_000;
  if (!(statusIntervalMs > 0)) throw new PgbaculaError('PARAM_INVALID', `invalid status interval ${statusIntervalMs} ms`, { hint: 'Use a positive number of milliseconds, well below wal_sender_timeout.' });
  const given = o.connection instanceof ReplicationConnection ? o.connection : undefined;
  const settings = o.reconnect === false ? undefined : (o.reconnect ?? (given ? undefined : (o.connection as ConnectionSettings)));
  const completed: string[] = [];
  let startLsn = o.startLsn;
  let slot = o.slot;
  let delay = RECONNECT_FIRST_DELAY_MS;
  let firstLoss: PgbaculaError | undefined;
  for (let attempt = 0; ; attempt++) {
    const progress: AttemptProgress = { resumeLsn: undefined, segments: [] };
    try {
      const r = await streamOnce(o, attempt === 0 ? given : undefined, settings, { startLsn, slot, statusIntervalMs, newTemporarySlot: attempt > 0 && o.temporarySlot === true }, progress);
      const reachedStop = o.stopAtLsn === undefined || r.lastWrittenLsn >= o.stopAtLsn;
      if (r.stoppedBy === 'server-ended' && !reachedStop && settings && attempt < RECONNECT_ATTEMPTS && !o.signal?.aborted) {
        // Ended by the server before the point we were asked to reach: the walsender of a
        // promotion's moment does this; a reconnect continues.
        completed.push(...r.segments);
        startLsn = r.lastWrittenLsn;
      } else {
        return completed.length === 0 ? r : { ...r, startLsn: walSegmentStart(walSegmentNumber(o.startLsn, r.segmentSize), r.segmentSize), segments: [...completed, ...r.segments] };
      }
    } catch (e) {
      const lost = e instanceof PgbaculaError && e.code === 'CONNECTION';
      if (!lost || !settings || attempt >= RECONNECT_ATTEMPTS || o.signal?.aborted) {
        // Say why the stream was lost, not only why the last reconnect failed.
        if (lost && firstLoss && firstLoss !== e) {
          throw new PgbaculaError('CONNECTION', `${firstLoss.message}; ${attempt} reconnect attempt(s) failed, the last: ${(e as Error).message}`, { hint: (e as PgbaculaError).hint, cause: e });
        }
        throw e;
      }
      firstLoss ??= e as PgbaculaError;
      completed.push(...progress.segments);
      if (progress.resumeLsn !== undefined) startLsn = progress.resumeLsn;
    }
    if (o.temporarySlot && o.slot !== undefined) slot = `${o.slot.slice(0, 40)}_r${attempt + 1}_${Date.now().toString(36)}`;
    await sleepUnlessAborted(delay, o.signal);
    delay = Math.min(RECONNECT_MAX_DELAY_MS, delay * 2);
  }
}

interface AttemptProgress {
  /** Where the next attempt starts: the first byte of the segment this one was writing. */
  resumeLsn: Lsn | undefined;
  /** Segments this attempt completed (durable under their final names). */
  segments: string[];
}

function sleepUnlessAborted(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

async function streamOnce(
  o: StreamWalOptions,
  given: ReplicationConnection | undefined,
  settings: ConnectionSettings | undefined,
  at: { startLsn: Lsn; slot: string | undefined; statusIntervalMs: number; newTemporarySlot: boolean },
  progress: AttemptProgress,
): Promise<StreamWalResult> {
  const conn = given ?? (await ReplicationConnection.open(settings ?? (o.connection as ConnectionSettings), { applicationName: o.applicationName ?? 'pgbacula wal stream' }));
  const owned = given === undefined;
  let ok = false;
  try {
    const major = await conn.major();
    const segmentSize = await conn.walSegmentSize();
    assertWalSegmentSize(segmentSize);
    const ident = await conn.identifySystem();
    try {
      await makeDirs(o.targetDir, 0o700);
    } catch (e) {
      throw walDirError(e, `cannot create the WAL directory ${o.targetDir}`);
    }
    if (o.timeline > 1 && (o.fetchHistory ?? true)) await storeTimelineHistory(conn, o.timeline, o.targetDir);
    if (at.newTemporarySlot && at.slot !== undefined) await conn.createPhysicalSlot(at.slot, { temporary: true, reserveWal: true });
    const session = new CopySession(conn, { ...o, startLsn: at.startLsn, ...(at.slot === undefined ? {} : { slot: at.slot }) }, { major, segmentSize, systemId: ident.systemId, statusIntervalMs: at.statusIntervalMs }, progress);
    const result = await session.run();
    ok = true;
    return result;
  } finally {
    if (owned) {
      if (ok) await conn.close();
      else destroyClient(conn.client);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

/** pg-copy-streams' CopyBoth stream and the pg.Client hooks we add to it. */
interface CopyBothStream extends Duplex {
  handleReadyForQuery(): void;
  handleRowDescription?: (msg: { fields: { name: string }[] }) => void;
  handleDataRow?: (msg: { fields: (string | null)[] }) => void;
  cb_flush?: () => void;
  connection: unknown;
}

const both = (pgCopyStreams as unknown as {
  both: (text: string, options?: DuplexOptions & { alignOnCopyDataFrame?: boolean }) => CopyBothStream;
}).both;

interface OpenSegment {
  readonly segno: bigint;
  readonly name: string;
  readonly path: string;
  readonly partialPath: string;
  readonly fh: NewFile;
}

class CopySession {
  private readonly segSize: number;
  private readonly segSizeBig: bigint;
  private readonly start: Lsn;
  private readonly closeTimeoutMs: number;
  private stream: CopyBothStream | undefined;
  private timer: NodeJS.Timeout | undefined;

  // Positions
  private expected: Lsn; // next byte the server must send
  private written: Lsn = 0n; // reported as write (0 until data arrives)
  private flushed: Lsn = 0n; // reported as flush (0 until something is fsynced)
  private serverWalEnd: Lsn = 0n;
  private zeroTailSegment: bigint | undefined; // segment whose switched, all-zero tail has begun

  // Files
  private current: OpenSegment | undefined;
  private readonly segments: string[] = [];
  private partial: string | undefined;

  // Events from the stream, the timer and the signal
  private wakeResolve: (() => void) | undefined;
  private wakePending = false;
  private serverEnded = false;
  private finished = false;
  private streamError: unknown;
  private fsyncWanted = false;
  private resultRow: { fields: string[]; values: (string | null)[] } | undefined;
  private resultFields: string[] = [];

  constructor(
    private readonly conn: ReplicationConnection,
    private readonly o: StreamWalOptions,
    private readonly facts: { major: Major; segmentSize: number; systemId: string; statusIntervalMs: number },
    private readonly progress: AttemptProgress = { resumeLsn: undefined, segments: [] },
  ) {
    this.segSize = facts.segmentSize;
    this.segSizeBig = BigInt(facts.segmentSize);
    this.start = walSegmentStart(walSegmentNumber(o.startLsn, this.segSize), this.segSize);
    this.expected = this.start;
    progress.resumeLsn = this.start;
    this.closeTimeoutMs = o.closeTimeoutMs ?? 30_000;
  }

  private wake = (): void => {
    const r = this.wakeResolve;
    this.wakeResolve = undefined;
    if (r) r();
    else this.wakePending = true;
  };

  private waitForWake(timeoutMs?: number): Promise<void> {
    if (this.wakePending) {
      this.wakePending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let t: NodeJS.Timeout | undefined;
      this.wakeResolve = () => {
        if (t) clearTimeout(t);
        resolve();
      };
      if (timeoutMs !== undefined) {
        t = setTimeout(() => {
          this.wakeResolve = undefined;
          resolve();
        }, timeoutMs);
      }
    });
  }

  private result(stoppedBy: StreamWalResult['stoppedBy'], endOfTimeline?: StreamWalResult['endOfTimeline']): StreamWalResult {
    return {
      stoppedBy,
      startLsn: this.start,
      lastWrittenLsn: this.written === 0n ? this.start : this.written,
      lastFlushedLsn: this.flushed === 0n ? this.start : this.flushed,
      segments: [...this.segments],
      ...(this.partial === undefined ? {} : { partial: this.partial }),
      ...(endOfTimeline === undefined ? {} : { endOfTimeline }),
      serverWalEnd: this.serverWalEnd,
      systemId: this.facts.systemId,
      segmentSize: this.segSize,
      major: this.facts.major,
    };
  }

  async run(): Promise<StreamWalResult> {
    const { o } = this;
    if (o.stopAtLsn !== undefined && o.stopAtLsn <= this.start) return this.result('stop-lsn');
    if (o.signal?.aborted) return this.result('signal');

    const cmd = startReplicationCommand(this.start, o.timeline, o.slot);
    // One CopyData message per chunk (alignOnCopyDataFrame), one chunk per read() (object mode),
    // and at most a few of them buffered before pg-copy-streams stops reading the socket.
    const stream = both(cmd, { alignOnCopyDataFrame: true, readableObjectMode: true, readableHighWaterMark: 4 });
    this.stream = stream;
    this.hookResultSet(stream);
    stream.on('readable', this.wake);
    stream.on('end', () => {
      this.serverEnded = true;
      this.wake();
    });
    stream.on('finish', () => {
      this.finished = true;
      this.wake();
    });
    stream.on('error', (e: unknown) => {
      this.streamError ??= e;
      this.wake();
    });
    const onAbort = (): void => this.wake();
    o.signal?.addEventListener('abort', onAbort);
    this.timer = setInterval(() => {
      // Liveness even while the main loop is busy writing or waiting for onSegment.
      this.sendStatusSoon();
      this.fsyncWanted = true;
      this.wake();
    }, this.facts.statusIntervalMs);

    this.conn.client.query(stream as unknown as pg.Submittable);
    try {
      return await this.loop(cmd);
    } catch (e) {
      await this.closeSegmentAsPartial().catch(() => undefined);
      this.stopTimer();
      if (!this.serverEnded && !this.streamError) await this.endCopy(Math.min(this.closeTimeoutMs, 10_000)).catch(() => destroyClient(this.conn.client));
      throw e;
    } finally {
      this.stopTimer();
      o.signal?.removeEventListener('abort', onAbort);
      stream.removeListener('readable', this.wake);
    }
  }

  /** The server's CopyDone arrived (the readable side was ended), even if 'end' is not emitted yet. */
  private copyEndedByServer(stream: CopyBothStream): boolean {
    return (stream as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true && stream.readableLength === 0;
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * pg-copy-streams hands the connection back to pg at the server's CopyDone; what follows
   * (the next-timeline result set at the end of a historic timeline, CommandComplete,
   * ReadyForQuery) reaches these hooks.
   */
  private hookResultSet(stream: CopyBothStream): void {
    stream.handleRowDescription = (msg) => {
      this.resultFields = msg.fields.map((f) => f.name);
    };
    stream.handleDataRow = (msg) => {
      this.resultRow = { fields: this.resultFields, values: msg.fields };
    };
    const original = stream.handleReadyForQuery.bind(stream);
    stream.handleReadyForQuery = () => {
      // pg-copy-streams expects its own CopyDone (_final) to have been sent first; if the
      // server ever completes without it, do not crash inside pg's parser.
      if (typeof stream.cb_flush === 'function') original();
      else {
        stream.connection = null;
        this.finished = true;
        this.wake();
      }
    };
  }

  private async loop(cmd: string): Promise<StreamWalResult> {
    const { o } = this;
    const stream = this.stream!;
    for (;;) {
      if (this.streamError !== undefined) {
        // A server that shuts down sends its last WAL and CopyDone, then closes the socket: the
        // close can be seen before we have read what is buffered. Write that WAL first; if the
        // server had ended the COPY, it is an end, not a failure.
        if (!isConnectionLoss(this.streamError) || stream.readableLength === 0) {
          if (this.serverEnded || this.copyEndedByServer(stream)) return this.serverEndedCopy(cmd);
          throw this.mapStreamError(cmd);
        }
      } else if (o.signal?.aborted) return this.stopCleanly('signal', cmd);
      if (this.fsyncWanted) {
        this.fsyncWanted = false;
        if (await this.syncCurrent()) this.sendStatusSoon();
      }
      const payload = stream.read() as Buffer | null;
      if (payload === null) {
        if (this.serverEnded) return this.serverEndedCopy(cmd);
        await this.waitForWake();
        continue;
      }
      const msg = parseServerCopyMessage(payload);
      if (msg.type === 'keepalive') {
        this.serverWalEnd = maxLsn(this.serverWalEnd, msg.walEnd);
        if (msg.replyRequested) {
          // The server waits for our flush to catch up before a fast shutdown: fsync first.
          await this.syncCurrent();
          this.sendStatusSoon();
        }
        continue;
      }
      if (msg.dataStart !== this.expected) {
        throw new PgbaculaError('PROTOCOL', `${this.conn.endpoint} sent WAL at ${formatLsn(msg.dataStart)}, expected ${formatLsn(this.expected)}`, {
          hint: 'The WAL stream has a gap or an overlap; restart streaming from the last complete segment.',
        });
      }
      this.serverWalEnd = maxLsn(this.serverWalEnd, msg.walEnd);
      await this.writeWal(msg.dataStart, msg.data);
      if (o.stopAtLsn !== undefined && this.written >= o.stopAtLsn) return this.stopCleanly('stop-lsn', cmd);
      if (o.synchronous && stream.readableLength === 0 && (await this.syncCurrent())) this.sendStatusSoon();
    }
  }

  /**
   * A status update written once the event loop has read what the socket holds. A server that
   * shuts down sends its last messages and closes its socket at once; a write of ours that came
   * first would fail (EPIPE on a Unix socket) and tear the connection down before those messages
   * were read — an orderly end would look like a lost connection.
   */
  private sendStatusSoon(): void {
    setImmediate(() => this.sendStatus(false));
  }

  private sendStatus(replyRequested: boolean): void {
    const stream = this.stream;
    // After an error the connection has left COPY mode: a CopyData would be a protocol violation.
    if (!stream || stream.destroyed || stream.writableEnded || this.streamError !== undefined || this.serverEnded || this.copyEndedByServer(stream)) return;
    stream.write(encodeStandbyStatus({ write: this.written, flush: this.flushed, apply: 0n, clock: pgTimestampNow(), replyRequested }));
  }

  // --- ending -------------------------------------------------------------------------------

  /** We stop: the open segment stays `.partial` (fsynced), report the flush, CopyDone, drain. */
  private async stopCleanly(stoppedBy: 'stop-lsn' | 'signal', cmd: string): Promise<StreamWalResult> {
    await this.closeSegmentAsPartial();
    this.sendStatus(false);
    this.stopTimer();
    await this.endCopy(this.closeTimeoutMs);
    if (this.streamError !== undefined && !isConnectionLoss(this.streamError)) throw this.mapStreamError(cmd);
    return this.result(stoppedBy);
  }

  /** Send CopyDone; discard what the server still sends until it ends the COPY and is ready. */
  private async endCopy(timeoutMs: number): Promise<void> {
    const stream = this.stream!;
    if (!stream.writableEnded && !stream.destroyed) stream.end();
    const deadline = Date.now() + timeoutMs;
    while (!(this.serverEnded && this.finished)) {
      if (this.streamError !== undefined) return; // the caller decides what it means
      while (stream.read() !== null) {
        // WAL after our CopyDone is not written (pg_receivewal ignores it too)
      }
      if (this.serverEnded && this.finished) break;
      const left = deadline - Date.now();
      if (left <= 0) {
        destroyClient(this.conn.client);
        throw new PgbaculaError('PROTOCOL', `${this.conn.endpoint} did not end the WAL stream within ${Math.round(timeoutMs / 1000)} s of our CopyDone`, {
          hint: 'Files written so far are durable; the connection was dropped. Check the server log.',
        });
      }
      await this.waitForWake(left);
    }
  }

  /** The server ended the COPY: end of a historic timeline (row with the next one) or shutdown. */
  private async serverEndedCopy(cmd: string): Promise<StreamWalResult> {
    await this.closeSegmentAsPartial();
    this.stopTimer();
    try {
      await this.endCopy(this.closeTimeoutMs);
    } catch (e) {
      if (!(e instanceof PgbaculaError)) throw e;
    }
    if (this.streamError !== undefined && !isConnectionLoss(this.streamError)) throw this.mapStreamError(cmd);
    const row = this.resultRow;
    if (row) {
      const get = (name: string): string | null => row.values[row.fields.indexOf(name)] ?? null;
      const nextTimeline = Number(get('next_tli'));
      const switchLsn = tryParseLsn(get('next_tli_startpos') ?? '');
      if (!Number.isInteger(nextTimeline) || nextTimeline < 1 || switchLsn === undefined) {
        throw new PgbaculaError('PROTOCOL', `${this.conn.endpoint} ended timeline ${this.o.timeline} with an unreadable next-timeline row`);
      }
      return this.result('end-of-timeline', { nextTimeline, switchLsn });
    }
    return this.result('server-ended');
  }

  private mapStreamError(cmd: string): PgbaculaError {
    const e = this.streamError;
    if (e instanceof PgbaculaError) return e;
    const at = this.written === 0n ? '' : ` after receiving WAL up to ${formatLsn(this.written)}`;
    const mapped = replicationError(e, cmd, this.conn.endpoint);
    return new PgbaculaError(mapped.code, `${mapped.message}${at}`, { hint: mapped.hint, cause: e });
  }

  // --- files --------------------------------------------------------------------------------

  private async writeWal(startLsn: Lsn, data: Buffer): Promise<void> {
    let lsn = startLsn;
    let off = 0;
    while (off < data.length) {
      const segno = lsn / this.segSizeBig;
      const segOff = Number(lsn % this.segSizeBig);
      if (!this.current || this.current.segno !== segno) {
        if (this.current || segOff !== 0) {
          throw new PgbaculaError('INTERNAL', `WAL at ${formatLsn(lsn)} does not continue segment ${this.current?.name ?? '(none)'}`);
        }
        await this.openSegment(segno);
      }
      const cur = this.current!;
      const n = Math.min(data.length - off, this.segSize - segOff);
      this.checkPageHeaders(data, off, n, lsn);
      try {
        await cur.fh.writeAt(data, off, n, segOff);
      } catch (e) {
        throw walDirError(e, `cannot write ${cur.partialPath}`);
      }
      off += n;
      lsn += BigInt(n);
      this.written = lsn;
      this.expected = lsn;
      if (segOff + n === this.segSize) await this.completeSegment();
    }
  }

  /** Validate each page header that starts inside data[off, off+n) (it starts at lsn). */
  private checkPageHeaders(data: Buffer, off: number, n: number, lsn: Lsn): void {
    const bs = BigInt(DEFAULT_WAL_BLOCK_SIZE);
    let page = ((lsn + bs - 1n) / bs) * bs;
    const end = lsn + BigInt(n);
    for (; page < end; page += bs) {
      const at = off + Number(page - lsn);
      const first = page % this.segSizeBig === 0n;
      // The server flushes whole records, so a header is never cut between two messages;
      // should one be, it is skipped rather than guessed at.
      if (data.length - at < (first ? LONG_PAGE_HEADER_SIZE : SHORT_PAGE_HEADER_SIZE)) continue;
      const segno = page / this.segSizeBig;
      // The rest of a segment after a WAL switch is zeros, headers included (11+). PostgreSQL 10
      // writes headers there, and a 10 standby's copy of the segment that ended its base backup
      // has zeros where the primary's has headers — so on 10 zeros are skipped, not a boundary.
      if (!first && isZeroPageHeader(data, at)) {
        if (versionFacts(this.facts.major).switchZeroesSegmentTail) this.zeroTailSegment = segno;
        continue;
      }
      if (this.zeroTailSegment === segno) {
        throw new PgbaculaError('PROTOCOL', `WAL streamed from ${this.conn.endpoint} failed validation: the WAL page at ${formatLsn(page)} follows zeroed pages of its segment but is not zero`, {
          hint: 'The server sent damaged WAL; check the server log and its storage.',
        });
      }
      const problems = walPageHeaderProblems(data, at, {
        pageAddr: page,
        major: this.facts.major,
        maxTimeline: this.o.timeline,
        firstPageOfSegment: first,
        ...(first ? { systemId: this.facts.systemId, segmentSize: this.segSize } : {}),
      });
      if (problems.length > 0) {
        throw new PgbaculaError('PROTOCOL', `WAL streamed from ${this.conn.endpoint} failed validation: ${problems.join('; ')}`, {
          hint: 'The server sent WAL of another system, version or segment size, or damaged WAL; check which server pgbacula connects to.',
        });
      }
    }
  }

  private async openSegment(segno: bigint): Promise<void> {
    const name = walSegmentName(this.o.timeline, segno, this.segSize);
    const path = join(this.o.targetDir, name);
    const partialPath = `${path}.partial`;
    let fh: NewFile | undefined;
    try {
      // 'w' truncates a leftover .partial of an earlier run: we rewrite the segment from its start.
      fh = await NewFile.create(partialPath, 0o600);
      await fh.truncate(this.segSize);
      await fsyncPath(this.o.targetDir);
    } catch (e) {
      await fh?.close().catch(() => undefined);
      throw walDirError(e, `cannot create ${partialPath}`);
    }
    this.current = { segno, name, path, partialPath, fh };
    this.partial = `${name}.partial`;
  }

  /** fsync the open `.partial` if it has unsynced bytes; true when the flush position moved. */
  private async syncCurrent(): Promise<boolean> {
    if (this.written <= this.flushed) return false;
    const cur = this.current;
    if (cur) {
      try {
        await cur.fh.sync();
      } catch (e) {
        throw walDirError(e, `cannot fsync ${cur.partialPath}`);
      }
    }
    this.flushed = this.written;
    return true;
  }

  private async completeSegment(): Promise<void> {
    const cur = this.current!;
    this.current = undefined;
    this.partial = undefined;
    try {
      await cur.fh.sync();
      await cur.fh.close();
    } catch (e) {
      throw walDirError(e, `cannot fsync ${cur.partialPath}`);
    }
    if (await exists(cur.path, walDirError)) {
      // Restarted on a segment completed before: it must be the same WAL.
      const [a, b] = await Promise.all([readFile(cur.path), readFile(cur.partialPath)]);
      if (!a.equals(b)) {
        this.partial = `${cur.name}.partial`;
        throw new PgbaculaError('WAL_CONFLICT', `${cur.path} already exists with different content than the WAL streamed from ${this.conn.endpoint}`, {
          hint: `The directory holds WAL of another server or history; the new copy was kept as ${cur.partialPath}. Use an empty directory per server and timeline.`,
        });
      }
      await removeFile(cur.partialPath);
    } else {
      try {
        await moveFile(cur.partialPath, cur.path);
      } catch (e) {
        throw walDirError(e, `cannot rename ${cur.partialPath} to ${cur.name}`);
      }
    }
    await fsyncPath(this.o.targetDir);
    const endLsn = walSegmentEnd(cur.segno, this.segSize);
    this.flushed = maxLsn(this.flushed, endLsn);
    this.segments.push(cur.name);
    this.progress.segments.push(cur.name);
    this.progress.resumeLsn = endLsn;
    this.sendStatus(false);
    await this.o.onSegment?.({
      name: cur.name,
      path: cur.path,
      timeline: this.o.timeline,
      segno: cur.segno,
      startLsn: walSegmentStart(cur.segno, this.segSize),
      endLsn,
    });
  }

  /** fsync and close the open segment under its `.partial` name (it is not complete). */
  private async closeSegmentAsPartial(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = undefined;
    try {
      await cur.fh.sync();
      this.flushed = maxLsn(this.flushed, this.written);
    } finally {
      await cur.fh.close().catch(() => undefined);
    }
  }
}

/** A failure in the WAL directory, with the place's hint. */
function walDirError(e: unknown, what: string): PgbaculaError {
  return ioError(e, what, 'Check free space and permissions of the WAL directory.');
}
