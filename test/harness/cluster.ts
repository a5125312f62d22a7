import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { serverUser } from './os-user.js';
import { clientBin, pgBin, type TestMajor } from './pg-binaries.js';
import { registerForCleanup, testRoot, unregister } from './registry.js';
import { freePort } from '../../src/os/free-port.js';
export { freePort };

const execFileAsync = promisify(execFile);

export interface ClusterOptions {
  readonly major: TestMajor;
  /** Data checksums (default on). */
  readonly checksums?: boolean;
  /** Extra postgresql.conf lines. */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** Turn on summarize_wal (17+). */
  readonly summarizeWal?: boolean;
  readonly name?: string;
}


function confValue(v: string | number | boolean): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return `'${v.replace(/'/g, "''")}'`;
}

/** A throwaway PostgreSQL server: its own dir, port and socket dir, run as the postgres OS user. */
export class Cluster {
  readonly user = serverUser();
  running = false;

  constructor(
    readonly major: TestMajor,
    readonly dir: string,
    readonly pgdata: string,
    readonly socketDir: string,
    readonly port: number,
  ) {}

  get logFile(): string {
    return join(this.dir, 'server.log');
  }

  /** Connection settings a client (or pgbacula) uses: the socket dir, trust auth. */
  get conn() {
    return { host: this.socketDir, port: this.port, user: 'postgres', database: 'postgres' };
  }

  async runAsServerUser(file: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
    const { stdout } = await execFileAsync(file, args, {
      uid: this.user.uid,
      gid: this.user.gid,
      cwd: this.dir,
      timeout: timeoutMs,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  }

  async start(): Promise<void> {
    try {
      await this.runAsServerUser(pgBin(this.major, 'pg_ctl'), ['-D', this.pgdata, '-l', this.logFile, '-w', '-t', '120', 'start']);
    } catch (e) {
      throw new Error(`PostgreSQL ${this.major} did not start in ${this.pgdata}: ${(e as Error).message}\n--- server log ---\n${this.log().slice(-4000)}`);
    }
    this.running = true;
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!existsSync(join(this.pgdata, 'postmaster.pid'))) {
      this.running = false;
      return;
    }
    await this.runAsServerUser(pgBin(this.major, 'pg_ctl'), ['-D', this.pgdata, '-m', mode, '-w', '-t', '120', 'stop']);
    this.running = false;
  }

  /** kill -9 the postmaster: a crash, as the machine would see it. */
  crash(): void {
    const pid = postmasterPid(this.pgdata);
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    this.running = false;
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  async client(database = 'postgres'): Promise<pg.Client> {
    const c = new pg.Client({ ...this.conn, database });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }

  async sql<T extends Record<string, unknown> = Record<string, unknown>>(text: string, params: unknown[] = [], database = 'postgres'): Promise<T[]> {
    const c = await this.client(database);
    try {
      return (await c.query<T>(text, params)).rows;
    } finally {
      await c.end();
    }
  }

  async destroy(): Promise<void> {
    try {
      if (existsSync(join(this.pgdata, 'postmaster.pid'))) await this.stop('immediate');
    } catch {
      this.crash();
    }
    rmSync(this.dir, { recursive: true, force: true });
    unregister(this);
  }
}

export function postmasterPid(pgdata: string): number | undefined {
  try {
    const first = readFileSync(join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function makeClusterDir(name: string): { dir: string; pgdata: string; socketDir: string } {
  const user = serverUser();
  const dir = mkdtempSync(join(testRoot(), `${name}-`));
  const pgdata = join(dir, 'pgdata');
  const socketDir = join(dir, 'sock');
  mkdirSync(socketDir);
  for (const d of [dir, socketDir]) {
    chownSync(d, user.uid, user.gid);
    chmodSync(d, 0o755);
  }
  return { dir, pgdata, socketDir };
}

function baseSettings(opts: ClusterOptions, port: number, socketDir: string): Record<string, string | number | boolean> {
  return {
    port,
    listen_addresses: '127.0.0.1',
    unix_socket_directories: socketDir,
    wal_level: 'replica',
    max_wal_senders: 10,
    max_replication_slots: 10,
    track_commit_timestamp: true,
    shared_buffers: '32MB',
    max_connections: 40,
    // Tests crash servers with kill -9, never the machine: fsync buys nothing here.
    fsync: false,
    hot_standby: true,
    log_line_prefix: '%m [%p] ',
    ...(opts.summarizeWal ? { summarize_wal: true } : {}),
    ...opts.settings,
  };
}

/** initdb + start a new cluster. Always destroyed by the test's afterAll or the run's teardown. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const { dir, pgdata, socketDir } = makeClusterDir(opts.name ?? `pg${opts.major}`);
  const port = await freePort();
  const cluster = new Cluster(opts.major, dir, pgdata, socketDir, port);
  registerForCleanup(cluster);
  const checksums = opts.checksums ?? true;
  const initArgs = ['-D', pgdata, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', '--encoding=UTF8', '--locale=C', '-N'];
  if (checksums) initArgs.push('--data-checksums');
  else if (opts.major >= 18) initArgs.push('--no-data-checksums');
  try {
    await cluster.runAsServerUser(pgBin(opts.major, 'initdb'), initArgs);
  } catch (e) {
    await cluster.destroy();
    throw new Error(`initdb of PostgreSQL ${opts.major} failed: ${(e as Error).message}`);
  }
  const conf = Object.entries(baseSettings(opts, port, socketDir)).map(([k, v]) => `${k} = ${confValue(v)}`).join('\n');
  appendFileSync(join(pgdata, 'postgresql.conf'), `\n# test harness\n${conf}\n`);
  // Replication over TCP with a password (for tests of roles and pg_hba) next to local trust.
  appendFileSync(join(pgdata, 'pg_hba.conf'), '\nhost replication all 127.0.0.1/32 scram-sha-256\n');
  await cluster.start();
  return cluster;
}

/**
 * A streaming standby of a running primary, made with pg_basebackup 18 (-R writes
 * recovery.conf or standby.signal as the primary's version needs).
 */
export async function startStandby(primary: Cluster, opts: { readonly applicationName?: string; readonly slot?: string } = {}): Promise<Cluster> {
  const { dir, pgdata, socketDir } = makeClusterDir(`pg${primary.major}-standby`);
  const port = await freePort();
  const standby = new Cluster(primary.major, dir, pgdata, socketDir, port);
  registerForCleanup(standby);
  try {
    await standby.runAsServerUser(clientBin('pg_basebackup'), [
      '-D', pgdata, '-h', primary.socketDir, '-p', String(primary.port), '-U', 'postgres', '-X', 'stream', '-c', 'fast', '-R',
    ]);
  } catch (e) {
    await standby.destroy();
    throw new Error(`pg_basebackup of PostgreSQL ${primary.major} failed: ${(e as Error).message}`);
  }
  appendFileSync(
    join(pgdata, 'postgresql.conf'),
    `\n# standby\nport = ${port}\nunix_socket_directories = '${socketDir}'\n`,
  );
  // pg_basebackup 18 writes every conninfo option its libpq knows (channel_binding, sslsni, …);
  // an older server's libpq refuses them ("invalid connection option"): keep only what it needs.
  const conninfo = `primary_conninfo = 'host=${primary.socketDir} port=${primary.port} user=postgres application_name=${opts.applicationName ?? 'standby'}'\n${opts.slot ? `primary_slot_name = '${opts.slot}'\n` : ''}`;
  if (primary.major < 12) {
    const rc = join(pgdata, 'recovery.conf');
    writeFileSync(rc, readFileSync(rc, 'utf8').split('\n').filter((l) => !l.startsWith('primary_conninfo') && !l.startsWith('primary_slot_name')).join('\n') + conninfo);
  } else {
    appendFileSync(join(pgdata, 'postgresql.auto.conf'), conninfo);
  }
  await standby.start();
  return standby;
}

/** Write a file into a cluster dir owned by the server user (e.g. a pgpass or a config). */
export function writeOwned(path: string, text: string, mode: number): void {
  const user = serverUser();
  writeFileSync(path, text, { mode });
  chownSync(path, user.uid, user.gid);
  chmodSync(path, mode);
}

export function killAllUnder(root: string): void {
  // Used by teardown: no server may outlive the test run, even after a failed test.
  try {
    const out = execFileSync('find', [root, '-maxdepth', '3', '-name', 'postmaster.pid'], { encoding: 'utf8' });
    for (const pidFile of out.split('\n').filter(Boolean)) {
      const pid = postmasterPid(join(pidFile, '..'));
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  } catch {
    // root already removed
  }
}

/** Stop (immediate) a server a test started in `pgdata` with the embedded binaries of `major`, if it runs. */
export function stopServerIn(major: number, pgdata: string): void {
  const u = serverUser();
  try {
    execFileSync(pgBin(major, 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid, stdio: 'ignore' });
  } catch {
    // not running
  }
}
