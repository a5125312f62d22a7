/**
 * Point-in-time recovery, standalone: a full backup taken while a workload writes, WAL archived
 * by wal-push (archive_command) into the same repository, then restores to a target between two
 * known commits — by time, LSN, xid and restore point — each giving exactly the rows committed up
 * to it; and the three recovery_target_actions behave as asked.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { embeddedPgDir, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCli } from '../harness/run-cli.js';
import { amcheckAllIndexes, createStaticTables, digestAt, queryAt } from '../harness/verify-cluster.js';
import { commitRows, type CommittedRow } from '../harness/workload.js';
import { archiveCommandLine } from '../../src/wal/spool.js';
import { ownedDir, until } from './wal-helpers.js';

function stopServer(major: number, pgdata: string): void {
  const u = serverUser();
  try {
    execFileSync(join(embeddedPgDir(major), 'bin', 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid, stdio: 'ignore' });
  } catch {
    // not running
  }
}

/** A time strictly between two commits, as ISO-8601 with zone. */
function between(a: CommittedRow, b: CommittedRow): string {
  return new Date((a.commitTime.getTime() + b.commitTime.getTime()) / 2).toISOString();
}

describe.each([10, 12, 14, 16, 18] as TestMajor[])('point-in-time restore of PostgreSQL %i', (major) => {
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
    for (const t of targets) stopServer(major, t);
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
