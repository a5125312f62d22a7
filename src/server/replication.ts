/**
 * A small replication-protocol client on a physical walsender connection:
 * IDENTIFY_SYSTEM, SHOW, TIMELINE_HISTORY, CREATE/DROP/READ_REPLICATION_SLOT.
 *
 * Replies are read as raw bytes from the connection (RawReplicationQuery), not through
 * node-postgres' row parser: TIMELINE_HISTORY's `content` must be stored byte for byte (its
 * column is declared bytea ≤ 13 but sent raw — never hex-decode it), and the
 * declared type oids are kept so per-version quirks stay visible (IDENTIFY_SYSTEM's timeline
 * is int4 ≤ 15, int8 16+; it is parsed from its text either way).
 */
import type pg from 'pg';
import { PgbaculaError, type ErrorCode } from '../errors.js';
import { describeEndpoint, type ConnectionSettings } from '../config/connection.js';
import { scrub } from '../config/redact.js';
import { formatLsn, parseLsn, tryParseLsn, type Lsn } from '../wal/lsn.js';
import { isValidWalSegmentSize } from '../wal/segment.js';
import { openSession } from './session.js';
import { isSupportedMajor, majorOf, SUPPORTED_RANGE, versionFacts, type Major } from '../pg/versions.js';

// ---------------------------------------------------------------------------------------------
// Raw simple-query execution
// ---------------------------------------------------------------------------------------------

export interface ReplicationField {
  readonly name: string;
  readonly typeOid: number;
}

export interface RawResult {
  readonly fields: ReplicationField[];
  /** Column values as the server sent them (text format); null = SQL NULL. */
  readonly rows: (Buffer | null)[][];
  readonly commandTags: string[];
}

/** The internals of a node-postgres Connection this module relies on (pg 8). */
interface PgConnectionInternals {
  readonly stream: NodeJS.ReadWriteStream & { listeners(event: 'data'): ((chunk: Buffer) => void)[] };
  query(text: string): void;
}

/** Internal handle of a pg.Client (typed as public in @types/pg only partially). */
export function connectionOf(client: pg.Client): PgConnectionInternals {
  return (client as unknown as { connection: PgConnectionInternals }).connection;
}

/**
 * A node-postgres Submittable that sends one simple Query and reads the reply straight off the
 * socket (the way pg-copy-streams does): it takes over the connection's single 'data' listener,
 * decodes RowDescription / DataRow / CommandComplete itself, and hands the connection back at
 * ReadyForQuery or ErrorResponse, whose handling (error mapping, queue pulse) stays pg's.
 */
class RawReplicationQuery {
  readonly text: string;
  readonly result: Promise<RawResult>;
  private resolve!: (r: RawResult) => void;
  private reject!: (e: unknown) => void;
  private connection: PgConnectionInternals | undefined;
  private pgDataHandler: ((chunk: Buffer) => void) | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private readonly fields: ReplicationField[] = [];
  private readonly rows: (Buffer | null)[][] = [];
  private readonly commandTags: string[] = [];
  private protocolError: Error | undefined;
  private settled = false;
  private readonly onData = (chunk: Buffer): void => this.parse(chunk);

  constructor(text: string) {
    this.text = text;
    this.result = new Promise<RawResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  submit(connection: PgConnectionInternals): void {
    this.connection = connection;
    const handlers = connection.stream.listeners('data');
    if (handlers.length !== 1) {
      this.fail(new Error(`expected one data listener on the connection, found ${handlers.length}`));
      return;
    }
    this.pgDataHandler = handlers[0]!;
    connection.stream.removeListener('data', this.pgDataHandler);
    connection.stream.on('data', this.onData);
    connection.query(this.text);
  }

  private parse(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let pos = 0;
    while (this.buffer.length - pos >= 5) {
      const type = String.fromCharCode(this.buffer[pos]!);
      const len = this.buffer.readUInt32BE(pos + 1);
      if (type === 'Z' || type === 'E') {
        // Let pg see these: it maps the error and marks the client ready for the next query.
        this.detach(this.buffer.subarray(pos));
        return;
      }
      if (this.buffer.length - pos < 1 + len) break;
      const body = this.buffer.subarray(pos + 5, pos + 1 + len);
      pos += 1 + len;
      switch (type) {
        case 'T':
          this.readRowDescription(body);
          break;
        case 'D':
          this.rows.push(readDataRow(body));
          break;
        case 'C':
          this.commandTags.push(body.subarray(0, body.indexOf(0)).toString('utf8'));
          break;
        case 'I': // EmptyQueryResponse
        case 'N': // NoticeResponse
        case 'S': // ParameterStatus
        case 'A': // NotificationResponse
          break;
        default:
          // A COPY response or anything unknown: this helper is not the right tool.
          this.protocolError ??= new Error(`unexpected message "${type}" in the reply to ${this.text}`);
      }
    }
    this.buffer = Buffer.from(this.buffer.subarray(pos));
  }

  private readRowDescription(body: Buffer): void {
    const n = body.readInt16BE(0);
    let p = 2;
    for (let i = 0; i < n; i++) {
      const end = body.indexOf(0, p);
      const name = body.subarray(p, end).toString('utf8');
      p = end + 1;
      const typeOid = body.readUInt32BE(p + 6);
      p += 18;
      this.fields.push({ name, typeOid });
    }
  }

  private detach(rest: Buffer): void {
    const conn = this.connection;
    const handler = this.pgDataHandler;
    if (!conn || !handler) return;
    conn.stream.removeListener('data', this.onData);
    conn.stream.on('data', handler);
    this.pgDataHandler = undefined;
    this.buffer = Buffer.alloc(0);
    handler(rest);
  }

  private fail(e: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(e);
  }

  // --- called by pg.Client ---
  handleError(err: unknown): void {
    // pg reports ErrorResponse here, and a dead socket; give the connection back either way.
    if (this.pgDataHandler) {
      const conn = this.connection;
      conn?.stream.removeListener('data', this.onData);
      conn?.stream.on('data', this.pgDataHandler);
      this.pgDataHandler = undefined;
    }
    this.fail(err);
  }

  handleReadyForQuery(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.protocolError) this.reject(this.protocolError);
    else this.resolve({ fields: this.fields, rows: this.rows, commandTags: this.commandTags });
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
}

function readDataRow(body: Buffer): (Buffer | null)[] {
  const n = body.readInt16BE(0);
  const row: (Buffer | null)[] = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(p);
    p += 4;
    if (len < 0) {
      row.push(null);
    } else {
      row.push(Buffer.from(body.subarray(p, p + len)));
      p += len;
    }
  }
  return row;
}

/** Run one replication command (simple query protocol) and return its raw reply. */
export function runRawReplicationCommand(client: pg.Client, text: string): Promise<RawResult> {
  const q = new RawReplicationQuery(text);
  client.query(q as unknown as pg.Submittable);
  return q.result;
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

interface ServerError {
  code?: string;
  message?: string;
  detail?: string;
  hint?: string;
  severity?: string;
}

/** True for errors that mean the connection is gone (not an ERROR the session survives). */
export function isConnectionLoss(e: unknown): boolean {
  const err = e as ServerError;
  const msg = err?.message ?? '';
  return (
    /Connection terminated|ECONNRESET|EPIPE|socket hang up|Client was closed|not queryable|This socket has been ended/i.test(msg) ||
    err?.severity === 'FATAL' ||
    err?.severity === 'PANIC' ||
    (typeof err?.code === 'string' && (err.code.startsWith('08') || err.code.startsWith('57P')))
  );
}

/**
 * A server or socket error during a replication command → our error with the object named and
 * a hint. `what` says what was being done, e.g. `CREATE_REPLICATION_SLOT "x"`.
 */
export function replicationError(e: unknown, what: string, endpoint: string): PgbaculaError {
  if (e instanceof PgbaculaError) return e;
  const err = (e ?? {}) as ServerError;
  const reason = scrub(err.message ?? String(e)) + (err.detail ? ` (${scrub(err.detail)})` : '');
  let code: ErrorCode = 'PROTOCOL';
  let hint = err.hint ? scrub(err.hint) : 'Check the server log for details.';
  const msg = err.message ?? '';
  if (isConnectionLoss(e)) {
    code = 'CONNECTION';
    hint = 'The connection to the server was lost; check that the server is running (and its log), then retry.';
  } else if (/has already been removed/.test(msg)) {
    code = 'WAL_GAP';
    hint = 'The server no longer has this WAL; use a replication slot so it keeps WAL until pgbacula has it, and take a new base backup.';
  } else if (/not in this server's history/.test(msg)) {
    code = 'WAL_CONFLICT';
    hint = "Stream the timeline that contains the start point, as listed in the server's timeline history.";
  } else if (/ahead of the WAL flush position/.test(msg)) {
    code = 'PARAM_INVALID';
    hint = 'Start at or before the position reported by IDENTIFY_SYSTEM.';
  } else if (err.code === '42704' || err.code === '42710' || err.code === '55006' || err.code === '53400' || err.code === '42602') {
    code = 'PREREQUISITE';
    if (err.code === '53400') hint = 'Raise max_replication_slots or max_wal_senders on the server, or drop unused slots.';
    else if (err.code === '55006') hint = 'Another client uses the slot; stop it or use another slot name.';
  } else if (err.code === '42501') {
    code = 'PREREQUISITE';
    hint = 'Grant the role REPLICATION (ALTER ROLE … REPLICATION) and allow it in pg_hba.conf (database "replication").';
  }
  return new PgbaculaError(code, `${what} on ${endpoint} failed: ${reason}`, { hint, cause: e });
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

export interface SystemIdentity {
  /** Decimal uint64, as the server prints it (never a JS number). */
  readonly systemId: string;
  readonly timeline: number;
  /** Current WAL flush position (standby: last received/replayed). */
  readonly xlogPos: Lsn;
  /** Database of a logical walsender; null on a physical one. */
  readonly dbName: string | null;
  /** Declared type of the timeline column: 23 (int4) ≤ 15, 20 (int8) 16+. */
  readonly timelineTypeOid: number;
}

export interface TimelineHistoryFile {
  /** e.g. `00000002.history` */
  readonly fileName: string;
  /** The file byte for byte. */
  readonly content: Buffer;
  /** Declared type of `content`: 17 (bytea) ≤ 13, 25 (text) 14+; sent raw either way. */
  readonly contentTypeOid: number;
}

export interface ReplicationSlotInfo {
  readonly slotType: string;
  readonly restartLsn: Lsn | null;
  readonly restartTimeline: number | null;
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

export function assertSlotName(name: string): void {
  if (!SLOT_NAME.test(name)) {
    throw new PgbaculaError('PARAM_INVALID', `invalid replication slot name "${name}"`, {
      hint: 'Use 1–63 lower-case letters, digits and underscores.',
    });
  }
}

/** `SHOW wal_segment_size` text (`16MB`, `1GB`, `1024kB`) → bytes (the walsender's SHOW always prints a unit). */
export function parseSizeSetting(text: string): number | undefined {
  const m = /^\s*(\d+)\s*(B|kB|MB|GB|TB)?\s*$/.exec(text);
  if (!m) return undefined;
  const unit = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[m[2] ?? 'B'] ?? 1;
  return Number(m[1]) * unit;
}

function text(v: Buffer | null | undefined): string | null {
  return v === null || v === undefined ? null : v.toString('utf8');
}

/**
 * A physical walsender session. Open one with `ReplicationConnection.open(settings)`, or wrap a
 * pg.Client opened by `openSession(c, { replication: true })`.
 */
export class ReplicationConnection {
  private cachedMajor: Major | undefined;

  constructor(
    readonly client: pg.Client,
    /** For messages: `socket /tmp/.s.PGSQL.5432` or `host:port`. */
    readonly endpoint: string = 'the server',
  ) {}

  static async open(c: ConnectionSettings, opts: { applicationName?: string } = {}): Promise<ReplicationConnection> {
    const client = await openSession(c, { replication: true, applicationName: opts.applicationName ?? 'pgbacula' });
    return new ReplicationConnection(client, describeEndpoint(c));
  }

  /** Run a replication command; server errors become PgbaculaError naming the command. */
  async command(cmd: string): Promise<RawResult> {
    try {
      return await runRawReplicationCommand(this.client, cmd);
    } catch (e) {
      throw replicationError(e, cmd, this.endpoint);
    }
  }

  private oneRow(r: RawResult, cmd: string): (Buffer | null)[] {
    const row = r.rows[0];
    if (!row) throw new PgbaculaError('PROTOCOL', `${cmd} on ${this.endpoint} returned no row`, { hint: 'This is a server or protocol problem; check the server log.' });
    return row;
  }

  private column(r: RawResult, row: (Buffer | null)[], name: string, cmd: string): Buffer | null {
    const i = r.fields.findIndex((f) => f.name === name);
    if (i < 0) throw new PgbaculaError('PROTOCOL', `${cmd} on ${this.endpoint} returned no column "${name}"`);
    return row[i] ?? null;
  }

  async identifySystem(): Promise<SystemIdentity> {
    const cmd = 'IDENTIFY_SYSTEM';
    const r = await this.command(cmd);
    const row = this.oneRow(r, cmd);
    const systemId = text(this.column(r, row, 'systemid', cmd));
    const timeline = Number(text(this.column(r, row, 'timeline', cmd)));
    const xlogPos = tryParseLsn(text(this.column(r, row, 'xlogpos', cmd)) ?? '');
    if (!systemId || !/^\d+$/.test(systemId) || !Number.isInteger(timeline) || timeline < 1 || xlogPos === undefined) {
      throw new PgbaculaError('PROTOCOL', `${cmd} on ${this.endpoint} returned an unreadable row`);
    }
    const timelineTypeOid = r.fields.find((f) => f.name === 'timeline')?.typeOid ?? 0;
    return { systemId, timeline, xlogPos, dbName: text(this.column(r, row, 'dbname', cmd)), timelineTypeOid };
  }

  /** `SHOW name` (10+): the value as the server formats it (with units). */
  async show(name: string): Promise<string> {
    if (!/^[a-z_][a-z0-9_.]*$/.test(name)) throw new PgbaculaError('INTERNAL', `invalid setting name "${name}"`);
    const cmd = `SHOW ${name}`;
    const r = await this.command(cmd);
    const v = text(this.oneRow(r, cmd)[0]);
    if (v === null) throw new PgbaculaError('PROTOCOL', `${cmd} on ${this.endpoint} returned NULL`);
    return v;
  }

  /** server_version_num → supported major (VERSION_UNSUPPORTED otherwise). */
  async major(): Promise<Major> {
    if (this.cachedMajor !== undefined) return this.cachedMajor;
    const num = Number(await this.show('server_version_num'));
    const major = majorOf(num);
    if (!isSupportedMajor(major)) {
      throw new PgbaculaError('VERSION_UNSUPPORTED', `PostgreSQL ${major} at ${this.endpoint} is not supported`, {
        hint: `pgbacula supports ${SUPPORTED_RANGE}.`,
      });
    }
    this.cachedMajor = major;
    return major;
  }

  /** `SHOW wal_segment_size` (`16MB`) → bytes. */
  async walSegmentSize(): Promise<number> {
    const v = await this.show('wal_segment_size');
    const bytes = parseSizeSetting(v);
    if (bytes === undefined || !isValidWalSegmentSize(bytes)) {
      throw new PgbaculaError('PROTOCOL', `unexpected wal_segment_size "${v}" from ${this.endpoint}`, {
        hint: 'The server should report a power of two from 1MB to 1GB.',
      });
    }
    return bytes;
  }

  /** The history file of a timeline (> 1), byte for byte. */
  async timelineHistory(tli: number): Promise<TimelineHistoryFile> {
    if (!Number.isInteger(tli) || tli < 2) {
      throw new PgbaculaError('PARAM_INVALID', `timeline ${tli} has no history file`, { hint: 'Only timelines 2 and later have one.' });
    }
    const cmd = `TIMELINE_HISTORY ${tli}`;
    const r = await this.command(cmd);
    const row = this.oneRow(r, cmd);
    const fileName = text(this.column(r, row, 'filename', cmd));
    const content = this.column(r, row, 'content', cmd);
    if (!fileName || content === null) throw new PgbaculaError('PROTOCOL', `${cmd} on ${this.endpoint} returned an empty row`);
    const contentTypeOid = r.fields.find((f) => f.name === 'content')?.typeOid ?? 0;
    return { fileName, content, contentTypeOid };
  }

  /**
   * CREATE_REPLICATION_SLOT "name" [TEMPORARY] PHYSICAL …. 10–14 take the bare keyword
   * RESERVE_WAL; 15+ the option list `(RESERVE_WAL)` (the keyword is still accepted there, but
   * the option list is what current clients send). A TEMPORARY slot lives as long as this session
   * and can only be used by it (the creating walsender stays its owner).
   */
  async createPhysicalSlot(name: string, opts: { temporary?: boolean; reserveWal?: boolean } = {}): Promise<{ slotName: string; consistentPoint: string }> {
    assertSlotName(name);
    const major = await this.major();
    const reserve = opts.reserveWal ?? true;
    const optionList = versionFacts(major).readReplicationSlot; // 15+: the generic option syntax
    let cmd = `CREATE_REPLICATION_SLOT "${name}"${opts.temporary ? ' TEMPORARY' : ''} PHYSICAL`;
    if (reserve) cmd += optionList ? ' (RESERVE_WAL)' : ' RESERVE_WAL';
    const r = await this.command(cmd);
    const row = this.oneRow(r, cmd);
    return {
      slotName: text(this.column(r, row, 'slot_name', cmd)) ?? name,
      consistentPoint: text(this.column(r, row, 'consistent_point', cmd)) ?? '0/0',
    };
  }

  /** DROP_REPLICATION_SLOT "name" [WAIT]. */
  async dropSlot(name: string, opts: { wait?: boolean } = {}): Promise<void> {
    assertSlotName(name);
    await this.command(`DROP_REPLICATION_SLOT "${name}"${opts.wait ? ' WAIT' : ''}`);
  }

  /**
   * READ_REPLICATION_SLOT "name" (15+): null when the slot does not exist (the server answers a
   * row of NULLs). Before 15 read pg_replication_slots on a regular connection instead.
   */
  async readSlot(name: string): Promise<ReplicationSlotInfo | null> {
    assertSlotName(name);
    const major = await this.major();
    if (!versionFacts(major).readReplicationSlot) {
      throw new PgbaculaError('VERSION_UNSUPPORTED', `READ_REPLICATION_SLOT needs PostgreSQL 15 or later (${this.endpoint} runs ${major})`, {
        hint: 'Read restart_lsn from pg_replication_slots on a regular connection.',
      });
    }
    const cmd = `READ_REPLICATION_SLOT "${name}"`;
    const r = await this.command(cmd);
    const row = this.oneRow(r, cmd);
    const slotType = text(this.column(r, row, 'slot_type', cmd));
    if (slotType === null) return null;
    const lsnText = text(this.column(r, row, 'restart_lsn', cmd));
    const tliText = text(this.column(r, row, 'restart_tli', cmd));
    return {
      slotType,
      restartLsn: lsnText === null ? null : parseLsn(lsnText, 'restart_lsn'),
      restartTimeline: tliText === null ? null : Number(tliText),
    };
  }

  async close(): Promise<void> {
    await closeClient(this.client);
  }
}

/** End a client, and if it does not answer within a few seconds, drop its socket. */
export async function closeClient(client: pg.Client, timeoutMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.end().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          destroyClient(client);
          resolve();
        }, timeoutMs);
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/** Drop the socket at once (after a protocol failure the session cannot be trusted). */
export function destroyClient(client: pg.Client): void {
  try {
    (connectionOf(client).stream as unknown as { destroy(): void }).destroy();
  } catch {
    // already gone
  }
}

/** For messages: `START_REPLICATION … 0/3000000 TIMELINE 1`. */
export function startReplicationCommand(startLsn: Lsn, timeline: number, slot?: string): string {
  if (slot !== undefined) assertSlotName(slot);
  const slotPart = slot === undefined ? '' : `SLOT "${slot}" `;
  return `START_REPLICATION ${slotPart}PHYSICAL ${formatLsn(startLsn)} TIMELINE ${timeline}`;
}
