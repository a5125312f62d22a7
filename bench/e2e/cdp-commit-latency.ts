/**
 * What RPO 0 in the spool costs a committing client (mode cdp, docs/cdp.md): pgbench's commit
 * latency on ONE PostgreSQL 18 primary (fsync on), side by side in one run, with
 *
 *   1. asynchronous: `pgbacula wal-receive --synchronous-receive` streams WAL, nobody waits for it;
 *   2. synchronous_receive: the receiver named in synchronous_standby_names — a commit returns
 *      once the receiver has fsynced its WAL into the spool;
 *   3. a synchronous physical standby (pg_basebackup -R, named in synchronous_standby_names)
 *      instead — what the same promise costs with a standby.
 *
 * BENCH_RUNS rounds (default 3), the order rotated each round, BENCH_SECONDS of pgbench each
 * (default 20, -c BENCH_CLIENTS=4 -j 2, the TPC-B-like default script); medians printed as a
 * Markdown table with the ratio to the asynchronous row (also <dir>/last-result.md).
 *
 * Run: npm run bench:cdp   (as root; PGBACULA_BENCH_CDP_DIR, BENCH_RUNS, BENCH_SECONDS,
 * BENCH_CLIENTS, BENCH_PGBENCH_SCALE)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { embeddedPgDir, PG18_CLIENT_BIN } from '../../test/harness/pg-binaries.js';
import { BenchCluster } from './bench-cluster.js';

const ROOT = process.env.PGBACULA_BENCH_CDP_DIR ?? '/var/tmp/pgbacula-bench-cdp';
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const SCALE = Number(process.env.BENCH_PGBENCH_SCALE ?? 10);
const PORT = Number(process.env.PGBACULA_BENCH_PORT ?? 55983);
const MAJOR = 18;
const BIN = join(embeddedPgDir(MAJOR), 'bin');
/** pgbench, pg_basebackup and psql: the PostgreSQL 18 client tools. */
const CLIENT = PG18_CLIENT_BIN;
const CLI = join(fileURLToPath(new URL('../../..', import.meta.url)), 'bin', 'pgbacula.js');

const primary = new BenchCluster(join(ROOT, 'primary'), PORT, BIN, CLIENT);
const standby = new BenchCluster(join(ROOT, 'standby'), PORT + 1, BIN, CLIENT);

interface Setting {
  readonly name: string;
  readonly syncNames: string;
}
const SETTINGS: Setting[] = [
  { name: 'asynchronous (wal-receive streams, nobody waits)', syncNames: '' },
  { name: 'synchronous_receive (wal-receive in synchronous_standby_names)', syncNames: 'pgbacula_wal_receive' },
  { name: 'synchronous physical standby', syncNames: 'benchstandby' },
];

function pgbench(): { tps: number; latencyMs: number } {
  const out = primary.asPostgres(join(CLIENT, 'pgbench'), ['-h', primary.sock, '-p', String(PORT), '-U', 'postgres', '-c', String(CLIENTS), '-j', '2', '-T', String(SECONDS), '-n', 'postgres']);
  const latency = /latency average = ([\d.]+) ms/.exec(out);
  const tps = /tps = ([\d.]+)/.exec(out);
  if (!latency || !tps) throw new Error(`pgbench said:\n${out}`);
  return { tps: Number(tps[1]), latencyMs: Number(latency[1]) };
}

function setSync(names: string): void {
  primary.psql(`ALTER SYSTEM SET synchronous_standby_names = '${names}'`);
  primary.psql('SELECT pg_reload_conf()');
  // Wait until the named one is synchronous (or nobody is).
  for (let i = 0; i < 300; i++) {
    const states = primary.psql("SELECT string_agg(application_name || '=' || sync_state, ',') FROM pg_stat_replication");
    const ok = names === '' ? !/=sync/.test(states) : new RegExp(`${names}=sync`).test(states);
    if (ok) return;
    execSleep(100);
  }
  throw new Error(`${names || 'no standby'} did not become the synchronous one`);
}

function execSleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  // A fresh setup each run: the standby and the spool follow the primary's history.
  for (const c of [standby, primary]) if (c.running()) c.stop();
  rmSync(ROOT, { recursive: true, force: true });
  primary.build('cdp', (c) => c.asPostgres(join(CLIENT, 'pgbench'), ['-i', '-q', '-s', String(SCALE), '-h', c.sock, '-p', String(PORT), '-U', 'postgres', 'postgres']), { fsync: 'on', synchronous_commit: 'on', max_replication_slots: '10' });
  mkdirSync(standby.sock, { recursive: true });
  for (const d of [standby.root, standby.sock]) chownSync(d, standby.user.uid, standby.user.gid);
  standby.asPostgres(join(CLIENT, 'pg_basebackup'), ['-D', standby.data, '-h', primary.sock, '-p', String(PORT), '-U', 'postgres', '-X', 'stream', '-R', '-c', 'fast']);
  writeFileSync(join(standby.data, 'postgresql.auto.conf'), `port = ${PORT + 1}\nunix_socket_directories = '${standby.sock}'\nprimary_conninfo = 'host=${primary.sock} port=${PORT} user=postgres application_name=benchstandby'\n`, { flag: 'a' });
  chownSync(join(standby.data, 'postgresql.auto.conf'), standby.user.uid, standby.user.gid);
  standby.start();
  const spool = join(ROOT, 'spool');
  mkdirSync(spool);
  chownSync(spool, primary.user.uid, primary.user.gid);
  const receiver: ChildProcess = spawn(process.execPath, [CLI, 'wal-receive', '--wal-spool', spool, '--host', primary.sock, '--port', String(PORT), '--user', 'postgres', '--create-slot', '--synchronous-receive'], {
    uid: primary.user.uid, gid: primary.user.gid, cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' },
  });
  try {
    for (let i = 0; i < 300 && !/pgbacula_wal_receive/.test(primary.psql('SELECT string_agg(application_name, \',\') FROM pg_stat_replication') ?? ''); i++) execSleep(100);
    const results = new Map<string, Array<{ tps: number; latencyMs: number }>>(SETTINGS.map((s) => [s.name, []]));
    for (let round = 0; round < RUNS; round++) {
      const order = SETTINGS.map((_, i) => SETTINGS[(i + round) % SETTINGS.length]!);
      for (const s of order) {
        setSync(s.syncNames);
        const r = pgbench();
        results.get(s.name)!.push(r);
        console.log(`round ${round + 1}: ${s.name}: ${r.tps.toFixed(0)} tps, ${r.latencyMs.toFixed(3)} ms`);
      }
    }
    setSync('');
    const base = median(results.get(SETTINGS[0]!.name)!.map((r) => r.latencyMs));
    const lines = [
      `PostgreSQL ${MAJOR}, fsync on, pgbench -c ${CLIENTS} -j 2 -T ${SECONDS} (scale ${SCALE}), medians of ${RUNS} interleaved runs`,
      '',
      '| commits wait for | tps | latency avg (ms) | latency vs asynchronous |',
      '|---|---|---|---|',
      ...SETTINGS.map((s) => {
        const rs = results.get(s.name)!;
        const lat = median(rs.map((r) => r.latencyMs));
        return `| ${s.name} | ${median(rs.map((r) => r.tps)).toFixed(0)} | ${lat.toFixed(3)} | ${(lat / base).toFixed(2)}× |`;
      }),
    ];
    console.log('\n' + lines.join('\n'));
    writeFileSync(join(ROOT, 'last-result.md'), lines.join('\n') + '\n');
  } finally {
    receiver.kill('SIGTERM');
    await new Promise((r) => receiver.once('exit', r));
    standby.stop();
    primary.stop();
    if (!existsSync(join(ROOT, 'last-result.md'))) console.error(`bench: no result; the clusters are in ${ROOT}`);
  }
}

await main();
