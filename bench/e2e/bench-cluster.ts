import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A benchmark cluster, built once under `root`, reused while warm: Debian's PostgreSQL 15 unless
 * other server (`bin`: initdb, pg_ctl) and client (`clientBin`: psql) directories are given.
 */
export class BenchCluster {
  static readonly PG = '/usr/lib/postgresql/15/bin';
  readonly data: string;
  readonly sock: string;
  readonly user = {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
  };

  constructor(
    readonly root: string,
    readonly port: number,
    readonly bin: string = BenchCluster.PG,
    readonly clientBin: string = bin,
  ) {
    this.data = join(root, 'data');
    this.sock = join(root, 'sock');
  }

  asPostgres(file: string, args: string[]): string {
    return execFileSync(file, args, { ...this.user, cwd: this.root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  }

  psql(sql: string): string {
    return this.asPostgres(`${this.clientBin}/psql`, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', this.sock, '-p', String(this.port), '-U', 'postgres', '-d', 'postgres', '-At', '-c', sql]);
  }

  /** A postmaster.pid whose process is alive (a machine restart leaves a stale one; pg_ctl start replaces it). */
  running(): boolean {
    const pidFile = join(this.data, 'postmaster.pid');
    if (!existsSync(pidFile)) return false;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }

  start(): void {
    if (!this.running()) this.asPostgres(`${this.bin}/pg_ctl`, ['-D', this.data, '-l', join(this.root, 'server.log'), '-w', 'start']);
  }

  stop(): void {
    if (this.running()) this.asPostgres(`${this.bin}/pg_ctl`, ['-D', this.data, '-m', 'fast', '-w', 'stop']);
  }

  /** Build once (marker file named by `key`); `fill` loads the data. Extra settings go to postgresql.auto.conf. */
  build(key: string, fill: (c: BenchCluster) => void, settings: Record<string, string> = {}): void {
    const marker = join(this.root, `READY-${key}`);
    if (existsSync(marker)) return;
    console.log(`bench: building the cluster in ${this.data} (${key}) — once`);
    if (existsSync(this.data) && this.running()) this.stop();
    rmSync(this.root, { recursive: true, force: true });
    mkdirSync(this.sock, { recursive: true });
    for (const d of [this.root, this.sock]) chownSync(d, this.user.uid, this.user.gid);
    this.asPostgres(`${this.bin}/initdb`, ['-D', this.data, '-U', 'postgres', '--auth=trust', '--data-checksums', '-N', '--locale=C']);
    const conf = {
      port: String(this.port),
      unix_socket_directories: `'${this.sock}'`,
      listen_addresses: "''",
      wal_level: 'replica',
      max_wal_senders: '10',
      shared_buffers: "'256MB'",
      max_wal_size: "'8GB'",
      checkpoint_timeout: "'1h'",
      fsync: 'off',
      ...settings,
    };
    writeFileSync(join(this.data, 'postgresql.auto.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
    this.start();
    fill(this);
    this.psql('CHECKPOINT');
    writeFileSync(marker, new Date().toISOString() + '\n');
  }

  /** What a base backup copies: every file except WAL. */
  size(): { bytes: number; files: number } {
    let bytes = 0;
    let files = 0;
    for (const e of readdirSync(this.data, { withFileTypes: true, recursive: true })) {
      if (e.isFile() && !e.parentPath.startsWith(join(this.data, 'pg_wal'))) {
        bytes += statSync(join(e.parentPath, e.name)).size;
        files++;
      }
    }
    return { bytes, files };
  }
}
