/**
 * kill -9 of `backup` and `restore` at seeded random moments (the same moments every run). After
 * each kill what the user is promised must hold: a backup is either complete and verifies, or is
 * visibly incomplete and removed by the next run; a killed restore run again with the same
 * arguments finishes with exactly the source's data; nothing outside the target is written.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { embeddedPgDir, repoRoot } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { seededRandom } from '../harness/seeded-random.js';
import { digestAt } from '../harness/verify-cluster.js';
import { tableDigest } from '../harness/workload.js';

const MAJOR = 16;
const binDir = () => join(embeddedPgDir(MAJOR), 'bin');
const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };

function stopServer(pgdata: string): void {
  const u = serverUser();
  try {
    execFileSync(join(binDir(), 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid, stdio: 'ignore' });
  } catch {
    // not running
  }
}

/** Run the CLI and SIGKILL it after `ms` (if it is still running); resolves with how it ended. */
function runAndKillAfter(args: readonly string[], ms: number): Promise<{ killed: boolean; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...quiet }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      killed = child.exitCode === null;
      child.kill('SIGKILL');
    }, ms);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ killed, code, stderr });
    });
  });
}

/** Run the CLI and SIGKILL it `delayMs` after its stderr first matches `point`. */
function runAndKillAt(args: readonly string[], point: RegExp, delayMs: number): Promise<{ killed: boolean; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', PGBACULA_PROGRESS_SECONDS: '0.02' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let killed = false;
    let armed = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (armed || !point.test(stderr)) return;
      armed = true;
      setTimeout(() => {
        killed = child.exitCode === null && child.signalCode === null;
        child.kill('SIGKILL');
      }, delayMs);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ killed, code, stderr }));
  });
}

/** A backup started as its own process, returned once it has begun copying files. */
async function backupUnderWay(repo: string, conn: readonly string[]) {
  const runner = spawn(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), 'backup', '--repo', repo, ...conn], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', PGBACULA_PROGRESS_SECONDS: '0.05' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const done = new Promise<number | null>((resolve) => runner.on('close', resolve));
  await new Promise<void>((resolve) => runner.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    if (/progress: backup/.test(err)) resolve();
  }));
  return { runner, done, stderr: () => err };
}

describe(`kill -9 at random moments (PostgreSQL ${MAJOR})`, () => {
  let c: Cluster;
  const repo = () => join(testRoot(), 'kill-repo');
  const conn = () => ['--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'];
  const random = seededRandom(20261203);
  beforeAll(async () => {
    c = await startCluster({ major: MAJOR, name: 'killed' });
    await c.sql("CREATE TABLE big AS SELECT g, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 800000) g");
    await c.sql('CHECKPOINT');
  });
  afterAll(async () => {
    const area = join(testRoot(), 'kill-targets');
    if (existsSync(area)) for (const d of readdirSync(area)) stopServer(join(area, d));
    await c?.destroy();
  });

  it('a backup killed anywhere is complete and verified, or incomplete and removed by the next backup', async () => {
    // How long a whole backup takes here, so kill moments fall inside it.
    const t0 = Date.now();
    const whole = await runCli(['backup', '--repo', repo(), ...conn()], quiet);
    expect(whole.code, whole.stderr).toBe(0);
    const span = Date.now() - t0;
    let kills = 0;
    for (let round = 0; round < 5; round++) {
      const at = 100 + (random() % Math.max(1, span));
      const r = await runAndKillAfter(['backup', '--repo', repo(), ...conn()], at);
      if (r.killed) kills++;
      const info = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout) as { backups: { id: string; state: string }[] };
      // Never a damaged backup, never two incomplete ones: each kill leaves at most its own.
      expect(info.backups.filter((b) => b.state === 'damaged'), `kill at ${at} ms`).toEqual([]);
      expect(info.backups.filter((b) => b.state === 'incomplete').length, `kill at ${at} ms`).toBeLessThanOrEqual(1);
      const v = await runCli(['verify', '--repo', repo()]);
      expect(v.code, `kill at ${at} ms (${r.killed ? 'killed' : `exited ${r.code}`}):\n${v.stdout}`).toBe(0);
      // The server's backup and the temporary slot of the killed session are gone with it.
      for (let i = 0; i < 100; i++) {
        const [s] = await c.sql<{ n: string }>("SELECT count(*)::text AS n FROM pg_replication_slots");
        if (s!.n === '0') break;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    expect(kills, 'the seeded moments fall inside the backups').toBeGreaterThan(1);
    const next = await runCli(['backup', '--repo', repo(), ...conn()], quiet);
    expect(next.code, next.stderr).toBe(0);
    const after = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout) as { backups: { state: string }[] };
    expect(after.backups.every((b) => b.state === 'complete')).toBe(true);
  });

  it('a restore killed in each phase (at a seeded moment after it begins) and run again with the same arguments ends with the source data; nothing is written beside the target', async () => {
    if (!existsSync(repo())) expect((await runCli(['backup', '--repo', repo(), ...conn()], quiet)).code).toBe(0);
    const expected = await tableDigest(c, 'big');
    let kills = 0;
    // A directory of their own: other test files write beside them in the test root.
    const area = join(testRoot(), 'kill-targets');
    mkdirSync(area, { recursive: true });
    // Kill points tied to what the restore says (its speed varies with the machine's load), each
    // a seeded few milliseconds later.
    const points = [/RESTORE PHASE 1\/6/, /progress: restore/, /RESTORE PHASE 2\/6/, /RESTORE PHASE 3\/6/, /RESTORE PHASE 4\/6/];
    for (const [round, point] of points.entries()) {
      const target = join(area, `target-${round}`);
      registerForCleanup({ pgdata: target, dir: target });
      const port = await freePort();
      const args = ['restore', '--repo', repo(), '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', binDir()];
      const siblings = readdirSync(area).sort();
      const delay = round === points.length - 1 ? 0 : random() % 80;
      const r = await runAndKillAt(args, point, delay);
      if (r.killed) kills++;
      else expect(r.code, r.stderr).toBe(0);
      const again = await runCli(args, quiet);
      const what = `kill ${delay} ms after ${point}`;
      if (r.killed) {
        // Killed after the server was up and verified: the restore had finished, and says so.
        const finished = again.code !== 0 && /holds a finished restore/.test(again.stderr);
        expect(again.code === 0 || finished, `${what}:\n${again.stderr}`).toBe(true);
      } else {
        expect(again.code, what).toBe(1);
        expect(again.stderr, what).toContain('holds a finished restore');
      }
      expect(existsSync(join(target, 'postmaster.pid')), what).toBe(true);
      expect(await digestAt({ host: c.socketDir, port }, 'big'), what).toBe(expected);
      stopServer(target);
      expect(readdirSync(area).sort(), 'nothing new beside the target').toEqual([...new Set([...siblings, `target-${round}`])].sort());
    }
    expect(kills, 'the kill points fall inside the restores').toBeGreaterThanOrEqual(points.length - 1);
  });

  it('concurrent commands on one repository: a second backup is refused while one runs; info and verify see it as running, not damaged', async () => {
    const { runner, done, stderr } = await backupUnderWay(repo(), conn());
    // Frozen mid-backup (lock held, marker there, no manifest) for as long as the others run.
    runner.kill('SIGSTOP');
    let second, info, verify;
    try {
      second = await runCli(['backup', '--repo', repo(), ...conn()], quiet);
      info = await runCli(['info', '--repo', repo(), '--json']);
      verify = await runCli(['verify', '--repo', repo()]);
    } finally {
      runner.kill('SIGCONT');
    }
    const code = await done;
    expect(code, stderr()).toBe(0);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/repository .* is in use by process \d+/);
    const states = (JSON.parse(info.stdout) as { backups: { state: string }[] }).backups.map((b) => b.state);
    expect(states).not.toContain('damaged');
    expect(verify.stdout).not.toContain('DAMAGED');
    expect(states).toContain('running');
    expect(verify.stdout).toMatch(/RUNNING — being written by process/);
    expect(verify.code, verify.stdout).toBe(0);
  });

  it('a backup whose session is terminated, or whose server restarts, fails saying so; nothing shows as complete; the next backup works', async () => {
    const before = (existsSync(repo()) ? JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout) : { backups: [] }) as { backups: { id: string }[] };
    for (const fault of ['terminate', 'restart'] as const) {
      const { done, stderr } = await backupUnderWay(repo(), conn());
      if (fault === 'terminate') await c.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'pgbacula%'");
      else {
        await c.stop('fast');
        await c.start();
      }
      const code = await done;
      const err = stderr();
      expect(code, `${fault}: ${err}`).not.toBe(0);
      expect(err, fault).toMatch(/pgbacula: error: .*the session holding the backup ended during the backup \(.*(terminat|shut ?down|closed).*\).*this backup is incomplete/i);
      expect(err, fault).toMatch(/hint: Run the backup again/);
      expect(err, fault).not.toMatch(/backup \S+ complete/);
      const info = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout) as { backups: { id: string; state: string }[] };
      const added = info.backups.filter((b) => !before.backups.some((x) => x.id === b.id));
      expect(added.filter((b) => b.state === 'complete'), fault).toEqual([]);
    }
    const next = await runCli(['backup', '--repo', repo(), ...conn()], quiet);
    expect(next.code, next.stderr).toBe(0);
  });
});
