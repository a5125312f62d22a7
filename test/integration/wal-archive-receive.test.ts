/**
 * wal-receive against real servers (PostgreSQL 10–18), run as the built CLI:
 * - killed (SIGKILL) mid-segment and restarted, then the server restarted under it: every
 *   segment is archived, byte for byte, no gap — the slot held what the receiver did not have;
 * - synchronous mode: the server lists it in synchronous_standby_names, commits return at once
 *   and the committed WAL is already in the receiver's fsynced .partial;
 * - streaming from a standby that is then promoted: the receiver follows it to timeline 2, the
 *   00000002.history file is archived before any timeline-2 segment, the old timeline's last
 *   segment is kept as .partial, and a base backup restored through wal-fetch reaches a chosen
 *   second on timeline 2 with exactly the rows committed by then.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkWalArchive } from '../../src/archive/archive-check.js';
import { formatLsn, parseLsn } from '../../src/wal/lsn.js';
import { scanSegmentRecords } from '../../src/wal/record-scan.js';
import { parseWalSegmentName, walSegmentNumber, walSegmentOffset, walSegmentStart, walSegmentStartOf } from '../../src/wal/segment.js';
import { listWalArchive } from '../../src/archive/listing.js';
import { restoreCommandLine } from '../../src/archive/archive-command.js';
import { windowReport } from '../../src/archive/window-report.js';
import { startCluster, startStandby, type Cluster } from '../harness/cluster.js';
import { pgBin, TEST_MAJORS } from '../harness/pg-binaries.js';
import { commitRows } from '../harness/workload.js';
import { baseBackupWithoutWal, CliProcess, connFlags, currentLsn, killReceivers, ownedDir, restoreWithWalFetch, runAsServerUser, SEG, switchedSegment, until } from './wal-helpers.js';

describe.each(TEST_MAJORS)('wal-receive from PostgreSQL %i', (major) => {
  let primary: Cluster;
  let standby: Cluster | undefined;
  let restored: Cluster | undefined;
  let systemId: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    primary = await startCluster({ major, name: `pg${major}-receive`, settings: { autovacuum: false, log_replication_commands: true } });
    await primary.sql("SELECT pg_create_physical_replication_slot('keep_all', true)");
    systemId = (await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
  });
  afterAll(async () => {
    await killReceivers();
    await restored?.destroy();
    await standby?.destroy();
    await primary?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const repoDir = (name: string): string => {
    const d = ownedDir(`pg${major}-${name}`);
    dirs.push(d);
    return d;
  };
  const receiverFlush = async (app = 'pgbacula_wal_receive'): Promise<bigint | undefined> => {
    const [r] = await primary.sql<{ f: string | null }>(`SELECT flush_lsn::text AS f FROM pg_stat_replication WHERE application_name = '${app}'`);
    return r?.f ? parseLsn(r.f) : undefined;
  };

  it('killed mid-segment, restarted, and the server restarted under it: nothing is lost', async () => {
    const repo = repoDir('receive-repo');
    const wal = join(repo, 'wal');
    const args = ['wal-receive', '--repo', repo, ...connFlags(primary), '--status-interval', '1'];
    const first = new CliProcess([...args, '--create-slot']);
    const started = await first.waitFor(/streaming WAL of system (\d+) from .*: timeline 00000001 from (\S+) \(slot pgbacula\)/);
    expect(started[1]).toBe(systemId);
    expect(first.stderr).toContain('created physical replication slot "pgbacula"');
    const s1 = await switchedSegment(primary);
    const s2 = await switchedSegment(primary);
    await first.waitFor(new RegExp(`archived ${s2}\\b`));

    // WAL in the middle of a segment, fsynced by the receiver (flush reported), then SIGKILL.
    await primary.sql("INSERT INTO walfill SELECT g, repeat('m', 200) FROM generate_series(1, 3000) g");
    const mid = parseLsn(await currentLsn(primary));
    expect(walSegmentOffset(mid, SEG)).toBeGreaterThan(0);
    await until('the receiver has fsynced WAL to the middle of a segment', async () => ((await receiverFlush()) ?? 0n) >= mid);
    const killed = await first.kill();
    expect(killed.signal).toBe('SIGKILL');
    const midSeg = (await primary.sql<{ n: string }>(`SELECT pg_walfile_name('${formatLsn(mid)}') AS n`))[0]!.n;
    const rdir = join(wal, systemId, '.receive');
    expect(readdirSync(rdir)).toContain(`${midSeg}.partial`);
    expect(existsSync(join(wal, systemId, '00000001', midSeg))).toBe(false);

    // WAL written while no receiver runs: the slot keeps it on the server.
    const down1 = await switchedSegment(primary);
    const down2 = await switchedSegment(primary);
    expect(down1).toBe(midSeg);

    const second = new CliProcess(args);
    // It restarts at the start of the segment it had only partly (pg_receivewal's rule).
    await second.waitFor(new RegExp(`timeline 00000001 from ${formatLsn(walSegmentStartOf(mid, SEG)).replace('/', '\\/')} \\(slot pgbacula\\)`));
    // One receiver per archive.
    const dup = await runAsServerUser(args);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/another wal-receive \(process \d+\) already archives into/);
    await second.waitFor(new RegExp(`archived ${down2}\\b`));

    // The server restarts: the receiver reconnects with backoff and goes on.
    await primary.stop('fast');
    await primary.start();
    const after = await switchedSegment(primary);
    await second.waitFor(new RegExp(`archived ${after}\\b`), 90_000);
    expect(second.stderr).toMatch(/reconnecting in \d/);
    const end = await second.stop();
    expect(end.code).toBe(0);
    expect(end.stdout).toMatch(/^wal-receive stopped: \d+ segment\(s\) archived.*reconnect/);

    // Every segment from the first archived to the last is there, equal to the server's.
    const listing = await listWalArchive(wal, systemId);
    const segnos = listing.segments.map((s) => s.segno);
    const firstSeg = segnos[0]!;
    const lastSeg = parseWalSegmentName(after, SEG).segno;
    expect(listing.segments.at(-1)!.name).toBe(after);
    expect(segnos).toEqual(Array.from({ length: Number(lastSeg - firstSeg) + 1 }, (_, i) => firstSeg + BigInt(i)));
    for (const name of [s1, s2, midSeg, down2, after]) expect(listing.segments.map((s) => s.name)).toContain(name);
    for (const s of listing.segments) {
      expect(readFileSync(s.path).equals(readFileSync(join(primary.pgdata, 'pg_wal', s.name))), s.name).toBe(true);
    }
    expect(listing.receivedUnpublished).toEqual([]);
    expect((await windowReport({ root: wal, systemId })).window.gaps).toEqual([]);
    expect(readdirSync(join(wal, systemId), { recursive: true }).filter((n) => String(n).includes('.tmp-'))).toEqual([]);
    // Streamed WAL across a receiver kill and a server restart holds up record by record (no false "damaged").
    const check = await checkWalArchive(wal, systemId);
    expect(check.damaged).toEqual([]);
    expect(check.seams).toBeGreaterThan(0);
  });

  it('synchronous mode: the server waits for it, commits return at once, the WAL is already fsynced', async () => {
    const repo = repoDir('sync-repo');
    // A 10 s status interval: without synchronous mode every commit would wait for it.
    const rcv = new CliProcess(['wal-receive', '--repo', repo, ...connFlags(primary), '--slot-name', 'pgbacula_sync', '--create-slot', '--synchronous-receive', '--status-interval', '10']);
    try {
      await rcv.waitFor(/streaming WAL .*, synchronous/);
      await primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'pgbacula_wal_receive'");
      await primary.sql('SELECT pg_reload_conf()');
      await until('the receiver is the synchronous standby', async () => {
        const [r] = await primary.sql<{ s: string }>("SELECT sync_state AS s FROM pg_stat_replication WHERE application_name = 'pgbacula_wal_receive'");
        return r?.s === 'sync';
      });
      const t0 = Date.now();
      const rows = await commitRows(primary, 5);
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeLessThan(4000);
      // The last commit record is in the receiver's .partial, on disk, before the commit returned.
      const last = rows.at(-1)!;
      const lsn = parseLsn(last.lsnAfter);
      const seg = (await primary.sql<{ n: string }>(`SELECT pg_walfile_name('${last.lsnAfter}') AS n`))[0]!.n;
      const partial = join(repo, 'wal', systemId, '.receive', `${seg}.partial`);
      const complete = join(repo, 'wal', systemId, '00000001', seg);
      const bytes = readFileSync(existsSync(partial) ? partial : complete);
      const scan = scanSegmentRecords(bytes, { segmentStart: walSegmentStart(walSegmentNumber(lsn, SEG), SEG), segmentSize: SEG });
      expect(scan.lastXact?.xid).toBe(Number(last.xid));
    } finally {
      await primary.sql('ALTER SYSTEM RESET synchronous_standby_names');
      await primary.sql('SELECT pg_reload_conf()');
      const r = await rcv.stop();
      expect(r.code).toBe(0);
      await primary.sql("SELECT pg_drop_replication_slot('pgbacula_sync')");
    }
  });

  it('follows a promoted standby to timeline 2, archiving 00000002.history first; a restore reaches a second on timeline 2', async () => {
    standby = await startStandby(primary);
    const sb = standby;
    await until('the standby streams', async () => (await primary.sql("SELECT 1 FROM pg_stat_replication WHERE application_name = 'standby' AND state = 'streaming'")).length === 1);
    const repo = repoDir('tli-repo');
    const wal = join(repo, 'wal');
    const rcv = new CliProcess(['wal-receive', '--repo', repo, ...connFlags(sb), '--create-slot', '--status-interval', '1']);
    await rcv.waitFor(/streaming WAL of system \d+ from .*: timeline 00000001 from/);

    const base = await baseBackupWithoutWal(primary, `pg${major}-receive-base`);
    dirs.push(join(base, '..'));
    await switchedSegment(primary);
    await commitRows(primary, 2, 10); // the switch point lands mid-segment
    const lsn = await currentLsn(primary);
    await until('the standby replays the primary', async () => (await sb.sql<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn AS ok`))[0]!.ok);
    await sb.runAsServerUser(pgBin(major, 'pg_ctl'), ['-D', sb.pgdata, 'promote', '-w']);
    const sw = await rcv.waitFor(/timeline 00000001 ended at (\S+); following timeline 00000002/);
    await rcv.waitFor(/streaming WAL of system \d+ from .*: timeline 00000002 from/);
    const rows = await commitRows(sb, 4, 1100);
    const t2seg = await switchedSegment(sb);
    expect(t2seg.slice(0, 8)).toBe('00000002');
    await rcv.waitFor(new RegExp(`archived ${t2seg}\\b`));
    const end = await rcv.stop();
    expect(end.code).toBe(0);
    expect(end.stdout).toMatch(/00000002\.history, 1 timeline switch/);

    // The history file was archived before any WAL of its timeline.
    const histAt = end.stderr.indexOf('archived 00000002.history');
    const firstT2 = end.stderr.search(/archived 00000002[0-9A-F]{16}\b/);
    expect(histAt).toBeGreaterThan(0);
    expect(firstT2).toBeGreaterThan(histAt);
    const switchLsn = parseLsn(sw[1]!);
    const listing = await listWalArchive(wal, systemId);
    // The old timeline's last segment stays .partial; the switch segment is archived under timeline 2.
    expect(walSegmentOffset(switchLsn, SEG)).toBeGreaterThan(0);
    const switchSeg = walSegmentNumber(switchLsn, SEG);
    expect(listing.partials.map((p) => [p.timeline, p.segno])).toContainEqual([1, switchSeg]);
    expect(listing.segments.some((s) => s.timeline === 2 && s.segno === switchSeg)).toBe(true);
    expect(readFileSync(join(wal, systemId, '00000002.history'), 'utf8')).toContain(`1\t${formatLsn(switchLsn)}`);
    const report = await windowReport({ root: wal, systemId });
    expect(report.window.timeline).toBe(2);
    expect(report.window.gaps).toEqual([]);
    // Timeline 2's first segment (the old timeline's WAL up to the switch point, then the new one's) and the old .partial hold up.
    expect(report.damaged).toEqual([]);
    expect((await checkWalArchive(wal, systemId)).damaged).toEqual([]);
    for (const s of listing.segments.filter((x) => x.timeline === 2)) {
      expect(readFileSync(s.path).equals(readFileSync(join(sb.pgdata, 'pg_wal', s.name))), s.name).toBe(true);
    }

    // Restore the base backup (no WAL of its own) to a second on timeline 2, through wal-fetch.
    const targetTime = new Date((rows[1]!.commitTime.getTime() + rows[2]!.commitTime.getTime()) / 2).toISOString().replace('T', ' ').replace('Z', '+00');
    restored = await restoreWithWalFetch(major, base, restoreCommandLine({ repo }), { time: targetTime });
    const ids = (await restored.sql<{ id: string }>('SELECT id::text FROM workload_rows ORDER BY id')).map((r) => Number(r.id));
    const expected = (await sb.sql<{ id: string }>(`SELECT id::text FROM workload_rows WHERE pg_xact_commit_timestamp(xmin) <= '${targetTime}' ORDER BY id`)).map((r) => Number(r.id));
    expect(ids).toEqual(expected);
    expect(ids).toContain(rows[1]!.id);
    expect(ids).not.toContain(rows[2]!.id);
    expect(restored.log()).toContain('restored log file "00000002.history" from archive');
    expect(restored.log()).not.toMatch(/pgbacula: error/);
  });
});
