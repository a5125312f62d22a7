/**
 * Issue 12 (mode cdp) through real Bacula 15.0.3 daemons driven by bconsole, on PostgreSQL 12 and
 * 18: a primary whose WAL a synchronous `pgbacula wal-receive` streams into the spool.
 *
 *  - every cdp job checks the receiver and logs it (pid lock, slot, flush lag, previous job) and
 *    the RPO it leaves;
 *  - slot lag over cdp_max_lag_mb (the receiver hung): the job ends "OK -- with warnings" with the
 *    figure;
 *  - receiver killed: the next job fails with the fix; restarted, nothing is lost;
 *  - kill the primary: under a steady commit workload (ids recorded only once COMMIT returned),
 *    cdp Incrementals a few seconds apart, then `pg_ctl stop -m immediate` and the data directory
 *    removed; a restore from Bacula media to the end of WAL holds every commit acknowledged
 *    before the last job's start, and one with wal_from_spool=yes (the surviving spool's WAL
 *    replayed too) holds every acknowledged commit: RPO 0.
 *
 * Needs scripts/setup.sh (Bacula build); a missing part fails the suite with its reason.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { embeddedPgDir, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { queryAt } from '../harness/verify-cluster.js';
import { CliProcess, connFlags, killReceivers, ownedDir, until } from '../integration/wal-helpers.js';
import { BaculaSite, findBaculaInstall, pluginLine, type JobResult } from './bacula-site.js';
import { stopRestoredServer } from './pitr-fixture.js';
import { buildShimWithRealBackend } from './real-backend.js';

const MAJORS = (process.env.CDP_BACULA_MAJORS ? process.env.CDP_BACULA_MAJORS.split(',').map(Number) : [12, 18]) as readonly TestMajor[];

describe.each(MAJORS)('mode cdp of PostgreSQL %i through real Bacula daemons (issue 12)', (MAJOR) => {
  const install = findBaculaInstall();
  let work: string;
  let site: BaculaSite;
  let c: Cluster;
  let spool: string;
  let sysid: string;
  let receiver: CliProcess;
  let full: JobResult;
  /** Every cdp job that ended OK, in order: the chain a restore selects. */
  const chain: number[] = [];
  const restored: string[] = [];

  const startReceiver = async (waitSync = true): Promise<void> => {
    receiver = new CliProcess(['wal-receive', '--wal-spool', spool, ...connFlags(c), '--create-slot', '--synchronous-receive', '--status-interval', '1']);
    await receiver.waitFor(/streaming WAL .*, synchronous/);
    if (waitSync) await until('the receiver is the synchronous standby', async () => {
      const [r] = await c.sql<{ s: string }>("SELECT sync_state AS s FROM pg_stat_replication WHERE application_name = 'pgbacula_wal_receive'");
      return r?.s === 'sync';
    });
  };

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), `cdp-bacula-${MAJOR}-`));
    const shim = buildShimWithRealBackend(work, install);
    spool = ownedDir(`cdp-bacula-spool-${MAJOR}`);
    c = await startCluster({ major: MAJOR, name: `cdp-bacula-${MAJOR}`, settings: { autovacuum: false } });
    sysid = (await c.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
    await c.sql('CREATE TABLE acked (id int PRIMARY KEY)');
    await startReceiver(false);
    await c.sql("ALTER SYSTEM SET synchronous_standby_names = 'pgbacula_wal_receive'");
    await c.sql('SELECT pg_reload_conf()');
    await until('the receiver is the synchronous standby', async () => {
      const [r] = await c.sql<{ s: string }>("SELECT sync_state AS s FROM pg_stat_replication WHERE application_name = 'pgbacula_wal_receive'");
      return r?.s === 'sync';
    });
    const common = { user: 'postgres', host: c.socketDir, port: c.port, wal_spool: spool, tmpdir: join(work, 'staging'), pg_bin_dir: join(embeddedPgDir(MAJOR), 'bin'), parallel_jobs: 2, mode: 'cdp', cdp_window_seconds: 10 };
    site = await BaculaSite.start({
      install,
      plugins: [shim.so],
      parentDir: work,
      fdEnv: { PGBACULA_PROGRESS_SECONDS: '0', PGBACULA_ARCHIVE_WAIT_SECONDS: '60' },
      fileSets: [
        { name: 'cdp', plugins: [pluginLine('pgbacula', common)] },
        { name: 'cdplag', plugins: [pluginLine('pgbacula', { ...common, cdp_max_lag_mb: 1, cdp_start_receiver: true, synchronous_receive: true })] },
      ],
      jobs: [{ name: 'cdp', fileSet: 'cdp' }, { name: 'cdplag', fileSet: 'cdplag' }],
    });
  }, 240_000);

  afterAll(async () => {
    for (const t of restored) stopRestoredServer(MAJOR, t);
    await killReceivers();
    // The receiver a job started detached (cdp_start_receiver): by the pid in its lock.
    const pid = Number(existsSync(join(spool ?? '/nonexistent', sysid ?? 'x', '.receive', 'lock')) ? readFileSync(join(spool, sysid, '.receive', 'lock'), 'utf8').trim() : 0);
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await site?.stop();
    await c?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('a Full is a pitr Full, and the job says what it found of the receiver and the RPO', async () => {
    full = await site.runJob('cdp', 'Full');
    expect(full.status, full.log).toBe('T');
    chain.push(full.jobId);
    expect(full.log).toMatch(new RegExp(`pgbacula: receiver: wal-receive process ${receiver.child.pid} alive \\(${spool}/${sysid}/\\.receive/lock\\)`));
    expect(full.log).toMatch(/pgbacula: slot "pgbacula": active, restart_lsn [\d.]+ \S*B behind the server/);
    if (MAJOR >= 13) expect(full.log).toMatch(/slot "pgbacula": active, .*wal_status (reserved|extended)/);
    else expect(full.log).not.toContain('wal_status');
    expect(full.log).toMatch(/pgbacula: receiver flush lag: [\d.]+ \S*B, [\d.]+ s \(synchronous: a commit returns only once the spool has it\)/);
    expect(full.log).toContain('pgbacula: previous cdp job: none recorded for this Job');
    expect(full.log).toMatch(/pgbacula: base backup \d{8}-\d{6}F complete/);
    expect(full.log).toMatch(/pgbacula: RPO now: spool ≤ [\d.]+ s behind the server, Bacula media ≤ [\d.]+ s/);
  });

  it('slot lag over cdp_max_lag_mb: the job ends OK with warnings, with the figure', async () => {
    const base = await site.runJob('cdplag', 'Full');
    expect(base.status, base.log).toBe('T');
    // The receiver hangs (alive, its slot active, nothing flushed) while the server writes WAL.
    process.kill(receiver.child.pid!, 'SIGSTOP');
    try {
      const s = await c.client();
      try {
        await s.query('SET synchronous_commit = local');
        await s.query("CREATE TABLE lagfill AS SELECT g, repeat('x', 200) AS f FROM generate_series(1, 20000) g");
        await s.query('SELECT pg_switch_wal()');
      } finally {
        await s.end();
      }
      const lag = await site.runJob('cdplag', 'Incremental');
      // Bacula 15 counts a non-fatal job error: "Backup OK -- with warnings", status T.
      expect(lag.status, lag.log).toBe('T');
      expect(lag.log).toContain('Backup OK -- with warnings');
      expect(lag.log).toMatch(/slot "pgbacula" holds [\d.]+ MiB of WAL, over cdp_max_lag_mb=1: the receiver falls behind the server/);
      expect(lag.log).toMatch(/RPO now: /);
    } finally {
      process.kill(receiver.child.pid!, 'SIGCONT');
    }
  });

  it('receiver killed at job time: the job fails with the fix; cdp_start_receiver starts one, and the next job goes on', async () => {
    const killed = await receiver.kill();
    expect(killed.signal).toBe('SIGKILL');
    const failed = await site.runJob('cdp', 'Incremental');
    expect(['f', 'E'], failed.log).toContain(failed.status);
    expect(failed.log).toMatch(new RegExp(`no wal-receive feeds the spool ${spool} for system ${sysid}: its lock .* names process \\d+, which no longer exists`));
    expect(failed.log).toContain(`pgbacula wal-receive --wal-spool ${spool} --slot-name pgbacula --create-slot --synchronous-receive`);
    // cdp_start_receiver=true (the cdplag Job): the job starts a detached receiver and goes on.
    const starting = await site.runJob('cdplag', 'Incremental');
    expect(starting.status, starting.log).toBe('T');
    expect(starting.log).toMatch(/cdp_start_receiver=true: starting one/);
    const started = /started wal-receive process (\d+) \(detached: it outlives this job; output in (\S+)\)/.exec(starting.log);
    expect(started, starting.log).not.toBeNull();
    expect(starting.log).toContain(`pgbacula: receiver: wal-receive process ${started![1]} alive`);
    await until('the started receiver is the synchronous standby', async () => {
      const [r] = await c.sql<{ s: string }>("SELECT sync_state AS s FROM pg_stat_replication WHERE application_name = 'pgbacula_wal_receive'");
      return r?.s === 'sync';
    });
    const next = await site.runJob('cdp', 'Incremental');
    expect(next.status, next.log).toBe('T');
    chain.push(next.jobId);
    expect(next.log).toMatch(/pgbacula: Incremental: WAL since JobId \d+ .*chain checked/);
  });

  it('kill the primary: a restore from Bacula media holds every commit acknowledged before the last cdp job started; with the spool\'s WAL, every acknowledged commit', async () => {
    expect(full, 'the Full ran').toBeDefined();
    const acked: number[] = [];
    let stop = false;
    const client = await c.client();
    const loop = (async () => {
      for (let id = 1; !stop; id++) {
        await client.query('INSERT INTO acked (id) VALUES ($1)', [id]);
        acked.push(id);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    let lastStart = 0;
    let ackedBeforeLast = 0;
    try {
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 2000));
        ackedBeforeLast = acked.length;
        lastStart = Date.now();
        const j = await site.runJob('cdp', 'Incremental');
        expect(j.status, j.log).toBe('T');
        expect(j.log).toMatch(/pgbacula: open segment shipped: [0-9A-F]{24}\.partial \(/);
        expect(j.log).toMatch(/pgbacula: previous cdp job: \d+ s ago \(cdp_window_seconds=10\)/);
        expect(j.log).toMatch(/pgbacula: RPO now: spool ≤ [\d.]+ s behind the server, Bacula media ≤ [\d.]+ s/);
        chain.push(j.jobId);
      }
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      stop = true;
      await loop;
      await client.end();
    }
    expect(lastStart).toBeGreaterThan(0);
    expect(acked.length).toBeGreaterThan(ackedBeforeLast);
    await c.stop('immediate');
    rmSync(c.pgdata, { recursive: true, force: true });

    const target = join(testRoot(), `cdp-bacula-${MAJOR}-restored`);
    registerForCleanup({ pgdata: target, dir: target });
    restored.push(target);
    const port = await freePort();
    const res = await site.restore({ jobId: chain, where: '', pluginOptions: { pgdata_dir: target, restore_port: port }, timeoutMs: 600_000 });
    const said = res.log.split('\n').filter((l) => /pgbacula: (?!.*\/@pgbacula\/)/.test(l)).join('\n');
    expect(res.status, said).toBe('T');
    expect(res.log, said).toMatch(/RESTORE PHASE 4\/6 start: .*replayed the open segment [0-9A-F]{24}\.partial to its last valid record; last commit recovered at \d{4}-/);
    const got = new Set((await queryAt<{ id: number }>({ host: c.socketDir, port }, 'SELECT id FROM acked')).map((r) => r.id));
    const lost = acked.slice(0, ackedBeforeLast).filter((id) => !got.has(id));
    expect(lost, `${lost.length} commits acknowledged before the last cdp job's start are missing`).toEqual([]);
    // Nothing that was never committed (ids are attempted in order).
    expect(Math.max(...got)).toBeLessThanOrEqual(acked.length + 1);
    // Media end at the last job: the commits of the second after it are not there.
    expect(got.size, 'the restore from media alone holds fewer commits than were acknowledged').toBeLessThan(acked.length);
    // The receiver's spool survived the primary, and the restore says so.
    expect(res.log, said).toMatch(new RegExp(`pgbacula: the spool ${spool} on this client holds WAL beyond the restored jobs \\(up to [0-9A-F]{24}(\\.partial)?\\): the Plugin Option wal_from_spool=yes replays it too`));
    stopRestoredServer(MAJOR, target);

    // The same jobs with the spool's WAL: RPO 0, every commit acknowledged to a client is there.
    const target2 = `${target}-spool`;
    registerForCleanup({ pgdata: target2, dir: target2 });
    restored.push(target2);
    const port2 = await freePort();
    const res2 = await site.restore({ jobId: chain, where: '', pluginOptions: { pgdata_dir: target2, restore_port: port2, wal_from_spool: true }, timeoutMs: 600_000 });
    const said2 = res2.log.split('\n').filter((l) => /pgbacula: (?!.*\/@pgbacula\/)/.test(l)).join('\n');
    expect(res2.status, said2).toBe('T');
    expect(res2.log, said2).toMatch(new RegExp(`pgbacula: WAL from the spool ${spool}: .* beyond the restored jobs.*; open segment [0-9A-F]{24}\\.partial \\(from ${spool}/${sysid}/\\.receive/[0-9A-F]{24}\\.partial\\)`));
    expect(res2.log, said2).toMatch(/RESTORE PHASE 4\/6 start: .*replayed the open segment [0-9A-F]{24}\.partial to its last valid record; last commit recovered at \d{4}-/);
    const got2 = new Set((await queryAt<{ id: number }>({ host: c.socketDir, port: port2 }, 'SELECT id FROM acked')).map((r) => r.id));
    const lost2 = acked.filter((id) => !got2.has(id));
    expect(lost2, `${lost2.length} of ${acked.length} acknowledged commits are missing from the restore with the spool's WAL`).toEqual([]);
    expect(Math.max(...got2)).toBeLessThanOrEqual(acked.length + 1);
    // The spool was only read: the receiver's open segment is still where it was.
    expect(execFileSync('find', [join(spool, sysid, '.receive'), '-name', '*.partial'], { encoding: 'utf8' }).trim()).not.toBe('');
  }, 900_000);

  it('wal_from_spool=yes naming a spool without WAL of the cluster: refused before anything is written', async () => {
    expect(chain.length, 'the jobs ran').toBeGreaterThan(1);
    const target = join(testRoot(), `cdp-bacula-${MAJOR}-nospool`);
    registerForCleanup({ pgdata: target, dir: target });
    const empty = ownedDir(`cdp-bacula-empty-spool-${MAJOR}`);
    const res = await site.restore({ jobId: chain, where: '', pluginOptions: { pgdata_dir: target, wal_from_spool: true, wal_spool: empty }, timeoutMs: 600_000 });
    expect(['f', 'E'], res.log).toContain(res.status);
    expect(res.log).toMatch(new RegExp(`wal_from_spool=yes, but the spool ${empty} holds no WAL of database system ${sysid}`));
    expect(res.log).toContain('Plugin Option wal_spool=DIR');
    expect(res.log).not.toMatch(/RESTORE PHASE 1\//);
    expect(existsSync(target) ? readdirSync(target) : []).toEqual([]);
  }, 600_000);
});
