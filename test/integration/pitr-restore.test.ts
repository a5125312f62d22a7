/**
 * Point-in-time recovery, standalone: a full backup taken while a workload writes, WAL archived
 * by wal-push (archive_command) into the same repository, then restores to a target between two
 * known commits — by time, LSN, xid and restore point — each giving exactly the rows committed up
 * to it; and the three recovery_target_actions behave as asked.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster, stopServerIn } from '../harness/cluster.js';
import { embeddedPgDir, PG18_CLIENT_BIN, TEST_MAJORS } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { amcheckAllIndexes, createStaticTables, digestAt, queryAt } from '../harness/verify-cluster.js';
import { commitRows, type CommittedRow } from '../harness/workload.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, until } from './wal-helpers.js';

/** A time strictly between two commits, as ISO-8601 with zone. */
function between(a: CommittedRow, b: CommittedRow): string {
  return new Date((a.commitTime.getTime() + b.commitTime.getTime()) / 2).toISOString();
}

describe.each(TEST_MAJORS)('point-in-time restore of PostgreSQL %i', (major) => {
  let c: Cluster;
  let repo: string;
  let rows: CommittedRow[];
  const targets: string[] = [];
  const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };

  const restore = async (name: string, extra: string[]) => {
    const target = join(testRoot(), `pitr-${major}-${name}`);
    targets.push(target);
    registerForCleanup({ pgdata: target, dir: target });
    const port = await freePort();
    const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(major), 'bin'), ...extra], quiet);
    return { ...r, port, target, at: { host: c.socketDir, port } };
  };
  const ids = async (at: { host: string; port: number }) =>
    (await queryAt<{ id: string }>(at, 'SELECT id::text FROM workload_rows ORDER BY id')).map((r) => Number(r.id));

  beforeAll(async () => {
    repo = ownedDir(`pitr-repo-${major}`);
    c = await startCluster({ major, name: `pitr${major}`, settings: { archive_mode: 'on', archive_command: archiveCommandLine({ repo }) } });
    await createStaticTables(c, 2000);
    await commitRows(c, 3);
    const b = await runCli(['backup', '--repo', repo, '--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'], quiet);
    if (b.code !== 0) throw new Error(`backup failed: ${b.stderr}`);
    // Commits after the backup, more than a second apart so every target second is unambiguous.
    rows = await commitRows(c, 6, 1100);
    await c.sql("SELECT pg_create_restore_point('before_row_5')");
    rows.push(...(await commitRows(c, 2, 200)));
    const [{ name }] = (await c.sql<{ name: string }>(`SELECT pg_walfile_name(pg_current_wal_lsn()) AS name`)) as [{ name: string }];
    await c.sql('SELECT pg_switch_wal()');
    const seg = join(repo, 'wal');
    await until(`segment ${name} is archived`, () => existsSync(seg) && execFileSync('find', [seg, '-name', name], { encoding: 'utf8' }).trim() !== '', 60_000);
  });
  afterAll(async () => {
    for (const t of targets) stopServerIn(major, t);
    await c?.destroy();
  });

  it('target_time between two commits gives exactly the rows committed up to it', async () => {
    const k = 3; // rows[0..3] committed before the target, rows[4] after
    const r = await restore('time', ['--target-time', between(rows[k]!, rows[k + 1]!)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/RESTORE PHASE 4\/6 start: .*recovery stopping before commit of transaction/);
    expect(r.stderr).toContain('promoted, accepting connections');
    const got = await ids(r.at);
    expect(got.at(-1)).toBe(rows[k]!.id);
    expect(got).not.toContain(rows[k + 1]!.id);
    expect(await amcheckAllIndexes(r.at)).toBeGreaterThan(2);
    // The restored copy does not archive into the source's archive (archive_after_restore=false).
    const [am] = await queryAt<{ m: string }>(r.at, "SELECT current_setting('archive_mode') AS m");
    expect(am!.m).toBe('off');
    expect(await digestAt(r.at, 'static_a')).toBe(await digestAt({ host: c.socketDir, port: c.port }, 'static_a'));
  });

  it('target_lsn, target_xid and target_name stop where asked', async () => {
    const byLsn = await restore('lsn', ['--target-lsn', rows[2]!.lsnAfter]);
    expect(byLsn.code, byLsn.stderr).toBe(0);
    expect((await ids(byLsn.at)).at(-1)).toBe(rows[2]!.id);
    const byXid = await restore('xid', ['--target-xid', rows[1]!.xid]);
    expect(byXid.code, byXid.stderr).toBe(0);
    expect(byXid.stderr).toContain(`recovery stopping after commit of transaction ${rows[1]!.xid}`);
    expect((await ids(byXid.at)).at(-1)).toBe(rows[1]!.id);
    const byName = await restore('name', ['--target-name', 'before_row_5']);
    expect(byName.code, byName.stderr).toBe(0);
    expect(byName.stderr).toContain('recovery stopping at restore point "before_row_5"');
    expect((await ids(byName.at)).at(-1)).toBe(rows[5]!.id);
  });

  it('pause stops read-only at the target; shutdown stops the server there', async () => {
    const paused = await restore('pause', ['--target-time', between(rows[0]!, rows[1]!), '--recovery-target-action', 'pause']);
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stderr).toContain('paused at the target');
    const [state] = await queryAt<{ rec: boolean }>(paused.at, 'SELECT pg_is_in_recovery() AS rec');
    expect(state!.rec).toBe(true);
    expect((await ids(paused.at)).at(-1)).toBe(rows[0]!.id);

    const down = await restore('shutdown', ['--target-time', between(rows[0]!, rows[1]!), '--recovery-target-action', 'shutdown']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stderr).toContain('shut down at the target as asked');
    expect(existsSync(join(down.target, 'postmaster.pid'))).toBe(false);
  });
});

describe('a missing WAL segment (PostgreSQL 15)', () => {
  let c: Cluster;
  let repo: string;
  beforeAll(async () => {
    repo = ownedDir('gap-repo');
    c = await startCluster({ major: 15, name: 'gap', settings: { archive_mode: 'on', archive_command: archiveCommandLine({ repo }) } });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('is reported as a gap with its name by info before any restore, and by a restore whose target lies past it', async () => {
    const b = await runCli(['backup', '--repo', repo, '--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(b.code, b.stderr).toBe(0);
    const switched: string[] = [];
    let late: CommittedRow[] = [];
    for (let i = 0; i < 4; i++) {
      late = await commitRows(c, 2, 300);
      const [{ seg }] = (await c.sql<{ seg: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS seg')) as [{ seg: string }];
      switched.push(seg);
    }
    const last = switched.at(-1)!;
    await until(`${last} is archived`, () => execFileSync('find', [join(repo, 'wal'), '-name', last], { encoding: 'utf8' }).trim() !== '', 60_000);
    const missing = switched[1]!;
    const path = execFileSync('find', [join(repo, 'wal'), '-name', missing], { encoding: 'utf8' }).trim();
    expect(path).not.toBe('');
    execFileSync('rm', [path]);

    const info = await runCli(['info', '--repo', repo, '--json']);
    expect(info.code, info.stderr).toBe(0);
    const windows = JSON.parse(info.stdout).windows as { gaps: { names: string[] }[] }[];
    expect(windows.flatMap((w) => w.gaps.flatMap((g) => g.names))).toContain(missing);
    const text = await runCli(['info', '--repo', repo]);
    expect(text.stdout).toContain(missing);

    const target = join(testRoot(), 'gap-restore');
    registerForCleanup({ pgdata: target, dir: target });
    const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--target-time', late.at(-1)!.commitTime.toISOString(), '--pg-bin-dir', join(embeddedPgDir(15), 'bin')], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('lies past a WAL gap');
    expect(r.stderr).toContain(missing);
    // Refused before anything was written.
    expect(existsSync(target)).toBe(false);
  });
});

describe('restore as a standby (PostgreSQL 17)', () => {
  let c: Cluster;
  const target = join(testRoot(), 'as-standby');
  beforeAll(async () => {
    c = await startCluster({ major: 17, name: 'asstandby' });
  });
  afterAll(async () => {
    stopServerIn(17, target);
    await c?.destroy();
  });

  it('writes standby.signal and primary_conninfo, and the restored server follows the primary', async () => {
    const repo = ownedDir('standby-repo');
    await commitRows(c, 2);
    const b = await runCli(['backup', '--repo', repo, '--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(b.code, b.stderr).toBe(0);
    registerForCleanup({ pgdata: target, dir: target });
    const port = await freePort();
    const conninfo = `host=${c.socketDir} port=${c.port} user=postgres application_name=restored_standby`;
    const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(17), 'bin'), '--restore-as-standby', '--primary-conninfo', conninfo], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('running as a standby (read-only)');
    expect(existsSync(join(target, 'standby.signal'))).toBe(true);
    const at = { host: c.socketDir, port };
    const [s] = await queryAt<{ rec: boolean }>(at, 'SELECT pg_is_in_recovery() AS rec');
    expect(s!.rec).toBe(true);
    const more = await commitRows(c, 1);
    await until('the standby has replayed the new row', async () => (await queryAt<{ n: string }>(at, `SELECT count(*)::text AS n FROM workload_rows WHERE id = ${more[0]!.id}`))[0]!.n === '1', 30_000);
    const [rep] = await c.sql<{ n: string }>("SELECT count(*)::text AS n FROM pg_stat_replication WHERE application_name = 'restored_standby'");
    expect(rep!.n).toBe('1');
  });
});

describe("a cluster whose pg_hba.conf lets local connections in by peer only (Debian's default), restored by root (PostgreSQL 16)", () => {
  let c: Cluster;
  const target = join(testRoot(), 'peer-only');
  beforeAll(async () => {
    c = await startCluster({ major: 16, name: 'peeronly' });
  });
  afterAll(async () => {
    stopServerIn(16, target);
    await c?.destroy();
  });

  it('recovers, resets its recovery settings and answers SELECT 1 through the data directory owner', async () => {
    const repo = ownedDir('peer-repo');
    const rows = await commitRows(c, 3);
    // Written, not reloaded: the source keeps letting the harness in, the backup carries the file.
    writeFileSync(join(c.pgdata, 'pg_hba.conf'), 'local all all peer\n');
    const b = await runCli(['backup', '--repo', repo, '--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(b.code, b.stderr).toBe(0);
    registerForCleanup({ pgdata: target, dir: target });
    const port = await freePort();
    const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(16), 'bin')], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/RESTORE PHASE 6\/6 verify: SELECT 1 answered/);
    expect(r.stderr).not.toMatch(/could not reset the recovery settings|could not run/);
    expect(readFileSync(join(target, 'pg_hba.conf'), 'utf8')).toBe('local all all peer\n');
    // The restored server is as strict as its source: root is turned away, its owner is let in.
    await expect(queryAt({ host: c.socketDir, port }, 'SELECT 1')).rejects.toThrow(/peer authentication failed/i);
    const out = await c.runAsServerUser(join(PG18_CLIENT_BIN, 'psql'), ['-X', '-At', '-h', c.socketDir, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', 'SELECT count(*) FROM workload_rows; SELECT count(*) FROM pg_settings WHERE name = \'restore_command\' AND setting <> \'\'']);
    expect(out.trim().split('\n')).toEqual([String(rows.length), '0']);
  });
});
