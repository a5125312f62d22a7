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
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { embeddedPgDir } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { queryAt } from '../harness/verify-cluster.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, until } from '../integration/wal-helpers.js';
import { BaculaSite, findBaculaInstall, pluginLine, type JobResult } from '../e2e/bacula-site.js';
import { stopRestoredServer } from '../e2e/pitr-fixture.js';
import { backendsOf, buildShimWithRealBackend, REPO, sleep } from '../e2e/real-backend.js';

const MAJOR = 16 as const;
const BIN = join(embeddedPgDir(MAJOR), 'bin');
const NOT_OK = ['T', 'W'];

/** Regular files under dir (recursively), skipping names that end in .part (still arriving). */
function completeFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of (() => { try { return readdirSync(d, { withFileTypes: true }); } catch { return []; } })()) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !e.name.endsWith('.part')) out.push(p);
    }
  };
  walk(dir);
  return out;
}

describe('mode pitr faults through real Bacula daemons (issue 9)', () => {
  const install = findBaculaInstall();
  const marker = `PGBACULA_E2E_SITE=bacula-faults-${process.pid}`;
  let work: string;
  let site: BaculaSite;
  let c: Cluster;
  let spool: string;
  let sysid: string;
  /** Stands for /var/lib in the README's commands (postgres can enter it). */
  let varLib: string;
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
    varLib = mkdtempSync(join(testRoot(), 'bacula-faults-varlib-'));
    chmodSync(varLib, 0o755);
    missingSpool = join(varLib, 'pgbacula', 'wal-spool');
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
    if (varLib) rmSync(varLib, { recursive: true, force: true });
  });

  it('item 9: a missing spool fails the Full with the command that creates it for the archiver, and nothing is created', async () => {
    const run = await site.runJob('missing', 'Full');
    expect(NOT_OK, run.log).not.toContain(run.status);
    expect(run.status).toBe('f');
    const u = serverUser();
    expect(run.log).toContain(`the WAL spool ${missingSpool} does not exist`);
    expect(run.log).toContain(`install -d -o ${u.name} -g `);
    expect(run.log).toContain(`-m 0750 ${missingSpool}`);
    expect(existsSync(join(varLib, 'pgbacula'))).toBe(false);
    expect(workDirs()).toEqual([]);
  });

  it('item 9: a spool the archiver cannot write (root-owned) fails the Full with the chown that fixes it, and nothing is created in it', async () => {
    const run = await site.runJob('rootspool', 'Full');
    expect(NOT_OK, run.log).not.toContain(run.status);
    expect(run.status).toBe('f');
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
    expect(res.status).toBe('f');
    expect(res.log).toContain(`no PostgreSQL ${MAJOR} server binaries found`);
    expect(res.log).toContain('pg_bin_dir');
    expect(res.log).not.toContain('--pg-bin-dir');
    expect(existsSync(target)).toBe(false);
    expect(existsSync(`${target}.pgbacula-restore-${res.jobId}`)).toBe(false);
  }, 360_000);

  it("README: `restore … fileset=<FileSet> current select` selects the Full and later jobs; the Plugin Option pg_bin_dir finds the server binaries; the restore ends T", async () => {
    expect(full, 'the first Full ran').toBeDefined();
    await c.sql('INSERT INTO keep VALUES (20001, $$after the Full$$)');
    const incr = await site.runJob('pitr', 'Incremental');
    expect(incr.status, incr.log).toBe('T');
    const target = join(testRoot(), 'bacula-faults-restored');
    registerForCleanup({ pgdata: target, dir: target });
    restored.push(target);
    const port = await freePort();
    const res = await site.restore({ selection: 'fileset=pitr current select', where: '/', pluginOptions: { pgdata_dir: target, pg_bin_dir: BIN, restore_port: port }, timeoutMs: 300_000 });
    expect(res.dialogue).toContain(`You have selected the following JobIds: ${full!.jobId},${incr.jobId}`);
    expect(res.status, res.log).toBe('T');
    expect(res.log).toMatch(/pgbacula: restore complete: .*PostgreSQL is promoted on port \d+/);
    const [n] = await queryAt<{ n: string }>({ host: c.socketDir, port }, 'SELECT count(*)::text AS n FROM keep');
    expect(n!.n).toBe('20001');
    stopRestoredServer(MAJOR, target);
  }, 360_000);

  it('a non-empty pgdata_dir is refused (status E, the reason and the fix in the log); what was there is kept', async () => {
    const target = join(work, 'occupied');
    mkdirSync(target);
    writeFileSync(join(target, 'precious.txt'), 'keep me');
    const res = await site.restore({ jobId: [full!.jobId], where: '/', pluginOptions: { pgdata_dir: target, pg_bin_dir: BIN } });
    expect(NOT_OK, res.log).not.toContain(res.status);
    expect(res.status).toBe('E');
    expect(res.log).toContain(`restore target ${target} is not empty (precious.txt)`);
    expect(res.log).toContain('overwrite_existing=yes');
    expect(readdirSync(target)).toEqual(['precious.txt']);
    expect(readFileSync(join(target, 'precious.txt'), 'utf8')).toBe('keep me');
    expect(existsSync(`${target}.pgbacula-restore-${res.jobId}`)).toBe(false);
  });

  /** Start a restore, and freeze the FD at the first moment `ready(staging)` holds (the backend then waits for data). */
  const restoreFrozenWhen = async (target: string, ready: (staging: string) => string | undefined): Promise<{ jobId: number; found: string; resume: () => void }> => {
    const started = await site.restore({ jobId: [full!.jobId], where: '/', pluginOptions: { pgdata_dir: target, pg_bin_dir: BIN }, wait: false });
    const staging = `${target}.pgbacula-restore-${started.jobId}`;
    const fd = site.daemonPid('fd');
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (existsSync(staging)) {
        process.kill(fd, 'SIGSTOP');
        const found = ready(staging);
        if (found) return { jobId: started.jobId, found, resume: () => process.kill(fd, 'SIGCONT') };
        process.kill(fd, 'SIGCONT');
      }
      if (Date.now() > deadline) throw new Error(`restore ${started.jobId}: staging never reached the wanted state`);
      await sleep(5);
    }
  };

  it('a staged file damaged on its way fails the restore (not T) naming the file and what to do; pgdata_dir is left as it was, no server runs', async () => {
    const target = join(testRoot(), 'bacula-faults-damaged');
    registerForCleanup({ pgdata: target, dir: target });
    const r = await restoreFrozenWhen(target, (staging) => completeFiles(join(staging, 'backups')).find((f) => /\/files\/pgdata\/base\/\d+\/\d+$/.test(f) && statSync(f).size >= 16384));
    try {
      const fh = openSync(r.found, 'r+');
      const b = Buffer.alloc(1);
      readSync(fh, b, 0, 1, 12_000);
      b[0] = b[0]! ^ 0xff;
      writeSync(fh, b, 0, 1, 12_000);
      closeSync(fh);
    } finally {
      r.resume();
    }
    const res = await site.waitJob(r.jobId, 300_000);
    expect(NOT_OK, res.log).not.toContain(res.status);
    expect(res.status).toBe('f');
    const rel = r.found.slice(r.found.indexOf('/files/') + '/files/'.length);
    expect(res.log).toContain('is damaged');
    expect(res.log).toContain(rel);
    expect(res.log).toContain('run the restore again, or restore an earlier Full');
    expect(res.log).toContain(`${target} is as it was before the restore (absent)`);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(`${target}.pgbacula-restore-${r.jobId}`)).toBe(false);
  }, 360_000);

  it('a restore canceled while the files arrive ends A; the staging goes, pgdata_dir is not created, no server runs', async () => {
    const target = join(testRoot(), 'bacula-faults-canceled');
    registerForCleanup({ pgdata: target, dir: target });
    const r = await restoreFrozenWhen(target, (staging) => (completeFiles(join(staging, 'backups')).length >= 3 ? staging : undefined));
    try {
      // the Director's cancel reaches the frozen FD when it runs again
      const out = site.bconsole(`cancel jobid=${r.jobId}\nyes`);
      await sleep(500);
      r.resume();
      await out;
    } catch (e) {
      r.resume();
      throw e;
    }
    const res = await site.waitJob(r.jobId, 120_000);
    expect(res.status, res.log).toBe('A');
    await until('the staging is gone', () => !existsSync(r.found), 30_000);
    expect(existsSync(target)).toBe(false);
  }, 180_000);

  it("README: the spool made with the README's install commands, the /usr/local/bin launcher and the README's archive_command: a Full of that spool ends T", async () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const launcherText = /cat > \/usr\/local\/bin\/pgbacula <<'SH'\n([\s\S]*?)\nSH\n/.exec(readme)?.[1];
    const install = /\n(install -d -m 0755 \/var\/lib\/pgbacula\ninstall -d -o postgres -g postgres -m 0750 \/var\/lib\/pgbacula\/wal-spool)\n/.exec(readme)?.[1];
    const archiveCommand = /archive_command = '(\/usr\/local\/bin\/pgbacula wal-push --wal-spool \/var\/lib\/pgbacula\/wal-spool %p)'/.exec(readme)?.[1];
    expect(launcherText && install && archiveCommand, 'the README steps are where this test reads them').toBeTruthy();
    const binDir = mkdtempSync(join(testRoot(), 'bacula-faults-bin-'));
    chmodSync(binDir, 0o755);
    const launcher = join(binDir, 'pgbacula');
    writeFileSync(launcher, `${launcherText!.replace('/usr/bin/node', process.execPath).replace('/opt/pgbacula', REPO)}\n`);
    chmodSync(launcher, 0o755);
    try {
      for (const line of install!.split('\n')) execFileSync('sh', ['-c', line.replaceAll('/var/lib', varLib)]);
      const version = execFileSync('su', [serverUser().name, '-s', '/bin/sh', '-c', `PATH=${binDir}:/usr/bin:/bin pgbacula --version`], { encoding: 'utf8' });
      expect(version).toMatch(/^pgbacula \d+\.\d+\.\d+/);
      await setArchiveCommand(archiveCommand!.replace('/usr/local/bin/pgbacula', launcher).replaceAll('/var/lib', varLib));
      const run = await site.runJob('missing', 'Full');
      expect(run.status, run.log).toBe('T');
      expect(run.log).toMatch(/pgbacula: WAL shipped from the spool: 00000001[0-9A-F]{16}/);
      expect(statSync(missingSpool).uid).toBe(serverUser().uid);
    } finally {
      await setArchiveCommand(undefined);
      rmSync(binDir, { recursive: true, force: true });
    }
  }, 180_000);

  /** Hold a Full after its base backup: the archiver fails, so it waits for its switched segment. */
  const fullWaitingForWal = async (): Promise<number> => {
    const [{ n: before }] = (await c.sql<{ n: string }>('SELECT failed_count::text AS n FROM pg_stat_archiver')) as [{ n: string }];
    await setArchiveCommand('/bin/false');
    const out = await site.bconsole('run job=pitr level=Full yes');
    const jobId = Number(/JobId=(\d+)/.exec(out)![1]);
    await until('the Full waits for its WAL', async () => {
      const [a] = await c.sql<{ n: string }>('SELECT failed_count::text AS n FROM pg_stat_archiver');
      return Number(a!.n) > Number(before) && workDirs().some((d) => d.startsWith(`pitr-${jobId}-`));
    }, 60_000);
    return jobId;
  };

  it('the backend killed (kill -9) mid-job: the job is not T, no chain record or slot stays; the FD restarted mid-job: the same', async () => {
    expect(full, 'the first Full ran').toBeDefined();
    let killed: JobResult;
    let restarted: JobResult;
    try {
      const j1 = await fullWaitingForWal();
      const backends = backendsOf(marker);
      expect(backends.length).toBeGreaterThan(0);
      for (const b of backends) process.kill(b.pid, 'SIGKILL');
      killed = await site.waitJob(j1, 120_000);

      const j2 = await fullWaitingForWal();
      await site.restartDaemon('fd');
      restarted = await site.waitJob(j2, 120_000);
    } finally {
      await setArchiveCommand(undefined);
    }
    for (const run of [killed, restarted]) {
      expect(NOT_OK, run.log).not.toContain(run.status);
      expect(chainIds()).not.toContain(run.jobId);
    }
    await until('no slot', noSlots, 30_000);
    await until('no pgbacula session', async () => (await c.sql<{ n: string }>("SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name LIKE 'pgbacula%'"))[0]!.n === '0', 30_000);

    // the next Full works, and removes the work directory the killed backend could not
    const stale = workDirs();
    const next = await site.runJob('pitr', 'Full');
    expect(next.status, next.log).toBe('T');
    for (const d of stale) expect(next.log).toContain(`removed staging directory ${join(work, 'staging', d)} left by an interrupted run`);
    expect(workDirs()).toEqual([]);
    expect(chainIds()).toContain(next.jobId);
  }, 400_000);
});
