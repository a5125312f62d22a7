/**
 * Issue 12 (mode cdp), a promotion between cdp jobs, through real Bacula 15.0.3 daemons on
 * PostgreSQL 18: the cluster backed up is a standby with a wal-receive streaming from it; it is
 * promoted between two cdp jobs. The receiver follows it to timeline 2; the next job ships the
 * new timeline with its history file and its open segment; a restore from Bacula media to the
 * end of WAL lands on timeline 2 with every row committed on it before that job.
 *
 * Needs scripts/setup.sh (Bacula build); a missing part fails the suite with its reason.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, startStandby, type Cluster } from '../harness/cluster.js';
import { embeddedPgDir, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { queryAt } from '../harness/verify-cluster.js';
import { CliProcess, connFlags, killReceivers, ownedDir, until } from '../integration/wal-helpers.js';
import { BaculaSite, findBaculaInstall, pluginLine } from './bacula-site.js';
import { stopRestoredServer } from './pitr-fixture.js';
import { buildShimWithRealBackend } from './real-backend.js';

const MAJOR: TestMajor = 18;

describe(`mode cdp across a promotion, PostgreSQL ${MAJOR} through real Bacula daemons (issue 12)`, () => {
  const install = findBaculaInstall();
  let work: string;
  let site: BaculaSite;
  let primary: Cluster;
  let standby: Cluster;
  let spool: string;
  let sysid: string;
  let target: string | undefined;

  /** The receiver has fsynced everything the server (the one it streams from) has written. */
  const caughtUp = async (): Promise<void> => {
    const [{ lsn }] = (await standby.sql<{ lsn: string }>('SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END::text AS lsn')) as [{ lsn: string }];
    await until('the receiver has flushed all WAL', async () => {
      const [r] = await standby.sql<{ ok: boolean }>(`SELECT flush_lsn >= '${lsn}'::pg_lsn AS ok FROM pg_stat_replication WHERE application_name = 'pgbacula_wal_receive'`);
      return r?.ok === true;
    });
  };

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), `cdp-promo-${MAJOR}-`));
    const shim = buildShimWithRealBackend(work, install);
    spool = ownedDir(`cdp-promo-spool-${MAJOR}`);
    primary = await startCluster({ major: MAJOR, name: `cdp-promo-${MAJOR}`, settings: { autovacuum: false } });
    sysid = (await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
    await primary.sql('CREATE TABLE rows_by_timeline (id int PRIMARY KEY, tli text NOT NULL)');
    standby = await startStandby(primary);
    const rcv = new CliProcess(['wal-receive', '--wal-spool', spool, ...connFlags(standby), '--create-slot', '--status-interval', '1']);
    await rcv.waitFor(/streaming WAL of system \d+ from .*: timeline 00000001/);
    site = await BaculaSite.start({
      install,
      plugins: [shim.so],
      parentDir: work,
      fdEnv: { PGBACULA_PROGRESS_SECONDS: '0', PGBACULA_ARCHIVE_WAIT_SECONDS: '60' },
      fileSets: [{ name: 'cdp', plugins: [pluginLine('pgbacula', { mode: 'cdp', user: 'postgres', host: standby.socketDir, port: standby.port, wal_spool: spool, tmpdir: join(work, 'staging'), pg_bin_dir: join(embeddedPgDir(MAJOR), 'bin'), cdp_window_seconds: 10 })] }],
      jobs: [{ name: 'cdp', fileSet: 'cdp' }],
    });
  }, 240_000);

  afterAll(async () => {
    if (target) stopRestoredServer(MAJOR, target);
    await killReceivers();
    await site?.stop();
    await standby?.destroy();
    await primary?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('later jobs ship the new timeline with its history file; a restore to latest lands on it', async () => {
    // The standby's restart point (where a base backup of it starts) inside WAL the receiver has:
    // a checkpoint on the primary after the receiver started, replayed, then one on the standby.
    await primary.sql('CHECKPOINT');
    await primary.sql('SELECT pg_switch_wal()');
    const [{ lsn }] = (await primary.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
    await until('the standby replayed the checkpoint', async () => (await standby.sql<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn AS ok`))[0]!.ok);
    await standby.sql('CHECKPOINT');
    await caughtUp();
    const full = await site.runJob('cdp', 'Full');
    expect(full.status, full.log).toBe('T');
    const insert = async (c: Cluster, from: number, n: number, tli: string): Promise<void> => {
      for (let id = from; id < from + n; id++) await c.sql('INSERT INTO rows_by_timeline VALUES ($1, $2)', [id, tli]);
    };
    await insert(primary, 1, 50, 'one');
    await until('the standby has replayed the rows', async () => (await standby.sql<{ n: string }>('SELECT count(*)::text AS n FROM rows_by_timeline'))[0]!.n === '50');
    await caughtUp();
    const before = await site.runJob('cdp', 'Incremental');
    expect(before.status, before.log).toBe('T');

    // Promotion: the standby becomes a primary on timeline 2; the old primary is left behind.
    await primary.stop('immediate');
    await standby.sql('SELECT pg_promote()');
    await until('the standby is promoted', async () => (await standby.sql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]!.r === false);
    await insert(standby, 51, 50, 'two');
    await until('the receiver followed to timeline 2', () => existsSync(join(spool, sysid, '00000002.history')));
    await caughtUp();
    const after = await site.runJob('cdp', 'Incremental');
    expect(after.status, after.log).toBe('T');
    expect(after.log).toMatch(/pgbacula: open segment shipped: 00000002[0-9A-F]{16}\.partial/);
    const files = await site.listFiles(after.jobId);
    expect(files, files.join('\n')).toContain(`/@pgbacula/${sysid}/wal/00000002/00000002.history`);

    await standby.stop('immediate');
    target = join(testRoot(), `cdp-promo-${MAJOR}-restored`);
    registerForCleanup({ pgdata: target, dir: target });
    const port = await freePort();
    const res = await site.restore({ jobId: [full.jobId, before.jobId, after.jobId], where: '', pluginOptions: { pgdata_dir: target, restore_port: port }, timeoutMs: 600_000 });
    const said = res.log.split('\n').filter((l) => /pgbacula: (?!.*\/@pgbacula\/)/.test(l)).join('\n');
    expect(res.status, said).toBe('T');
    expect(said).toMatch(/replayed the open segment 00000002[0-9A-F]{16}\.partial to its last valid record/);
    const at = { host: standby.socketDir, port };
    const rows = await queryAt<{ id: number; tli: string }>(at, 'SELECT id, tli FROM rows_by_timeline ORDER BY id');
    expect(rows.length).toBe(100);
    expect(rows.filter((r) => r.tli === 'two').length).toBe(50);
    // Recovery followed timeline 2, then the restored server promoted onto a timeline of its own.
    const [{ f }] = (await queryAt<{ f: string }>(at, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')) as [{ f: string }];
    expect(parseInt(f.slice(0, 8), 16)).toBeGreaterThanOrEqual(3);
  }, 600_000);
});
