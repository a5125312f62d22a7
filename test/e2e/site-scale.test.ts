/**
 * Issue 14, acceptance 4: a site grows by clusters and File Daemons under one Director, not by a
 * bigger plugin. One Director and Storage daemon, two FDs, three PostgreSQL clusters of three
 * majors: `dump` of 13 and `pitr` of 16 on the first FD, `pitr_block` of 18 on the second, the
 * three Full jobs submitted at once with Maximum Concurrent Jobs > 1 — they run at the same time
 * (their catalog start and end times overlap) and all end T; then a restore from each: the dump
 * file under where=, the two physical ones as running servers holding every row.
 * The peak memory of each FD with its backends and every job's time are printed (README.md,
 * "A site at scale", quotes a run).
 *
 * Needs scripts/setup.sh (Bacula build, PostgreSQL client tools); a missing part fails the suite
 * with its reason — never a skip.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { embeddedPgDir, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup } from '../harness/registry.js';
import { ownedDir } from '../integration/wal-helpers.js';
import { BaculaSite, fileDaemonConfig, findBaculaInstall, pluginLine, type JobResult } from './bacula-site.js';
import { pgClientBin } from './dump-fixture.js';
import { stopRestoredServer } from './pitr-fixture.js';
import { buildShimWithRealBackend, sleep } from './real-backend.js';

const install = findBaculaInstall();
const ROWS = 50_000;
const PLAN = [
  { job: 'dump13', major: 13 as TestMajor, mode: 'dump', fd: 1 },
  { job: 'pitr16', major: 16 as TestMajor, mode: 'pitr', fd: 1 },
  { job: 'block18', major: 18 as TestMajor, mode: 'pitr_block', fd: 2 },
] as const;

/** Resident memory (kB) of a process and all its descendants, and its direct children, from /proc. */
function treeRssKb(root: number): number {
  return processTree(root).kb;
}

/** Direct children of a bacula-fd: the backends of the jobs it runs now. */
function childCount(root: number): number {
  return processTree(root).children;
}

function processTree(root: number): { kb: number; children: number } {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'))![1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone
    }
  }
  let kb = 0;
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    try {
      kb += Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone
    }
    todo.push(...(children.get(pid) ?? []));
  }
  return { kb, children: children.get(root)?.length ?? 0 };
}

/** Peak resident memory of one process (VmHWM), MiB. */
function hwmMiB(pid: number): string {
  const kb = Number(/^VmHWM:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return (kb / 1024).toFixed(0);
}

async function count(host: string, port: number): Promise<number> {
  const c = new pg.Client({ host, port, user: 'postgres', database: 'postgres' });
  await c.connect();
  try {
    return Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM orders')).rows[0]!.n);
  } finally {
    await c.end();
  }
}

describe('a site at scale: one Director, two FDs, three clusters, concurrent dump, pitr and pitr_block jobs (issue 14, acceptance 4)', () => {
  let work: string;
  let site: BaculaSite;
  let fd2: ChildProcess | undefined;
  const clusters = new Map<string, Cluster>();
  const restored: Array<{ major: TestMajor; pgdata: string }> = [];
  const fd2Spec = { name: 'scale-fd2', port: 0, password: randomBytes(18).toString('base64url') };
  const jobs: Record<string, JobResult> = {};

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), 'site-scale-'));
    chmodSync(work, 0o755); // the restored servers live here and run as postgres
    const shim = buildShimWithRealBackend(work, install);
    const spools = new Map<string, string>(PLAN.filter((p) => p.mode !== 'dump').map((p) => [p.job, ownedDir(`site-scale-spool-${p.job}`)]));
    const started = await Promise.all(PLAN.map((p) => startCluster({
      major: p.major,
      name: `scale-${p.job}`,
      ...(p.mode === 'pitr_block' ? { summarizeWal: true } : {}),
      ...(spools.has(p.job) ? { settings: { archive_mode: 'on', archive_command: archiveCommandLine({ spool: spools.get(p.job)! }) } } : {}),
    })));
    PLAN.forEach((p, i) => clusters.set(p.job, started[i]!));
    await Promise.all(started.map((c) => c.sql(`CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS v, now() AS at FROM generate_series(1, ${ROWS}) g`)));
    // A dump of a few MiB takes a tenth of a second, less than the Director's start of the next
    // job: enough data that the dump job is still running when the physical ones start.
    await clusters.get('dump13')!.sql(`CREATE TABLE history AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS v FROM generate_series(1, 600000) g`);

    const line = (p: (typeof PLAN)[number]) => {
      const c = clusters.get(p.job)!;
      const base = { mode: p.mode, host: c.socketDir, port: c.port, user: 'postgres', cluster: `scale-${p.job}` };
      return pluginLine('pgbacula', p.mode === 'dump'
        ? { ...base, database: 'postgres' }
        : { ...base, wal_spool: spools.get(p.job)!, tmpdir: join(work, `staging-${p.job}`), pg_bin_dir: join(embeddedPgDir(p.major), 'bin'), parallel_jobs: 2 });
    };
    writeFileSync(join(work, 'warmup.txt'), 'the first file on the volume\n');
    const fdEnv = { PATH: `${pgClientBin()}:${process.env.PATH ?? '/usr/bin:/bin'}`, PGBACULA_PROGRESS_SECONDS: '0', PGBACULA_ARCHIVE_WAIT_SECONDS: '60' };
    fd2Spec.port = await freePort();
    site = await BaculaSite.start({
      install,
      plugins: [shim.so],
      parentDir: work,
      fdEnv,
      concurrency: 4,
      clients: [fd2Spec],
      fileSets: [{ name: 'warmup', files: [join(work, 'warmup.txt')] }, ...PLAN.map((p) => ({ name: p.job, plugins: [line(p)] }))],
      jobs: [{ name: 'warmup', fileSet: 'warmup' }, ...PLAN.map((p) => ({ name: p.job, fileSet: p.job, ...(p.fd === 2 ? { client: fd2Spec.name } : {}) }))],
    });

    // the second File Daemon: the site's FD configuration under another name, port and directory
    const l = site.layout;
    const fd2Dir = join(work, 'fd2');
    const plugins = join(fd2Dir, 'plugins');
    mkdirSync(plugins, { recursive: true });
    copyFileSync(shim.so, join(plugins, 'pgbacula-fd.so'));
    const conf = join(fd2Dir, 'fd.conf');
    writeFileSync(conf, fileDaemonConfig({
      ...l,
      names: { ...l.names, fd: fd2Spec.name },
      ports: { ...l.ports, fd: fd2Spec.port },
      passwords: { ...l.passwords, fd: fd2Spec.password },
      paths: { ...l.paths, fdWork: fd2Dir, pluginDir: plugins },
    }), { mode: 0o600 });
    const out = openSync(join(fd2Dir, 'fd.out'), 'a');
    fd2 = spawn(install.fd, ['-f', '-c', conf], { stdio: ['ignore', out, out], env: { ...process.env, ...fdEnv }, cwd: fd2Dir });
    closeSync(out);
    const status = await (async () => {
      for (let i = 0; i < 100; i++) {
        const s = await site.bconsole(`status client=${fd2Spec.name}`, 20_000);
        if (/Plugin: .*pgbacula\(/.test(s)) return s;
        if (fd2!.exitCode !== null) break;
        await sleep(200);
      }
      return readFileSync(join(fd2Dir, 'fd.out'), 'utf8');
    })();
    expect(status, 'the second FD answers the Director with pgbacula-fd.so loaded').toMatch(/Plugin: .*pgbacula\(/);
    // A volume already written before the jobs: the job that writes a fresh volume's first
    // label has the device to itself, and the others would wait for its end.
    const warm = await site.runJob('warmup', 'Full');
    expect(warm.status, warm.log).toBe('T');
  }, 300_000);

  afterAll(async () => {
    for (const r of restored) stopRestoredServer(r.major, r.pgdata);
    fd2?.kill('SIGTERM');
    await site?.stop();
    await Promise.all([...clusters.values()].map((c) => c.destroy()));
  }, 120_000);

  it('runs the three Full jobs at the same time on two FDs; all end T', async () => {
    const fds = { 1: site.daemonPid('fd'), 2: fd2!.pid! };
    const peakKb = { 1: 0, 2: 0 };
    let peakBackends = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const k of [1, 2] as const) peakKb[k] = Math.max(peakKb[k], treeRssKb(fds[k]));
        peakBackends = Math.max(peakBackends, childCount(fds[1]) + childCount(fds[2]));
        await sleep(100);
      }
    })();
    const t0 = Date.now();
    const done = await site.runJobsTogether(PLAN.map((p) => ({ name: p.job })))
      .then((rs) => rs.map((r, i) => ({ p: PLAN[i]!, r })))
      .finally(() => { sampling = false; });
    await sampler;
    for (const { p, r } of done) {
      expect(r.status, `${p.job}: ${r.log}`).toBe('T');
      jobs[p.job] = r;
    }
    // They ran at the same time: queued together, and backends of at least two of them alive at
    // one moment (sampled every 100 ms). With its sqlite catalog the Director starts queued jobs a
    // second or two apart, so catalog times (one-second resolution) cannot show all three overlap.
    expect(peakBackends, 'backends running at once').toBeGreaterThanOrEqual(2);
    const recs = await Promise.all(done.map(({ r }) => site.jobRecord(r.jobId)));
    const starts = recs.map((x) => Date.parse(`${x!.starttime!.replace(' ', 'T')}Z`));
    const ends = recs.map((x) => Date.parse(`${x!.endtime!.replace(' ', 'T')}Z`));
    expect(starts.every(Number.isFinite) && ends.every(Number.isFinite), JSON.stringify(recs)).toBe(true);
    console.log(`site-scale: ${done.map(({ p, r }, i) => `${p.job} (PostgreSQL ${p.major}, FD ${p.fd}) ${((ends[i]! - starts[i]!) / 1000).toFixed(0)} s, ${(r.bytes / 1048576).toFixed(1)} MiB`).join('; ')}; ` +
      `all ${((Date.now() - t0) / 1000).toFixed(1)} s, at most ${peakBackends} backends at once; peak RSS with backends: FD 1 ${(peakKb[1] / 1024).toFixed(0)} MiB, FD 2 ${(peakKb[2] / 1024).toFixed(0)} MiB; ` +
      `bacula-fd alone (VmHWM): FD 1 ${hwmMiB(fds[1])} MiB, FD 2 ${hwmMiB(fds[2])} MiB`);
  }, 600_000);

  it('restores from each: the dump file under where=, the physical backups as servers holding every row', async () => {
    expect(Object.keys(jobs).sort(), 'the backup test ran').toEqual(PLAN.map((p) => p.job).sort());
    const dump = jobs.dump13!;
    const where = join(work, 'restored-dump');
    const rd = await site.restore({ jobId: dump.jobId, where });
    expect(rd.status, rd.log).toBe('T');
    const dumpFile = join(where, `@pgbacula/scale-dump13/dump/${dump.jobId}/postgres.dump`);
    expect(existsSync(dumpFile), rd.log).toBe(true);
    expect(readFileSync(dumpFile).subarray(0, 5).toString()).toBe('PGDMP');

    for (const p of PLAN.filter((x) => x.mode !== 'dump')) {
      const pgdata = join(work, `restored-${p.job}`);
      registerForCleanup({ pgdata, dir: pgdata });
      restored.push({ major: p.major, pgdata });
      const port = await freePort();
      const r = await site.restore({
        jobId: jobs[p.job]!.jobId,
        where: '',
        ...(p.fd === 2 ? { client: fd2Spec.name } : {}),
        pluginOptions: { pgdata_dir: pgdata, restore_port: port },
        timeoutMs: 600_000,
      });
      expect(r.status, `${p.job}: ${r.log}`).toBe('T');
      expect(await count(clusters.get(p.job)!.socketDir, port)).toBe(ROWS);
    }
  }, 900_000);
});
