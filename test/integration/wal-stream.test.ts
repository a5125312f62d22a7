import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionSettings } from '../../src/config/connection.js';
import { PgbaculaError } from '../../src/errors.js';
import { ReplicationConnection } from '../../src/server/replication.js';
import { streamWal, type CompletedSegment, type StreamWalResult } from '../../src/server/wal-stream.js';
import { formatLsn, parseLsn, type Lsn } from '../../src/wal/lsn.js';
import { validateWalSegment } from '../../src/wal/page-header.js';
import { parseWalSegmentName, walSegmentName, walSegmentNumber, walSegmentNumberOfEnd, walSegmentOffset, walSegmentStart } from '../../src/wal/segment.js';
import { formatTimelineHistory, parseTimelineHistory } from '../../src/wal/timeline-history.js';
import { startCluster, startStandby, type Cluster } from '../harness/cluster.js';
import { pgBin, PG18_CLIENT_BIN, TEST_MAJORS } from '../harness/pg-binaries.js';

const execFileAsync = promisify(execFile);
const SEG = 16 * 1024 * 1024;

function settingsOf(c: Cluster): ConnectionSettings {
  return {
    host: c.socketDir,
    port: c.port,
    user: 'postgres',
    database: 'postgres',
    password: undefined,
    sslmode: 'disable',
    connectTimeoutSeconds: 10,
    passwordSource: 'none',
  };
}

async function lsnOf(c: Cluster, sql: string): Promise<Lsn> {
  const [row] = await c.sql<{ l: string }>(`SELECT (${sql})::text AS l`);
  return parseLsn(row!.l);
}

/** WAL the tests can compare against: rows, and a segment switch after each batch. */
async function generateWal(c: Cluster, switches: number, rows = 20_000): Promise<void> {
  await c.sql('CREATE TABLE IF NOT EXISTS walgen (id int, filler text)');
  for (let i = 0; i < switches; i++) {
    await c.sql(`INSERT INTO walgen SELECT g, repeat('x', 100) FROM generate_series(1, ${rows}) g`);
    await c.sql('SELECT pg_switch_wal()');
  }
  // End mid-segment, so the stream stops inside a segment.
  await c.sql(`INSERT INTO walgen SELECT g, repeat('y', 100) FROM generate_series(1, ${rows}) g`);
}

function serverWalFile(c: Cluster, name: string): Buffer {
  return readFileSync(join(c.pgdata, 'pg_wal', name));
}

function expectSameAsServer(c: Cluster, dir: string, name: string): void {
  const ours = readFileSync(join(dir, name));
  const theirs = serverWalFile(c, name);
  expect(ours.length, name).toBe(SEG);
  expect(ours.equals(theirs), `${name} differs from the server's pg_wal/${name}`).toBe(true);
}

/** Our .partial equals the server's segment up to `upto` (exclusive), and is zero after `written`. */
function expectPartialPrefix(c: Cluster, dir: string, partial: string, upto: Lsn, written: Lsn): void {
  const name = partial.replace(/\.partial$/, '');
  const ours = readFileSync(join(dir, partial));
  expect(ours.length).toBe(SEG); // pre-sized like pg_receivewal's
  const segStart = parseWalSegmentName(name, SEG).segno * BigInt(SEG);
  const n = Number(upto - segStart);
  expect(n).toBeGreaterThan(0);
  expect(ours.subarray(0, n).equals(serverWalFile(c, name).subarray(0, n)), `${partial} prefix`).toBe(true);
  const w = Number(written - segStart);
  if (w < SEG) expect(ours.subarray(w).every((b) => b === 0), `${partial} is zero after ${formatLsn(written)}`).toBe(true);
}

function walFiles(dir: string): string[] {
  return readdirSync(dir).sort();
}

function waldumpFor(major: number): string | undefined {
  const candidates: Record<number, string> = {
    15: '/usr/lib/postgresql/15/bin/pg_waldump',
    18: join(PG18_CLIENT_BIN, 'pg_waldump'),
  };
  const p = candidates[major];
  return p && existsSync(p) ? p : undefined;
}

/** The harness's standby (application_name "standby") streams from the primary. */
async function waitForStandbyStreaming(primary: Cluster): Promise<void> {
  await until('the standby streams from the primary', async () => {
    const rows = await primary.sql("SELECT 1 FROM pg_stat_replication WHERE application_name = 'standby' AND state = 'streaming'");
    return rows.length === 1;
  });
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.each(TEST_MAJORS)('WAL streaming from PostgreSQL %i', (major) => {
  let primary: Cluster;
  let standby: Cluster | undefined;
  const dirs: string[] = [];
  const newDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), `pgbacula-wal-${major}-`));
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    primary = await startCluster({
      major,
      name: `pg${major}-walstream`,
      // A short wal_sender_timeout proves status updates keep flowing while we do not read.
      settings: { wal_sender_timeout: '2s', log_replication_commands: true },
    });
    // Keep every segment in pg_wal for the byte comparisons, whatever checkpoints do.
    await primary.sql("SELECT pg_create_physical_replication_slot('keep_all', true)");
  });
  afterAll(async () => {
    await standby?.destroy();
    await primary?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('IDENTIFY_SYSTEM, SHOW, TIMELINE_HISTORY and slot commands answer as the version does', async () => {
    const conn = await ReplicationConnection.open(settingsOf(primary));
    try {
      const ident = await conn.identifySystem();
      const [sys] = await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
      expect(ident.systemId).toBe(sys!.id);
      expect(ident.timeline).toBe(1);
      expect(ident.dbName).toBeNull();
      // timeline is declared int4 before 16 and int8 from 16 (docs/postgresql-facts.md).
      expect(ident.timelineTypeOid).toBe(major >= 16 ? 20 : 23);
      expect(ident.xlogPos).toBeGreaterThan(0n);
      expect(ident.xlogPos <= (await lsnOf(primary, 'pg_current_wal_flush_lsn()'))).toBe(true);
      expect(await conn.major()).toBe(major);
      expect(await conn.walSegmentSize()).toBe(SEG);
      expect(await conn.show('data_checksums')).toBe('on');

      // Temporary slot reserving WAL: visible, temporary, restart_lsn set.
      const created = await conn.createPhysicalSlot('wal_probe', { temporary: true });
      expect(created).toEqual({ slotName: 'wal_probe', consistentPoint: '0/0' });
      const [slot] = await primary.sql<{ temporary: boolean; restart_lsn: string | null; slot_type: string }>(
        "SELECT temporary, restart_lsn::text, slot_type FROM pg_replication_slots WHERE slot_name = 'wal_probe'",
      );
      expect(slot).toMatchObject({ temporary: true, slot_type: 'physical' });
      expect(slot!.restart_lsn).not.toBeNull();
      if (major >= 15) {
        expect(await conn.readSlot('wal_probe')).toEqual({ slotType: 'physical', restartLsn: parseLsn(slot!.restart_lsn!), restartTimeline: 1 });
        expect(await conn.readSlot('no_such_slot')).toBeNull(); // a row of NULLs, not an error
      } else {
        await expect(conn.readSlot('wal_probe')).rejects.toMatchObject({ code: 'VERSION_UNSUPPORTED' });
      }
      await conn.dropSlot('wal_probe');
      expect(await primary.sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'wal_probe'")).toEqual([]);
      await expect(conn.dropSlot('wal_probe')).rejects.toMatchObject({ code: 'PREREQUISITE' });

      // Any ERROR on the walsender session drops its temporary slots (WalSndErrorCleanup).
      await conn.createPhysicalSlot('wal_probe2', { temporary: true });
      await expect(conn.createPhysicalSlot('wal_probe2', { temporary: true })).rejects.toMatchObject({ code: 'PREREQUISITE' });
      expect(await primary.sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'wal_probe2'")).toEqual([]);

      // A persistent slot without RESERVE_WAL reserves nothing.
      await conn.createPhysicalSlot('wal_lazy', { reserveWal: false });
      const [lazy] = await primary.sql<{ restart_lsn: string | null }>("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'wal_lazy'");
      expect(lazy!.restart_lsn).toBeNull();
      await conn.dropSlot('wal_lazy', { wait: true });

      // Timeline 1 has no history file; the server error is mapped and names the file.
      const err = await conn.command('TIMELINE_HISTORY 1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PgbaculaError);
      expect((err as PgbaculaError).message).toContain('00000001.history');
      await expect(conn.timelineHistory(1)).rejects.toMatchObject({ code: 'PARAM_INVALID' });
      // The session survives server errors.
      expect((await conn.identifySystem()).systemId).toBe(sys!.id);
    } finally {
      await conn.close();
    }
  });

  it('streams from a temporary slot to a stop LSN: segments byte-identical to pg_wal, the last one .partial', async () => {
    const conn = await ReplicationConnection.open(settingsOf(primary));
    const dir = newDir();
    try {
      // The slot belongs to this session, so the stream must run on it.
      await conn.createPhysicalSlot('wal_stream', { temporary: true });
      const [slot] = await primary.sql<{ restart_lsn: string }>("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'wal_stream'");
      const start = parseLsn(slot!.restart_lsn);
      await generateWal(primary, 3);
      const stop = await lsnOf(primary, 'pg_current_wal_flush_lsn()');
      expect(walSegmentOffset(stop, SEG)).toBeGreaterThan(0);
      const seen: CompletedSegment[] = [];
      const r = await streamWal({
        connection: conn, startLsn: start, timeline: 1, slot: 'wal_stream', targetDir: dir, stopAtLsn: stop, statusIntervalMs: 200,
        onSegment: (s) => void seen.push(s),
      });
      expect(r.stoppedBy).toBe('stop-lsn');
      expect(r.startLsn).toBe(walSegmentStart(walSegmentNumber(start, SEG), SEG));
      expect(r.lastWrittenLsn >= stop).toBe(true);
      expect(r.lastFlushedLsn).toBe(r.lastWrittenLsn);
      expect(r.systemId).toBe((await conn.identifySystem()).systemId);
      // One completed segment per switch at least, contiguous from the start.
      const first = walSegmentNumber(start, SEG);
      const lastComplete = walSegmentNumber(stop, SEG) - 1n;
      const expected: string[] = [];
      for (let n = first; n <= lastComplete; n++) expected.push(walSegmentName(1, n, SEG));
      expect(expected.length).toBeGreaterThanOrEqual(3);
      expect(r.segments).toEqual(expected);
      expect(seen.map((s) => s.name)).toEqual(expected);
      expect(seen[0]).toMatchObject({ timeline: 1, segno: first, startLsn: walSegmentStart(first, SEG), endLsn: walSegmentStart(first + 1n, SEG), path: join(dir, expected[0]!) });
      const partial = `${walSegmentName(1, walSegmentNumberOfEnd(r.lastWrittenLsn, SEG), SEG)}.partial`;
      expect(r.partial).toBe(partial);
      expect(walFiles(dir)).toEqual([...expected, partial]);
      for (const name of expected) expectSameAsServer(primary, dir, name);
      expectPartialPrefix(primary, dir, partial, stop, r.lastWrittenLsn);

      // Real segments pass page-header validation for their system and major, and only for those.
      const sysid = r.systemId;
      for (const name of expected) {
        const bytes = readFileSync(join(dir, name));
        const segStart = walSegmentStart(parseWalSegmentName(name, SEG).segno, SEG);
        const v = validateWalSegment(bytes, { segmentStart: segStart, segmentSize: SEG, systemId: sysid, major, timeline: 1 });
        expect(v.problems, name).toEqual([]);
        expect(v.validPages).toBeGreaterThan(0);
        const other = major === 18 ? 17 : 18;
        expect(validateWalSegment(bytes, { segmentStart: segStart, segmentSize: SEG, systemId: sysid, major: other, timeline: 1 }).problems[0]).toContain(`expected 0x`);
        expect(validateWalSegment(bytes, { segmentStart: segStart, segmentSize: SEG, systemId: BigInt(sysid) + 1n, major, timeline: 1 }).problems[0]).toContain('belongs to system');
      }
      const pv = validateWalSegment(readFileSync(join(dir, partial)), {
        segmentStart: walSegmentStart(parseWalSegmentName(partial.slice(0, 24), SEG).segno, SEG), segmentSize: SEG, systemId: sysid, major, timeline: 1, partial: true,
      });
      expect(pv.ok).toBe(true);

      // The slot followed our flush reports; the session is usable after the clean CopyDone.
      const [after] = await primary.sql<{ ok: boolean }>(`SELECT restart_lsn >= '${formatLsn(walSegmentStart(lastComplete, SEG))}'::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'wal_stream'`);
      expect(after!.ok).toBe(true);
      expect((await conn.identifySystem()).timeline).toBe(1);

      const waldump = waldumpFor(major);
      if (waldump) {
        // pg_waldump reads plain names only: give it the .partial under its segment name.
        const dumpDir = newDir();
        for (const name of expected) copyFileSync(join(dir, name), join(dumpDir, name));
        copyFileSync(join(dir, partial), join(dumpDir, partial.slice(0, 24)));
        const { stdout } = await execFileAsync(waldump, ['-p', dumpDir, '-t', '1', '-s', formatLsn(r.startLsn), '-e', formatLsn(stop)], { maxBuffer: 256 * 1024 * 1024 });
        expect(stdout.match(/SWITCH/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
        expect(stdout).toMatch(/INSERT/);
      }
    } finally {
      await conn.close();
    }
  });

  it('a slow consumer stops the reading, not the status updates (wal_sender_timeout 2 s)', async () => {
    const dir = newDir();
    const start = await lsnOf(primary, 'pg_current_wal_flush_lsn()');
    await generateWal(primary, 4);
    const stop = await lsnOf(primary, 'pg_current_wal_flush_lsn()');
    const startSeg = walSegmentStart(walSegmentNumber(start, SEG), SEG);
    let sentWhileBlocked: Lsn | undefined;
    const r = await streamWal({
      connection: settingsOf(primary), applicationName: 'pgbacula_slow', startLsn: start, timeline: 1, targetDir: dir, stopAtLsn: stop, statusIntervalMs: 300,
      onSegment: async (s) => {
        if (sentWhileBlocked !== undefined) return;
        // Busy for 2.5 × wal_sender_timeout: the server must neither time out nor push everything.
        await new Promise((res) => setTimeout(res, 5000));
        const [row] = await primary.sql<{ sent: string }>("SELECT sent_lsn::text AS sent FROM pg_stat_replication WHERE application_name = 'pgbacula_slow'");
        sentWhileBlocked = parseLsn(row!.sent);
        expect(s.startLsn).toBe(startSeg);
      },
    });
    expect(r.stoppedBy).toBe('stop-lsn');
    expect(sentWhileBlocked).toBeDefined();
    // What the server had sent while we were not reading stayed within a few socket buffers of
    // where we stopped, far less than the 3+ segments still to come.
    const aheadBy = sentWhileBlocked! - (startSeg + BigInt(SEG));
    expect(aheadBy < BigInt(4 * 1024 * 1024)).toBe(true);
    expect(stop - (startSeg + BigInt(SEG)) > BigInt(2 * SEG)).toBe(true);
    for (const name of r.segments) expectSameAsServer(primary, dir, name);
    expect(primary.log()).not.toContain('due to replication timeout');
  });

  it('stops cleanly on abort, and a failing consumer leaves the session usable', async () => {
    const [keep] = await primary.sql<{ restart_lsn: string }>("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'keep_all'");
    const start = parseLsn(keep!.restart_lsn);
    await generateWal(primary, 1, 1000); // at least one complete segment after start
    const conn = await ReplicationConnection.open(settingsOf(primary));
    try {
      const ac = new AbortController();
      const safety = setTimeout(() => ac.abort(), 20_000); // fail by assertion, not by hanging
      const dir = newDir();
      const r = await streamWal({
        connection: conn, startLsn: start, timeline: 1, targetDir: dir, signal: ac.signal, statusIntervalMs: 200,
        onSegment: () => ac.abort(),
      });
      clearTimeout(safety);
      expect(r.stoppedBy).toBe('signal');
      expect(r.segments).toEqual([walSegmentName(1, walSegmentNumber(start, SEG), SEG)]);
      expectSameAsServer(primary, dir, r.segments[0]!);
      expect(r.lastFlushedLsn).toBe(r.lastWrittenLsn);
      expect(walFiles(dir).filter((f) => !f.endsWith('.partial'))).toEqual(r.segments);
      expect((await conn.identifySystem()).timeline).toBe(1); // COPY ended cleanly

      const failing = streamWal({
        connection: conn, startLsn: start, timeline: 1, targetDir: newDir(), statusIntervalMs: 200,
        onSegment: () => {
          throw new PgbaculaError('REPOSITORY', 'the consumer is full');
        },
      });
      await expect(failing).rejects.toThrow('the consumer is full');
      expect((await conn.identifySystem()).timeline).toBe(1);
    } finally {
      await conn.close();
    }
  });

  it('killed mid-segment, a restart from the slot restart_lsn loses nothing', async () => {
    const conn = await ReplicationConnection.open(settingsOf(primary));
    const dir = newDir();
    try {
      await conn.createPhysicalSlot('wal_restart', { temporary: false });
      const [slot] = await primary.sql<{ restart_lsn: string }>("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'wal_restart'");
      const start = parseLsn(slot!.restart_lsn);
      await generateWal(primary, 2);
      const mid = await lsnOf(primary, 'pg_current_wal_flush_lsn()');
      expect(walSegmentOffset(mid, SEG)).toBeGreaterThan(0);

      const firstRun: string[] = [];
      const running = streamWal({
        connection: settingsOf(primary), applicationName: 'pgbacula_kill', startLsn: start, timeline: 1, slot: 'wal_restart', targetDir: dir, statusIntervalMs: 100,
        reconnect: false, // this test restarts by hand, as wal-receive does
        onSegment: (s) => void firstRun.push(s.name),
      });
      const outcome = running.then(() => 'resolved', (e: unknown) => e);
      await until('the stream has fsynced WAL up to the middle of a segment', async () => {
        const rows = await primary.sql<{ ok: boolean }>(`SELECT flush_lsn >= '${formatLsn(mid)}'::pg_lsn AS ok FROM pg_stat_replication WHERE application_name = 'pgbacula_kill'`);
        return rows[0]?.ok === true;
      });
      await primary.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'pgbacula_kill'");
      const e = await outcome;
      expect(e).toBeInstanceOf(PgbaculaError);
      expect((e as PgbaculaError).code).toBe('CONNECTION');
      const midName = walSegmentName(1, walSegmentNumber(mid, SEG), SEG);
      expect(walFiles(dir)).toContain(`${midName}.partial`);
      expect(firstRun.length).toBeGreaterThanOrEqual(2);

      // Where to restart: the slot, as the server keeps it (READ_REPLICATION_SLOT from 15).
      let restart: Lsn;
      if (major >= 15) {
        const info = await conn.readSlot('wal_restart');
        expect(info?.restartTimeline).toBe(1);
        restart = info!.restartLsn!;
      } else {
        const [row] = await primary.sql<{ restart_lsn: string }>("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'wal_restart'");
        restart = parseLsn(row!.restart_lsn);
      }
      // The slot advanced with what we reported as fsynced, and never beyond what our files hold.
      expect(restart > start).toBe(true);
      expect(walSegmentNumber(restart, SEG)).toBe(walSegmentNumber(mid, SEG));
      const held = readFileSync(join(dir, `${midName}.partial`)).subarray(0, walSegmentOffset(restart, SEG));
      expect(held.equals(serverWalFile(primary, midName).subarray(0, held.length))).toBe(true);

      await generateWal(primary, 2);
      const stop = await lsnOf(primary, 'pg_current_wal_flush_lsn()');
      const r = await streamWal({ connection: settingsOf(primary), startLsn: restart, timeline: 1, slot: 'wal_restart', targetDir: dir, stopAtLsn: stop, statusIntervalMs: 100 });
      expect(r.stoppedBy).toBe('stop-lsn');
      expect(r.segments[0]).toBe(midName); // the segment that was .partial is rewritten from its start
      const all = new Set([...firstRun, ...r.segments]);
      for (let n = walSegmentNumber(start, SEG); n < walSegmentNumber(stop, SEG); n++) {
        const name = walSegmentName(1, n, SEG);
        expect(all.has(name), `${name} was streamed`).toBe(true);
        expectSameAsServer(primary, dir, name);
      }
      expect(walFiles(dir).filter((f) => f.endsWith('.partial'))).toEqual([r.partial]);
      expectPartialPrefix(primary, dir, r.partial!, stop, r.lastWrittenLsn);
    } finally {
      await primary.sql("SELECT pg_drop_replication_slot('wal_restart')").catch(() => undefined);
      await conn.close();
    }
  });

  it('a walsender the server ends mid-stream: streamWal reconnects and reaches the stop LSN, nothing lost', async () => {
    const dir = newDir();
    const [row] = await primary.sql<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    const start = parseLsn(row!.lsn);
    await generateWal(primary, 3);
    const stop = await lsnOf(primary, 'pg_current_wal_flush_lsn()');
    let ended = 0;
    const r = await streamWal({
      connection: settingsOf(primary), applicationName: 'pgbacula_ended', startLsn: start, timeline: 1, targetDir: dir, stopAtLsn: stop, statusIntervalMs: 100,
      // The server ends the walsender after the first segment (as it does one opened around a
      // promotion): deterministic, unlike the promotion's timing.
      onSegment: async () => {
        if (ended++ === 0) await primary.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'pgbacula_ended'");
      },
    });
    expect(ended).toBeGreaterThanOrEqual(2);
    expect(r.stoppedBy).toBe('stop-lsn');
    expect(r.startLsn).toBe(walSegmentStart(walSegmentNumber(start, SEG), SEG));
    const expected: string[] = [];
    for (let n = walSegmentNumber(start, SEG); n < walSegmentNumber(stop, SEG); n++) expected.push(walSegmentName(1, n, SEG));
    expect(r.segments).toEqual(expected);
    for (const name of expected) expectSameAsServer(primary, dir, name);
    expect(walFiles(dir).filter((f) => f.endsWith('.partial'))).toEqual([r.partial]);
    expectPartialPrefix(primary, dir, r.partial!, stop, r.lastWrittenLsn);
  });

  it('streams from a standby, and after its promotion reports the end of timeline 1 and continues on 2', async () => {
    standby = await startStandby(primary);
    const sb = standby;
    await waitForStandbyStreaming(primary);
    const sconn = await ReplicationConnection.open(settingsOf(sb));
    const dir = newDir();
    try {
      const ident = await sconn.identifySystem();
      const [sys] = await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
      expect(ident.systemId).toBe(sys!.id);
      expect(ident.timeline).toBe(1);
      // A slot on the standby reserves from its replay position.
      await sconn.createPhysicalSlot('sb_stream', { temporary: true });
      const [slot] = await sb.sql<{ restart_lsn: string }>("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'sb_stream'");
      const start = parseLsn(slot!.restart_lsn);
      await generateWal(primary, 2);
      const stop = await lsnOf(primary, 'pg_current_wal_flush_lsn()');
      await until('the standby replayed the new WAL', async () => {
        const [row] = await sb.sql<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= '${formatLsn(stop)}'::pg_lsn AS ok`);
        return row!.ok === true;
      });
      const r = await streamWal({ connection: sconn, startLsn: start, timeline: 1, slot: 'sb_stream', targetDir: dir, stopAtLsn: stop, statusIntervalMs: 200 });
      expect(r.stoppedBy).toBe('stop-lsn');
      expect(r.segments.length).toBeGreaterThanOrEqual(2);
      for (const [i, name] of r.segments.entries()) {
        expectSameAsServer(sb, dir, name); // what the standby serves is its own pg_wal
        // …which is the primary's WAL, except on 10 for the segment that ended the base backup:
        // the standby got it from pg_basebackup's stream, which stops at the backup end, so the
        // tail after that WAL switch is zeros, while a 10 primary writes page headers there
        // (11+ zero that tail on the primary too).
        if (major > 10 || i > 0) expectSameAsServer(primary, dir, name);
      }
      expectPartialPrefix(primary, dir, r.partial!, stop, r.lastWrittenLsn);
      await sconn.close();

      // Promote: the standby moves to timeline 2 and writes 00000002.history.
      await sb.runAsServerUser(pgBin(major, 'pg_ctl'), ['-D', sb.pgdata, '-w', '-t', '60', 'promote']);
      await until('the standby is promoted', async () => {
        const [row] = await sb.sql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        return row!.r === false;
      });
      // pg_is_in_recovery() turns false before the startup process exits; when the postmaster
      // reaps it, it tells the walsenders of that moment to finish and exit. Connect after that.
      await until('the startup process has exited', async () => (await sb.sql("SELECT 1 FROM pg_stat_activity WHERE backend_type = 'startup'")).length === 0);
      const historyOnServer = readFileSync(join(sb.pgdata, 'pg_wal', '00000002.history'));
      const [entry] = parseTimelineHistory(historyOnServer, 2);
      expect(entry?.parentTimeline).toBe(1);
      const switchLsn = entry!.switchLsn;

      // Timeline 1 is historic now: the server streams it up to the switch point, then ends.
      const tl1Dir = newDir();
      const tl1Start = walSegmentStart(walSegmentNumber(switchLsn, SEG) - 1n, SEG);
      const h = await streamWal({ connection: settingsOf(sb), startLsn: tl1Start, timeline: 1, targetDir: tl1Dir, statusIntervalMs: 200 });
      expect(h.stoppedBy).toBe('end-of-timeline');
      expect(h.endOfTimeline).toEqual({ nextTimeline: 2, switchLsn });
      expect(h.lastWrittenLsn).toBe(switchLsn);
      expect(h.segments).toEqual([walSegmentName(1, walSegmentNumber(tl1Start, SEG), SEG)]);
      const oldPartial = `${walSegmentName(1, walSegmentNumber(switchLsn, SEG), SEG)}.partial`;
      expect(h.partial).toBe(oldPartial);
      expect(walFiles(tl1Dir)).toEqual([...h.segments, oldPartial]);
      expectSameAsServer(primary, tl1Dir, h.segments[0]!);

      // Continue on timeline 2 from the start of the switch segment: the history file comes first.
      await sb.sql(`INSERT INTO walgen SELECT g, 'tl2' FROM generate_series(1, 5000) g`);
      const stop2 = await lsnOf(sb, 'pg_current_wal_flush_lsn()');
      const conn2 = await ReplicationConnection.open(settingsOf(sb));
      try {
        const id2 = await conn2.identifySystem();
        expect(id2.timeline).toBe(2);
        const hist = await conn2.timelineHistory(2);
        expect(hist.fileName).toBe('00000002.history');
        expect(hist.content.equals(historyOnServer)).toBe(true);
        expect(hist.contentTypeOid).toBe(major >= 14 ? 25 : 17); // declared bytea ≤ 13, sent raw
        expect(formatTimelineHistory(parseTimelineHistory(hist.content, 2))).toBe(historyOnServer.toString('latin1'));
        // Settings, not a session: the server may end a walsender opened around a promotion,
        // and streamWal reconnects by itself then (as a backup's own stream must).
        const t2 = await streamWal({ connection: settingsOf(sb), startLsn: switchLsn, timeline: 2, targetDir: tl1Dir, stopAtLsn: stop2, statusIntervalMs: 200 });
        expect(t2.stoppedBy).toBe('stop-lsn');
        expect(readFileSync(join(tl1Dir, '00000002.history')).equals(historyOnServer)).toBe(true);
        const newName = walSegmentName(2, walSegmentNumber(switchLsn, SEG), SEG);
        const written = t2.segments.includes(newName) ? newName : `${newName}.partial`;
        expect(walFiles(tl1Dir)).toContain(written);
        // The first segment of timeline 2 repeats timeline 1 up to the switch point.
        const upto = walSegmentOffset(switchLsn, SEG);
        const tl1Bytes = readFileSync(join(tl1Dir, oldPartial)).subarray(0, upto);
        const tl2Bytes = readFileSync(join(tl1Dir, written));
        expect(tl2Bytes.subarray(0, upto).equals(tl1Bytes)).toBe(true);
        if (written === newName) expectSameAsServer(sb, tl1Dir, newName);
        else expectPartialPrefix(sb, tl1Dir, written, stop2 < walSegmentStart(walSegmentNumber(switchLsn, SEG) + 1n, SEG) ? stop2 : walSegmentStart(walSegmentNumber(switchLsn, SEG) + 1n, SEG), t2.lastWrittenLsn);
      } finally {
        await conn2.close();
      }

      // A fast shutdown ends the stream from the server side (no next-timeline row): resolved,
      // with what was received kept as .partial.
      const liveDir = newDir();
      const live = streamWal({ connection: settingsOf(sb), applicationName: 'pgbacula_live', startLsn: stop2, timeline: 2, targetDir: liveDir, statusIntervalMs: 200 });
      const outcome: Promise<StreamWalResult | Error> = live.then((res) => res, (e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      // A walsender is listed from its connection on; a fast shutdown ends idle ones at once.
      await until('the live stream is streaming', async () => (await sb.sql("SELECT 1 FROM pg_stat_replication WHERE application_name = 'pgbacula_live' AND state = 'streaming'")).length === 1);
      await sb.stop('fast');
      const ended = await outcome;
      if (ended instanceof Error) throw ended;
      expect(ended.stoppedBy).toBe('server-ended');
      expect(ended.endOfTimeline).toBeUndefined();
      expect(ended.partial).toMatch(/^00000002[0-9A-F]{16}\.partial$/);
      // The shutdown checkpoint was streamed before the server let us go.
      expect(ended.lastWrittenLsn > stop2).toBe(true);
      expect(ended.lastFlushedLsn).toBe(ended.lastWrittenLsn);
    } finally {
      await sconn.close().catch(() => undefined);
    }
  });

  it('maps server refusals: a start ahead of the server, WAL already removed', async () => {
    const flush = await lsnOf(primary, 'pg_current_wal_flush_lsn()');
    const ahead = walSegmentStart(walSegmentNumber(flush, SEG) + 10n, SEG);
    const e1 = await streamWal({ connection: settingsOf(primary), startLsn: ahead, timeline: 1, targetDir: newDir() }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(PgbaculaError);
    expect((e1 as PgbaculaError).code).toBe('PARAM_INVALID');
    expect((e1 as PgbaculaError).message).toContain('ahead of the WAL flush position');
    // Let checkpoints remove the oldest segments, then ask for one of them.
    await primary.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots");
    const [oldest] = await primary.sql<{ name: string }>("SELECT min(name) AS name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'");
    for (let i = 0; i < 3; i++) {
      await generateWal(primary, 1, 1000);
      await primary.sql('CHECKPOINT');
    }
    expect(existsSync(join(primary.pgdata, 'pg_wal', oldest!.name))).toBe(false);
    const gone = walSegmentStart(parseWalSegmentName(oldest!.name, SEG).segno, SEG);
    const e2 = await streamWal({ connection: settingsOf(primary), startLsn: gone, timeline: 1, targetDir: newDir() }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(PgbaculaError);
    expect((e2 as PgbaculaError).code).toBe('WAL_GAP');
    expect((e2 as PgbaculaError).message).toContain('has already been removed');
    expect((e2 as PgbaculaError).hint).toContain('replication slot');
  });
});
