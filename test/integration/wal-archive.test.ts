/**
 * wal-push as the archive_command of real servers (PostgreSQL 10–18), and the archive it
 * builds: byte-identical segments, idempotent re-push, refusals (different bytes under an
 * existing name, another system's WAL), history files before their timeline after a promotion,
 * and the recoverable window — the last commit time read from the archived WAL to the
 * microsecond, and a deleted segment reported as a gap with its name. The primaries archive with
 * the native helper pgbacula-wal-push (a real archiving round per major); the refusals run against
 * both implementations; the promoted standby archives with wal-push on even majors and with the
 * native helper on odd ones.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkWalArchive } from '../../src/archive/archive-check.js';
import { parseLsn } from '../../src/wal/lsn.js';
import { archiveCommandLine, nativeWalPushPath, restoreCommandLine } from '../../src/archive/archive-command.js';
import { listWalArchive } from '../../src/archive/listing.js';
import { isoToMicros } from '../../src/archive/window.js';
import { describeWindowReport, windowReport } from '../../src/archive/window-report.js';
import { startCluster, startStandby, type Cluster } from '../harness/cluster.js';
import { pgBin, TEST_MAJORS } from '../harness/pg-binaries.js';
import { commitRows } from '../harness/workload.js';
import { serverUser } from '../harness/os-user.js';
import { runNativeWalPush } from '../harness/wal-pushers.js';
import { baseBackupWithoutWal, currentLsn, initdbForeign, ownedDir, restoreWithWalFetch, runAsServerUser, switchedSegment, until } from './wal-helpers.js';

/** The two archive_command implementations, run as the server's OS user in a working directory. */
const PUSH_AS_SERVER = [
  { name: 'pgbacula wal-push', run: (args: readonly string[], cwd: string) => runAsServerUser(['wal-push', ...args], cwd) },
  { name: 'pgbacula-wal-push (native)', run: (args: readonly string[], cwd: string) => runNativeWalPush(args, cwd, { uid: serverUser().uid, gid: serverUser().gid }) },
] as const;

describe.each(TEST_MAJORS)('wal-push as archive_command of PostgreSQL %i', (major) => {
  let primary: Cluster;
  let standby: Cluster | undefined;
  let restored: Cluster | undefined;
  let repo: string;
  let wal: string;
  let systemId: string;
  const extra: string[] = [];

  beforeAll(async () => {
    repo = ownedDir(`pg${major}-archive-repo`);
    wal = join(repo, 'wal');
    primary = await startCluster({
      major,
      name: `pg${major}-archive`,
      // No autovacuum: the last commit in the WAL is the test's own.
      settings: { archive_mode: 'on', archive_command: archiveCommandLine({ repo, native: true }), autovacuum: false },
    });
    // Keep pg_wal's segments for byte comparisons, whatever checkpoints do.
    await primary.sql("SELECT pg_create_physical_replication_slot('keep_all', true)");
    const [row] = await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    systemId = row!.id;
  });
  afterAll(async () => {
    await restored?.destroy();
    await standby?.destroy();
    await primary?.destroy();
    for (const d of [repo, ...extra]) if (d) rmSync(d, { recursive: true, force: true });
  });

  const archived = (tli: string, name: string) => join(wal, systemId, tli, name);
  async function waitArchived(name: string, c: Cluster = primary): Promise<void> {
    await until(`${name} is archived`, async () => {
      const [s] = await c.sql<{ failed: string; last: string | null }>('SELECT failed_count::text AS failed, last_archived_wal AS last FROM pg_stat_archiver');
      if (s!.failed !== '0') throw new Error(`archive_command failed on PostgreSQL ${major}:\n${c.log().slice(-3000)}`);
      return existsSync(archived(name.slice(0, 8), name));
    });
  }

  it('archives every segment byte for byte, silently, and the archive records the system (the native helper as archive_command)', async () => {
    expect(nativeWalPushPath()).toBeDefined();
    const [cmd] = await primary.sql<{ c: string }>("SELECT current_setting('archive_command') AS c");
    expect(cmd!.c).toContain('pgbacula-wal-push --repo ');
    const names: string[] = [];
    for (let i = 0; i < 3; i++) names.push(await switchedSegment(primary));
    await waitArchived(names.at(-1)!);
    for (const n of names) {
      expect(readFileSync(archived('00000001', n)).equals(readFileSync(join(primary.pgdata, 'pg_wal', n))), n).toBe(true);
      // Created under the server's umask (0077 for a 0700 data directory): never group-writable or world-readable.
      expect(statSync(archived('00000001', n)).mode & 0o027).toBe(0);
    }
    const meta = JSON.parse(readFileSync(join(wal, systemId, 'archive.json'), 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ systemIdentifier: systemId, walSegmentSize: 16 * 1024 * 1024, pgMajor: major });
    expect(existsSync(join(repo, 'pgbacula-repo.json'))).toBe(true);
    // Nothing in the server log from a successful archive_command.
    expect(primary.log()).not.toMatch(/pgbacula: |archive command failed/);
  });

  it.each(PUSH_AS_SERVER)('$name: an identical re-push exits 0; different bytes under an archived name are refused and the archive is untouched', async ({ run }) => {
    const name = await switchedSegment(primary);
    await waitArchived(name);
    const again = await run(['--repo', repo, `pg_wal/${name}`], primary.pgdata);
    expect(again).toMatchObject({ code: 0, stdout: '', stderr: '' });

    const altered = readFileSync(join(primary.pgdata, 'pg_wal', name));
    altered[4096] = altered[4096]! ^ 0x5a; // inside the first page's records, headers intact
    const dir = ownedDir(`pg${major}-altered`);
    extra.push(dir);
    writeFileSync(join(dir, name), altered);
    const r = await run(['--repo', repo, join(dir, name)], primary.pgdata);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`pgbacula: error: ${name} is already archived in ${join(wal, systemId, '00000001')} with different content`);
    expect(r.stderr).toMatch(/\nhint: Another server with the same system identifier/);
    expect(readFileSync(archived('00000001', name)).equals(readFileSync(join(primary.pgdata, 'pg_wal', name)))).toBe(true);
  });

  let foreign: Awaited<ReturnType<typeof initdbForeign>> | undefined;
  it.each(PUSH_AS_SERVER)('$name: refuses a segment of another database system, from its data directory and in the repository', async ({ run }) => {
    foreign ??= await initdbForeign(major);
    extra.push(foreign.dir);
    expect(foreign.systemId).not.toBe(systemId);
    const name = foreign.segment.split('/').at(-1)!;
    // As archive_command: the working directory is the pushing server's data directory.
    const r = await run(['--repo', repo, foreign.segment], primary.pgdata);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${name} belongs to database system ${foreign.systemId}, not to system ${systemId} of the data directory that archives it`);
    // Run from elsewhere: the repository holds one system.
    const r2 = await run(['--repo', repo, foreign.segment], '/');
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain(`holds WAL of system ${systemId}`);
    expect(existsSync(join(wal, foreign.systemId))).toBe(false);
  });

  it('the window: earliest = end of a base backup, latest = the last archived commit to the microsecond; a deleted segment is a named gap', async () => {
    // A base backup point taken with the server's own API, wait_for_archive on.
    const fn = major >= 15 ? { start: "pg_backup_start('window', true)", stop: 'pg_backup_stop(true)' } : { start: "pg_start_backup('window', true, false)", stop: 'pg_stop_backup(false, true)' };
    const c = await primary.client();
    let backup;
    try {
      const start = (await c.query<{ l: string }>(`SELECT ${fn.start}::text AS l`)).rows[0]!.l;
      await c.query("CREATE TABLE IF NOT EXISTS during_backup AS SELECT 1 AS x");
      const stop = (await c.query<{ l: string }>(`SELECT lsn::text AS l FROM ${fn.stop}`)).rows[0]!.l;
      backup = { id: 'api-backup', startLsn: parseLsn(start), stopLsn: parseLsn(stop), startTimeline: 1, stopTimeline: 1, stopTime: new Date().toISOString() };
    } finally {
      await c.end();
    }
    const rows = await commitRows(primary, 3, 20);
    const s1 = await switchedSegment(primary);
    const moreRows = await commitRows(primary, 2, 20);
    const s2 = await switchedSegment(primary);
    const s3 = await switchedSegment(primary);
    // The newest commit of the server (track_commit_timestamp): switchedSegment's own INSERT.
    const [lastCommit] = await primary.sql<{ ts: string }>('SELECT (pg_last_committed_xact()).timestamp::text AS ts');
    await waitArchived(s3);

    const full = await windowReport({ root: wal, systemId, backups: [backup] });
    expect(full.window.gaps).toEqual([]);
    expect(full.window.earliest).toMatchObject({ backupId: 'api-backup', lsn: backup.stopLsn });
    expect(full.window.latest!.segment).toBe(s3);
    // The last commit archived, read from the WAL records, is the server's last commit to the microsecond.
    expect(full.window.latest!.time).toBeDefined();
    expect(isoToMicros(full.window.latest!.time!)).toBe(isoToMicros(lastCommit!.ts));
    expect(isoToMicros(full.window.latest!.time!) > isoToMicros(moreRows.at(-1)!.commitTimeText)).toBe(true);
    expect(rows.length).toBe(3);

    // Lose a segment in the middle: recovery from the backup stops before it, by name.
    rmSync(archived('00000001', s2));
    const cut = await windowReport({ root: wal, systemId, backups: [backup] });
    expect(cut.window.gaps.map((g) => g.names)).toEqual([[s2]]);
    expect(cut.window.ranges[0]).toMatchObject({ endsAtGap: s2, lastSegment: s1 });
    const text = describeWindowReport(cut).join('\n');
    expect(text).toContain(`WAL GAP: ${s2} missing`);
    expect(text).toContain(`restores from backup api-backup stop at`);
    // An identical re-push closes the gap again.
    expect((await runAsServerUser(['wal-push', '--repo', repo, `pg_wal/${s2}`], primary.pgdata)).code).toBe(0);
    expect((await windowReport({ root: wal, systemId, backups: [backup] })).window.gaps).toEqual([]);
  });

  it('a promoted standby archives its .history first, then timeline 2 and the old timeline\'s .partial; a restore through wal-fetch reaches a second on timeline 2', async () => {
    const base = await baseBackupWithoutWal(primary, `pg${major}-archive-base`);
    extra.push(join(base, '..'));
    standby = await startStandby(primary); // inherits archive_mode / archive_command (the native helper)
    const sb = standby;
    if (major % 2 === 0) {
      // Even majors: the promotion (history first, timeline 2, the old timeline's .partial) through wal-push.
      await sb.sql(`ALTER SYSTEM SET archive_command = '${archiveCommandLine({ repo }).replace(/'/g, "''")}'`);
      await sb.sql('SELECT pg_reload_conf()');
    }
    await commitRows(primary, 2, 10);
    const lsn = await currentLsn(primary);
    await until('the standby replays the primary', async () => {
      const [r] = await sb.sql<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn AS ok`);
      return r!.ok;
    });
    await sb.runAsServerUser(pgBin(major, 'pg_ctl'), ['-D', sb.pgdata, 'promote', '-w']);
    await until('the standby is promoted', async () => (await sb.sql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]!.r === false);
    const onTwo = await commitRows(sb, 4, 1100);
    const t2seg = await switchedSegment(sb);
    expect(t2seg.slice(0, 8)).toBe('00000002');
    await waitArchived(t2seg, sb);
    await until('00000002.history is archived', () => existsSync(join(wal, systemId, '00000002.history')));
    // The old primary goes on writing timeline 1: another branch in the same archive.
    await waitArchived(await switchedSegment(primary));

    // The server archived the history file itself, before any timeline-2 segment: wal-push never
    // had to take it from pg_wal (it logs when it does).
    expect(sb.log()).not.toMatch(/from .*pg_wal first|archive command failed/);
    const hist = statSync(join(wal, systemId, '00000002.history'));
    for (const f of readdirSync(join(wal, systemId, '00000002'))) {
      expect(hist.mtimeMs <= statSync(join(wal, systemId, '00000002', f)).mtimeMs, f).toBe(true);
    }
    const listing = await listWalArchive(wal, systemId);
    // PostgreSQL 10–18 all archive the old timeline's last segment as .partial at promotion.
    expect(listing.partials.map((p) => p.name.slice(0, 8))).toContain('00000001');
    const report = await windowReport({ root: wal, systemId });
    expect(report.window.timeline).toBe(2);
    expect(report.window.offLineage.segments).toBeGreaterThan(0);
    expect(report.window.gaps).toEqual([]);
    // Real WAL of this major — switch padding, timeline 2's first segment (a copy of timeline 1 up to
    // the switch point, then the new records), the old timeline's .partial, a branch — holds up record by record.
    expect(report.damaged).toEqual([]);
    const check = await checkWalArchive(wal, systemId);
    expect(check.damaged).toEqual([]);
    expect(check.seams).toBeGreaterThan(0);

    // Restore the base backup (taken on timeline 1, no WAL of its own) to a second on timeline 2.
    const target = onTwo[1]!;
    const next = onTwo[2]!;
    // recovery_target_time needs a numeric zone (docs/postgresql-facts.md, "Recovery settings"): `Z` is not understood while the configuration is read.
    const targetTime = new Date((target.commitTime.getTime() + next.commitTime.getTime()) / 2).toISOString().replace('T', ' ').replace('Z', '+00');
    restored = await restoreWithWalFetch(major, base, restoreCommandLine({ repo }), { time: targetTime });
    const ids = (await restored.sql<{ id: string }>('SELECT id::text FROM workload_rows ORDER BY id')).map((r) => Number(r.id));
    const expected = (await sb.sql<{ id: string }>(`SELECT id::text FROM workload_rows WHERE pg_xact_commit_timestamp(xmin) <= '${targetTime}' ORDER BY id`)).map((r) => Number(r.id));
    expect(ids).toEqual(expected);
    expect(ids).toContain(target.id);
    expect(ids).not.toContain(next.id);
    expect(restored.log()).toContain('restored log file "00000002.history" from archive');
  });
});
