/**
 * Issue 3, acceptance 4, through real Bacula 15.0.3 daemons: every failure path ends the Bacula
 * job with an error status and a clear job-log message, without a hang, without an orphan
 * process, and without printing a password:
 *
 *   unknown parameter · database that does not exist · wrong password · pg_dump older than the
 *   server · pg_dump killed mid-stream · the backend killed mid-job (and the staging it leaves is
 *   removed by the next job) · a job canceled from bconsole (SIGUSR1)
 *
 * (A malformed packet sent to the backend is covered at unit level: bacula-packet,
 * bacula-conversation and bacula-backend-process tests.)
 *
 * Timing is made exact rather than hoped for. "Mid-stream": the FD is frozen (SIGSTOP) once the
 * data phase has begun, so pg_dump blocks on its full stdout pipe with part of the dump written
 * (/proc/<pid>/io), is killed, and the FD resumed. "Mid-job": a test session holds a lock pg_dump
 * waits for. (Freezing the backend instead does not work: the FD's select() on the backend's pipe
 * fails with EINTR on the SIGCHLD of a stopped child; Job "Maximum Bandwidth" did not throttle the
 * FD→SD stream of a 15.0.3 site here.)
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../harness/cluster.js';
import { BaculaSite, findBaculaInstall, pluginLine, type JobResult } from './bacula-site.js';
import { passwordCluster, PASSWORD, pgClientBin, populateSource, writePasswordConfig } from './dump-fixture.js';
import { backendsOf, buildShimWithRealBackend, bytesWritten, clientToolsFor, processesMatching, sleep, waitFor, type ProcessInfo } from './real-backend.js';

const MAJOR = 16 as const;
const OLD_PG_BIN = '/usr/lib/postgresql/15/bin';
const WRONG_PASSWORD = 'not-the-Password-31f7';
const JOB_TIMEOUT_MS = 90_000;

describe('dump failure paths through real Bacula daemons (issue 3, acceptance 4)', () => {
  const install = findBaculaInstall();
  const marker = `PGBACULA_E2E_SITE=failures-${process.pid}`;
  let work: string;
  let staging: string;
  let site: BaculaSite;
  let source: Cluster;

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    if (!existsSync(join(pgClientBin(), 'pg_dump'))) throw new Error(`PostgreSQL 18 client tools missing in ${pgClientBin()}: run ./scripts/setup.sh`);
    if (!existsSync(join(OLD_PG_BIN, 'pg_dump'))) throw new Error(`Debian's pg_dump 15 is missing in ${OLD_PG_BIN}: run ./scripts/setup.sh`);
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), 'dump-failures-'));
    staging = join(work, 'staging');
    const shim = buildShimWithRealBackend(work, install);
    source = await passwordCluster(MAJOR, 'fail-src');
    await populateSource(source, join(source.dir, 'ts1'));
    const good = writePasswordConfig(join(work, 'good.conf'), PASSWORD);
    const wrong = writePasswordConfig(join(work, 'wrong.conf'), WRONG_PASSWORD);
    const conn = { host: '127.0.0.1', port: source.port, user: 'postgres' };
    const fs = (name: string, params: Record<string, string | number | boolean>) => ({ name, plugins: [pluginLine('pgbacula', { ...conn, config: good, ...params })] });
    site = await BaculaSite.start({
      install,
      plugins: [shim.so],
      parentDir: work,
      fdEnv: { PATH: `${pgClientBin()}:${process.env.PATH ?? '/usr/bin:/bin'}`, [marker.split('=')[0]!]: marker.split('=')[1]! },
      fileSets: [
        fs('unknown', { mode: 'dump', colour: 'blue' }),
        fs('nodb', { mode: 'dump', database: 'alpha,nosuch' }),
        { name: 'wrongpw', plugins: [pluginLine('pgbacula', { ...conn, config: wrong, mode: 'dump' })] },
        fs('oldpgdump', { mode: 'dump', pg_bin_dir: OLD_PG_BIN }),
        fs('gamma', { mode: 'dump', database: 'gamma' }),
        fs('gammadir', { mode: 'parallel_dump', database: 'gamma', tmpdir: staging }),
        fs('quickdir', { mode: 'parallel_dump', database: 'alpha', tmpdir: staging }),
      ],
      jobs: [
        { name: 'unknown', fileSet: 'unknown' },
        { name: 'nodb', fileSet: 'nodb' },
        { name: 'wrongpw', fileSet: 'wrongpw' },
        { name: 'oldpgdump', fileSet: 'oldpgdump' },
        { name: 'gamma', fileSet: 'gamma' },
        { name: 'gammadir', fileSet: 'gammadir' },
        { name: 'quickdir', fileSet: 'quickdir' },
      ],
    });
  }, 240_000);

  afterAll(async () => {
    await site?.stop();
    await source?.destroy();
  });

  /** The job failed (f fatal / E error), said why, printed no password, and left nothing running. */
  async function expectFailedCleanly(run: JobResult, message: RegExp): Promise<void> {
    expect(['f', 'E'], `status ${run.status}\n${run.log}`).toContain(run.status);
    expect(run.log).toMatch(message);
    expect(run.log).not.toContain(PASSWORD);
    expect(run.log).not.toContain(WRONG_PASSWORD);
    await waitFor('no pgbacula backend and no pg_dump left', () => (backendsOf(marker).length === 0 && clientToolsFor(source.port).length === 0 ? true : undefined), 15_000, 100);
  }

  async function startJob(name: string): Promise<number> {
    const out = await site.bconsole(`run job=${name} level=Full yes`);
    const m = /Job queued\. JobId=(\d+)/.exec(out);
    if (!m) throw new Error(`job ${name} was not queued:\n${out}`);
    return Number(m[1]);
  }

  it('unknown parameter: the job fails naming it and the accepted parameters', async () => {
    const run = await site.runJob('unknown', 'Full', JOB_TIMEOUT_MS);
    await expectFailedCleanly(run, /Fatal error: pgbacula: E_PARAM_UNKNOWN: unknown parameter colour=blue\. Accepted parameters: mode, database, exclude_database, parallel_jobs, dump_format,/);
    // the FD's own warning comes first: the shim's list is the schema's
    expect(run.log).toContain('Unknown parameter colour=blue in Plugin command');
  });

  it('database that does not exist: the job fails naming it and the databases there', async () => {
    const run = await site.runJob('nodb', 'Full', JOB_TIMEOUT_MS);
    await expectFailedCleanly(run, /E_PARAM_INVALID: database "nosuch" does not exist on 127\.0\.0\.1:\d+\. Databases there: alpha, beta, gamma, postgres/);
  });

  it('wrong password: the job fails with the authentication error, the password is never printed', async () => {
    const run = await site.runJob('wrongpw', 'Full', JOB_TIMEOUT_MS);
    await expectFailedCleanly(run, /E_AUTHENTICATION: authentication failed for 127\.0\.0\.1:\d+ as postgres: password authentication failed for user "postgres"\. The password from config was used/);
  });

  it('pg_dump older than the server: the job fails before dumping, saying what to install', async () => {
    const run = await site.runJob('oldpgdump', 'Full', JOB_TIMEOUT_MS);
    await expectFailedCleanly(run, /E_VERSION_UNSUPPORTED: pg_dump 15\.\d+ \(\/usr\/lib\/postgresql\/15\/bin\) is older than the server \(PostgreSQL 16\.\d+\) and cannot dump it\. Set pg_bin_dir to the client tools of PostgreSQL 16 or newer/);
  });

  /** The site's bacula-fd process. */
  function fdPid(): number {
    const conf = join(site.layout.paths.conf, 'fd.conf');
    const [fd] = processesMatching((a) => a[0]!.endsWith('bacula-fd') && a.includes(conf));
    if (!fd) throw new Error('bacula-fd of the site is not running');
    return fd.pid;
  }

  /** The pg_dump of `db` for this server, once it runs. */
  function pgDumpOf(db: string, everyMs = 5): Promise<ProcessInfo> {
    return waitFor(`pg_dump of ${db}`, () => clientToolsFor(source.port).find((p) => p.argv[0]!.endsWith('pg_dump') && p.argv.some((a) => a.includes(`dbname='${db}'`))), 30_000, everyMs);
  }

  /**
   * Hold an exclusive lock on gamma.bulk: pg_dump of gamma then waits in its LOCK TABLE, running
   * but writing nothing, for as long as the test wants.
   */
  async function lockGamma(): Promise<{ blocked(): Promise<void>; release(): Promise<void> }> {
    const c = await source.client('gamma');
    await c.query('BEGIN');
    await c.query('LOCK TABLE bulk IN ACCESS EXCLUSIVE MODE');
    return {
      blocked: async () => {
        await waitFor('pg_dump waiting for its lock', async () =>
          (await source.sql<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'pgbacula dump' AND wait_event_type = 'Lock'"))[0]!.n === '1' ? true : undefined,
        );
      },
      release: async () => {
        await c.query('ROLLBACK').catch(() => undefined);
        await c.end().catch(() => undefined);
      },
    };
  }

  it('pg_dump killed mid-stream: the job fails with pg_dump\'s fate; no secret in argv', async () => {
    const jobId = await startJob('gamma');
    // Freeze the FD once the data phase has begun (pg_dumpall/pg_dump run after BackupStart is
    // acknowledged): the backend's stdout fills, and pg_dump blocks on its own full pipe with part
    // of the dump written — mid-stream, exactly, whatever the speed of the machine.
    await waitFor('the dump to start', () => clientToolsFor(source.port).find((p) => /pg_dump(all)?$/.test(p.argv[0]!)), 30_000, 2);
    const fd = fdPid();
    process.kill(fd, 'SIGSTOP');
    try {
      const pgDump = await pgDumpOf('gamma');
      // the password travels in the environment, never in argv (visible to every local user)
      expect(pgDump.argv.join(' ')).not.toContain(PASSWORD);
      expect(readFileSync(`/proc/${pgDump.pid}/environ`, 'latin1').split('\0')).toContain(`PGPASSWORD=${PASSWORD}`);
      let written = -1;
      // blocked: what it wrote stops growing
      await waitFor('pg_dump blocked mid-stream', async () => {
        const now = bytesWritten(pgDump.pid);
        const stable = now > 0 && now === written;
        written = now;
        await sleep(100);
        return stable ? true : undefined;
      });
      expect(written).toBeGreaterThan(0);
      expect(written).toBeLessThan(7_000_000); // far from the ~8 MB of the whole dump
      process.kill(pgDump.pid, 'SIGKILL');
    } finally {
      process.kill(fd, 'SIGCONT');
    }
    const run = await site.waitJob(jobId, JOB_TIMEOUT_MS);
    await expectFailedCleanly(run, /Fatal error: pgbacula: E_CHILD_PROCESS: pg_dump of database gamma failed: pg_dump was killed by signal SIGKILL/);
    expect(run.log).not.toMatch(/database gamma: [\d.]+ MiB in/); // never reported as done
  });

  it('backend killed mid-job: the job fails, pg_dump dies with it (parent-death signal, no orphan)', async () => {
    const lock = await lockGamma();
    try {
      const jobId = await startJob('gamma');
      const pgDump = await pgDumpOf('gamma', 20);
      await lock.blocked(); // pg_dump writes nothing while it waits: no SIGPIPE can end it
      const [backend] = backendsOf(marker);
      expect(backend, 'backend process').toBeDefined();
      process.kill(backend!.pid, 'SIGKILL');
      await waitFor('pg_dump gone with its parent', () => (existsSync(`/proc/${pgDump.pid}`) ? undefined : true), 10_000);
      const run = await site.waitJob(jobId, JOB_TIMEOUT_MS);
      await expectFailedCleanly(run, /Backend closed the connection|cannot get packet header|BPIPE read error/i);
    } finally {
      await lock.release();
    }
  });

  it('backend killed with a staged directory archive: the next job removes the staging it left', async () => {
    const jobId = await startJob('gammadir');
    await pgDumpOf('gamma', 20);
    const fd = fdPid();
    process.kill(fd, 'SIGSTOP'); // the backend stages the archive, then blocks emitting it
    let stagedDir: string;
    try {
      stagedDir = await waitFor('gamma staged and pg_dump done', () => {
        if (clientToolsFor(source.port).length || !existsSync(staging)) return undefined;
        const d = readdirSync(staging).find((n) => existsSync(join(staging, n, 'gamma.dir', 'toc.dat')));
        return d ? join(staging, d) : undefined;
      });
      const [backend] = backendsOf(marker);
      expect(backend, 'backend process').toBeDefined();
      process.kill(backend!.pid, 'SIGKILL');
    } finally {
      process.kill(fd, 'SIGCONT');
    }
    const run = await site.waitJob(jobId, JOB_TIMEOUT_MS);
    await expectFailedCleanly(run, /Backend closed the connection|cannot get packet header|BPIPE read error/i);
    expect(existsSync(stagedDir), 'a SIGKILLed backend cannot clean up').toBe(true);

    const next = await site.runJob('quickdir', 'Full', JOB_TIMEOUT_MS);
    expect(next.status, next.log).toBe('T');
    expect(next.log).toContain(`pgbacula: removed staging directory ${stagedDir} left by an interrupted job`);
    expect(readdirSync(staging)).toEqual([]);
  });

  it('cancel from bconsole (SIGUSR1): the job is canceled, the backend exits 0 with its children', async () => {
    const lock = await lockGamma();
    try {
      const jobId = await startJob('gamma');
      await pgDumpOf('gamma', 20);
      await lock.blocked();
      const out = await site.bconsole(`cancel jobid=${jobId}\nyes`);
      expect(out).toMatch(/cancel/i);
      const run = await site.waitJob(jobId, JOB_TIMEOUT_MS);
      expect(run.status, run.log).toBe('A');
      // exit status 0 and nothing on stderr: no "Error closing backend", no "Backend reported error"
      expect(run.log).not.toMatch(/Error closing backend|Backend reported error/);
      await waitFor('no backend and no pg_dump left', () => (backendsOf(marker).length === 0 && clientToolsFor(source.port).length === 0 ? true : undefined), 15_000, 100);
    } finally {
      await lock.release();
    }
  });
});
