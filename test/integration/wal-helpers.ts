/**
 * Helpers of the WAL archive integration tests: directories the server's OS user owns, the
 * built CLI run as that user (archive_command and restore_command run as it too), and a
 * restored cluster made from a plain base backup recovering through wal-fetch.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, freePort } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { clientBin, pgBin, repoRoot, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';

const execFileAsync = promisify(execFile);

export const SEG = 16 * 1024 * 1024;
export const CLI = join(repoRoot(), 'bin', 'pgbacula.js');

/** A directory under the run's test root, owned by the server's OS user. */
export function ownedDir(prefix: string): string {
  const d = mkdtempSync(join(testRoot(), `${prefix}-`));
  const u = serverUser();
  chownSync(d, u.uid, u.gid);
  chmodSync(d, 0o750);
  return d;
}

export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run the built CLI once as the server's OS user (like the archiver does), in cwd. */
export function runAsServerUser(args: readonly string[], cwd = '/'): Promise<CliRun> {
  const u = serverUser();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { uid: u.uid, gid: u.gid, cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** A long-running CLI child (wal-receive) as the server's OS user, its stderr watched. */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  private closed: Promise<CliRun>;

  constructor(args: readonly string[]) {
    const u = serverUser();
    this.child = spawn(process.execPath, [CLI, ...args], { uid: u.uid, gid: u.gid, cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.closed = new Promise((resolve) => this.child.on('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr })));
    live.add(this);
  }

  async waitFor(re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    let m: RegExpMatchArray | null = null;
    let exited = false;
    void this.closed.then(() => (exited = true));
    await until(`wal-receive prints ${re}`, () => {
      m = this.stderr.match(re);
      if (!m && exited) throw new Error(`the process exited without printing ${re}:\n${this.stderr}`);
      return m !== null;
    }, timeoutMs);
    return m!;
  }

  /** SIGTERM, then the result (SIGKILL after a timeout, which fails the caller's exit-code check). */
  async stop(timeoutMs = 30_000): Promise<CliRun> {
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const r = await this.closed;
    clearTimeout(t);
    live.delete(this);
    return r;
  }

  async kill(): Promise<CliRun> {
    this.child.kill('SIGKILL');
    const r = await this.closed;
    live.delete(this);
    return r;
  }

  done(): Promise<CliRun> {
    return this.closed.finally(() => live.delete(this));
  }
}

const live = new Set<CliProcess>();
/** afterAll: no receiver may outlive its test. */
export async function killReceivers(): Promise<void> {
  for (const p of [...live]) await p.kill();
}

export function connFlags(c: Cluster): string[] {
  return ['--host', c.socketDir, '--port', String(c.port), '--user', 'postgres', '--dbname', 'postgres'];
}

/** initdb only (no server): its first WAL segment is real WAL of another system. */
export async function initdbForeign(major: TestMajor): Promise<{ dir: string; pgdata: string; systemId: string; segment: string }> {
  const dir = ownedDir(`pg${major}-foreign`);
  const pgdata = join(dir, 'pgdata');
  const u = serverUser();
  await execFileAsync(pgBin(major, 'initdb'), ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-N', '--locale=C'], { uid: u.uid, gid: u.gid, cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' } });
  const ctl = readFileSync(join(pgdata, 'global', 'pg_control'));
  const segment = readdirSync(join(pgdata, 'pg_wal')).find((n) => /^[0-9A-F]{24}$/.test(n))!;
  return { dir, pgdata, systemId: ctl.readBigUInt64LE(0).toString(), segment: join(pgdata, 'pg_wal', segment) };
}

/** pg_basebackup -X none (plain): a base backup that needs the archive for every WAL byte. */
export async function baseBackupWithoutWal(source: Cluster, prefix: string): Promise<string> {
  const dir = ownedDir(prefix);
  const target = join(dir, 'backup');
  await source.runAsServerUser(clientBin('pg_basebackup'), ['-D', target, '-h', source.socketDir, '-p', String(source.port), '-U', 'postgres', '-X', 'none', '-c', 'fast']);
  return target;
}

export interface RecoveryTarget {
  readonly time?: string;
  readonly action?: 'promote' | 'pause' | 'shutdown';
}

/**
 * A new cluster from a plain base backup, recovering through `restore_command` (wal-fetch),
 * recovery_target_timeline = latest, started; resolves once recovery ended (promoted).
 */
export async function restoreWithWalFetch(major: TestMajor, backupDir: string, restoreCommand: string, target: RecoveryTarget): Promise<Cluster> {
  const dir = ownedDir(`pg${major}-restored`);
  const pgdata = join(dir, 'pgdata');
  const socketDir = join(dir, 'sock');
  const u = serverUser();
  mkdirSync(socketDir);
  chownSync(socketDir, u.uid, u.gid);
  const port = await freePort();
  const restored = new Cluster(major, dir, pgdata, socketDir, port);
  registerForCleanup(restored);
  await restored.runAsServerUser('/bin/cp', ['-a', backupDir, pgdata]);
  const settings: Record<string, string> = {
    restore_command: restoreCommand,
    recovery_target_timeline: 'latest',
    ...(target.time ? { recovery_target_time: target.time, recovery_target_action: target.action ?? 'promote' } : {}),
  };
  const lines = Object.entries(settings).map(([k, v]) => `${k} = '${v.replace(/'/g, "''")}'`).join('\n');
  appendFileSync(join(pgdata, 'postgresql.conf'), `\n# restored by the test\nport = ${port}\nunix_socket_directories = '${socketDir}'\narchive_mode = off\n`);
  if (major < 12) {
    writeFileSync(join(pgdata, 'recovery.conf'), `${lines}\n`);
    chownSync(join(pgdata, 'recovery.conf'), u.uid, u.gid);
  } else {
    appendFileSync(join(pgdata, 'postgresql.conf'), `${lines}\n`);
    writeFileSync(join(pgdata, 'recovery.signal'), '');
    chownSync(join(pgdata, 'recovery.signal'), u.uid, u.gid);
  }
  await restored.start();
  await until('the restored server has finished recovery', async () => {
    const [r] = await restored.sql<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec').catch(() => [{ rec: true }]);
    return r!.rec === false;
  }, 120_000);
  return restored;
}

/** Current WAL insert position as text (10+ names). */
export async function currentLsn(c: Cluster): Promise<string> {
  const [r] = await c.sql<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
  return r!.l;
}

/** Make WAL: rows, then a segment switch; returns the name of the segment that was switched away from. */
export async function switchedSegment(c: Cluster, rows = 2000): Promise<string> {
  await c.sql('CREATE TABLE IF NOT EXISTS walfill (id int, filler text)');
  await c.sql(`INSERT INTO walfill SELECT g, repeat('x', 200) FROM generate_series(1, ${rows}) g`);
  const [r] = await c.sql<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
  return r!.name;
}
