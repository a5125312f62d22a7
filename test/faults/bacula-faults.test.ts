/**
 * Faults of mode pitr through real Bacula 15.0.3 daemons (issue 9, items 9 and 10 and the Bacula
 * part of the fault suite), on one PostgreSQL 16 cluster and one site. What each test holds the
 * product to: the job does not end T (nor W) when it did not do what it promised, nothing is
 * created or written outside the target (nor as root where the archiver must write), nothing the
 * user had is lost, and the job log says what to do.
 *
 * The FileSets carry no pg_bin_dir and the machine has no PostgreSQL 16 under /usr/lib/postgresql,
 * so a restore finds the server binaries only through the restore's Plugin Option pg_bin_dir.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { archiveCommandLine } from '../../src/wal/spool.js';
import { ownedDir, until } from '../integration/wal-helpers.js';
import { BaculaSite, findBaculaInstall, pluginLine, type JobResult } from '../e2e/bacula-site.js';
import { stopRestoredServer } from '../e2e/pitr-fixture.js';
import { buildShimWithRealBackend } from '../e2e/real-backend.js';

const MAJOR = 16 as const;
const NOT_OK = ['T', 'W'];

describe('mode pitr faults through real Bacula daemons (issue 9)', () => {
  const install = findBaculaInstall();
  const marker = `PGBACULA_E2E_SITE=bacula-faults-${process.pid}`;
  let work: string;
  let site: BaculaSite;
  let c: Cluster;
  let spool: string;
  let sysid: string;
  let missingSpool: string;
  let rootSpool: string;
  let full: JobResult | undefined;
  const restored: string[] = [];

  const setArchiveCommand = async (cmd: string | undefined): Promise<void> => {
    await c.sql(cmd === undefined ? 'ALTER SYSTEM RESET archive_command' : `ALTER SYSTEM SET archive_command = '${cmd.replace(/'/g, "''")}'`);
    await c.sql('SELECT pg_reload_conf()');
  };
  const chainIds = (): number[] => {
    const f = join(spool, '.bacula-chain', `${sysid}.json`);
    return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as { records: Array<{ jobId: number }> }).records.map((r) => r.jobId) : [];
  };
  const noSlots = async (): Promise<boolean> => (await c.sql<{ n: string }>('SELECT count(*)::text AS n FROM pg_replication_slots'))[0]!.n === '0';
  const workDirs = (): string[] => readdirSync(join(work, 'staging')).filter((d) => d.startsWith('pitr-'));

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), 'bacula-faults-'));
    mkdirSync(join(work, 'staging'));
    const shim = buildShimWithRealBackend(work, install);
    spool = ownedDir('bacula-faults-spool');
    missingSpool = join(work, 'no-such-spool');
    rootSpool = join(work, 'root-spool');
    mkdirSync(rootSpool, { mode: 0o755 });
    c = await startCluster({ major: MAJOR, name: 'bacula-faults', settings: { archive_mode: 'on', archive_command: archiveCommandLine({ spool }) } });
    sysid = (await c.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
    await c.sql('CREATE TABLE keep (id int PRIMARY KEY, t text)');
    await c.sql("INSERT INTO keep SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g");
    const fs = (name: string, walSpool: string) => ({
      name,
      plugins: [pluginLine('pgbacula', { mode: 'pitr', user: 'postgres', host: c.socketDir, port: c.port, wal_spool: walSpool, tmpdir: join(work, 'staging'), parallel_jobs: 2 })],
    });
    site = await BaculaSite.start({
      install,
      plugins: [shim.so],
      parentDir: work,
      fdEnv: { PGBACULA_PROGRESS_SECONDS: '0', PGBACULA_ARCHIVE_WAIT_SECONDS: '12', [marker.split('=')[0]!]: marker.split('=')[1]! },
      fileSets: [fs('pitr', spool), fs('missing', missingSpool), fs('rootspool', rootSpool)],
      jobs: [
        { name: 'pitr', fileSet: 'pitr' },
        { name: 'missing', fileSet: 'missing' },
        { name: 'rootspool', fileSet: 'rootspool' },
      ],
    });
  }, 240_000);

  afterAll(async () => {
    for (const t of restored) stopRestoredServer(MAJOR, t);
    await site?.stop();
    await c?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('item 9: a missing spool fails the Full with the command that creates it for the archiver, and nothing is created', async () => {
    const run = await site.runJob('missing', 'Full');
    expect(NOT_OK, run.log).not.toContain(run.status);
    const u = serverUser();
    expect(run.log).toContain(`the WAL spool ${missingSpool} does not exist`);
    expect(run.log).toContain(`install -d -o ${u.name} -g `);
    expect(run.log).toContain(`-m 0750 ${missingSpool}`);
    expect(existsSync(missingSpool)).toBe(false);
    expect(workDirs()).toEqual([]);
  });

  it('item 9: a spool the archiver cannot write (root-owned) fails the Full with the chown that fixes it, and nothing is created in it', async () => {
    const run = await site.runJob('rootspool', 'Full');
    expect(NOT_OK, run.log).not.toContain(run.status);
    const u = serverUser();
    expect(run.log).toContain(`the WAL spool ${rootSpool} is not writable by ${u.name}`);
    expect(run.log).toMatch(new RegExp(`chown -R ${u.name}:\\S+ ${rootSpool.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
    expect(readdirSync(rootSpool)).toEqual([]);
    expect(statSync(rootSpool).uid).toBe(0);
  });

  it('a Full with a working spool ends T', async () => {
    full = await site.runJob('pitr', 'Full');
    expect(full.status, full.log).toBe('T');
    expect(chainIds()).toContain(full.jobId);
  });

  it('item 9: a Full whose WAL never reaches the spool (archive_command failing) fails with the fix; no chain record, work directory or slot stays', async () => {
    expect(full, 'the first Full ran').toBeDefined();
    await setArchiveCommand('/bin/false');
    let run: JobResult;
    try {
      run = await site.runJob('pitr', 'Full');
    } finally {
      await setArchiveCommand(undefined);
    }
    expect(NOT_OK, run.log).not.toContain(run.status);
    expect(run.log).toMatch(/WAL segment [0-9A-F]{24} has not reached the spool/);
    expect(run.log).toContain('pg_stat_archiver');
    expect(chainIds()).not.toContain(run.jobId);
    await until('the work directory is gone', () => workDirs().length === 0, 15_000);
    await until('no slot', noSlots, 15_000);
  }, 180_000);

  it('item 10: a restore that finds no server binaries ends in error with the pg_bin_dir Plugin Option in the message; nothing is left', async () => {
    expect(full, 'the first Full ran').toBeDefined();
    const target = join(testRoot(), 'bacula-faults-nobin');
    registerForCleanup({ pgdata: target, dir: target });
    const res = await site.restore({ jobId: [full!.jobId], where: '', pluginOptions: { pgdata_dir: target }, timeoutMs: 300_000 });
    expect(NOT_OK, res.log).not.toContain(res.status);
    expect(res.log).toContain(`no PostgreSQL ${MAJOR} server binaries found`);
    expect(res.log).toContain('pg_bin_dir');
    expect(res.log).not.toContain('--pg-bin-dir');
    expect(existsSync(target) ? readdirSync(target) : []).toEqual([]);
    expect(existsSync(`${target}.pgbacula-restore-${res.jobId}`)).toBe(false);
  }, 360_000);
});
