/**
 * End-to-end throughput, measured side by side in ONE run on ONE warm cluster (never compare
 * figures across runs: the VM is noisy). Builds a reproducible PostgreSQL 15 cluster of > 2 GB
 * (pgbench scale 110 + a 3M-row md5 table) once, then times, interleaved, BENCH_RUNS times each:
 *   pgbacula backup → null sink        vs  pg_basebackup -Ft -X none -c fast -D - > /dev/null
 *   pgbacula backup → repository (lz4) vs  pgBackRest full (the newest from Debian sid,
 *                                          scripts/pgbackrest-newest.sh, bundle + block, lz4-1,
 *                                          process-max=2; Debian 12's 2.45 when sid is out of reach)
 *   pgbacula restore → a running,      vs  pgBackRest restore --type=immediate
 *     consistent, promoted server          --target-action=promote (process-max=2), then
 *                                          pg_ctl start and wait until promoted
 *   pgbacula verify --pgdata (offline) vs  pg_checksums --check (offline)
 * and prints medians: seconds, MB/s, CPU seconds, peak RSS of the process tree, and the ratios.
 * The cluster archives into pgBackRest's repository (its restore fetches the backup's WAL from
 * there; pgbacula's backup holds its own).
 *
 * Run: npm run bench:e2e   (as root, after ./scripts/setup.sh; PGBACULA_BENCH_DIR, BENCH_RUNS)
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchCluster } from './bench-cluster.js';
import { createPgBackRestStanza, newestPgBackRest } from './pgbackrest-stanza.js';
import { measure, type Measured } from './process-tree.js';
import { restorePhases } from './restore-phases.js';

const ROOT = process.env.PGBACULA_BENCH_DIR ?? '/var/tmp/pgbacula-bench';
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const PG = '/usr/lib/postgresql/15/bin';
const DATA = join(ROOT, 'data');
const SOCK = join(ROOT, 'sock');
const PORT = Number(process.env.PGBACULA_BENCH_PORT ?? 55990);
const RESTORE_PORT = PORT + 1;
const RESTORED = join(ROOT, 'restored');
const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const CLI = join(REPO_ROOT, 'bin', 'pgbacula.js');
const NULL_BACKUP = join(REPO_ROOT, 'dist', 'bench', 'e2e', 'null-backup.js');
const SCALE = Number(process.env.BENCH_PGBENCH_SCALE ?? 110);
const MD5_ROWS = Number(process.env.BENCH_MD5_ROWS ?? 3_000_000);

const bench = new BenchCluster(ROOT, PORT);
const pgUser = bench.user;

function fill(c: BenchCluster): void {
  c.asPostgres(`${PG}/pgbench`, ['-i', '-s', String(SCALE), '-q', '-h', SOCK, '-p', String(PORT), '-U', 'postgres', 'postgres']);
  c.psql(`CREATE TABLE md5_rows AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b FROM generate_series(1, ${MD5_ROWS}) g`);
  c.psql('CREATE INDEX md5_rows_a ON md5_rows (a)');
  c.psql('VACUUM ANALYZE');
}

function commit(): string {
  try {
    return execFileSync('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Row {
  readonly name: string;
  readonly runs: Measured[];
}

function summarize(r: Row, bytes: number) {
  const seconds = median(r.runs.map((m) => m.seconds));
  return {
    name: r.name,
    seconds,
    mbPerSecond: bytes / 1e6 / seconds,
    cpuSeconds: median(r.runs.map((m) => m.cpuSeconds)),
    peakRssMiB: Math.max(...r.runs.map((m) => m.peakTreeRssBytes)) / (1024 * 1024),
  };
}

function check(m: Measured, what: string, okCodes: number[] = [0]): Measured {
  if (!okCodes.includes(m.code ?? -1)) throw new Error(`${what} failed (exit ${m.code}): ${m.stderr.slice(-2000)}`);
  return m;
}


/** An empty directory for a restore, owned by postgres, mode 0700, with no server left on it. */
function freshTarget(): void {
  stopRestored();
  rmSync(RESTORED, { recursive: true, force: true });
  mkdirSync(RESTORED, { recursive: true });
  chownSync(RESTORED, pgUser.uid, pgUser.gid);
  chmodSync(RESTORED, 0o700);
}

function stopRestored(): void {
  if (!existsSync(join(RESTORED, 'postmaster.pid'))) return;
  try {
    bench.asPostgres(`${PG}/pg_ctl`, ['-D', RESTORED, '-m', 'immediate', '-w', 'stop']);
  } catch {
    // not running
  }
}

async function main(): Promise<void> {
  if ((process.getuid?.() ?? 1) !== 0) throw new Error('run the benchmark as root (it starts PostgreSQL as the postgres user)');
  bench.build(`s${SCALE}-m${MD5_ROWS}`, fill);
  bench.start();
  const { bytes, files } = bench.size();
  console.log(`bench: PGDATA ${(bytes / 1e9).toFixed(2)} GB in ${files} files; ${RUNS} interleaved runs each; warming the page cache`);
  execFileSync('/bin/sh', ['-c', `find '${DATA}' -type f -exec cat {} + > /dev/null`]);
  const backrest = newestPgBackRest();
  const conf = createPgBackRestStanza(bench, backrest.bin, { block: true });
  // Archiving into pgBackRest's repository: what its restore reads the backup's WAL from.
  bench.psql(`ALTER SYSTEM SET archive_mode = on`);
  bench.psql(`ALTER SYSTEM SET archive_command = '${backrest.bin} --config=${conf} --stanza=bench archive-push %p'`);
  bench.stop();
  bench.start();
  const repo = join(ROOT, 'pgbacula-repo');
  const env = { ...process.env, PGBACULA_PROGRESS_SECONDS: '0' };
  const rows: Record<string, Row> = {
    nullSink: { name: 'pgbacula backup → null sink', runs: [] },
    basebackup: { name: 'pg_basebackup -Ft -X none -c fast → /dev/null', runs: [] },
    repo: { name: 'pgbacula backup → repository (lz4, every page verified)', runs: [] },
    pgbackrest: { name: `${backrest.label} full (bundle + block, lz4-1, process-max=2)`, runs: [] },
    restore: { name: 'pgbacula restore → running, consistent, promoted server', runs: [] },
    backrestRestore: { name: `${backrest.label} restore (process-max=2) + start + promote`, runs: [] },
    verify: { name: 'pgbacula verify --pgdata (offline)', runs: [] },
    checksums: { name: 'pg_checksums --check (offline)', runs: [] },
  };
  for (let i = 0; i < RUNS; i++) {
    rows.nullSink!.runs.push(check(await measure(process.execPath, [NULL_BACKUP, SOCK, String(PORT)], { env }), 'null-sink backup'));
    rows.basebackup!.runs.push(check(await measure('/bin/sh', ['-c', `${PG}/pg_basebackup -h ${SOCK} -p ${PORT} -U postgres -Ft -X none -c fast -D - > /dev/null`], { env }), 'pg_basebackup'));
    rmSync(repo, { recursive: true, force: true });
    rows.repo!.runs.push(check(await measure(process.execPath, [CLI, 'backup', '--repo', repo, '--host', SOCK, '--port', String(PORT), '--user', 'postgres', '--compression-level', '1'], { env }), 'pgbacula backup'));
    rows.pgbackrest!.runs.push(check(await measure(backrest.bin, [`--config=${conf}`, '--stanza=bench', '--type=full', 'backup'], { ...pgUser, env }), 'pgBackRest'));
  }
  // Restores of the last backup of each, interleaved; each ends with a server that answers and is
  // out of recovery, on a port of its own.
  const startAndPromote = [
    `${PG}/pg_ctl -D ${RESTORED} -l ${join(ROOT, 'restored.log')} -o '-p ${RESTORE_PORT} -c archive_mode=off' -w start >/dev/null`,
    `until [ "$(${PG}/psql -X -At -h ${SOCK} -p ${RESTORE_PORT} -U postgres -d postgres -c 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ]; do sleep 0.05; done`,
  ].join(' && ');
  for (let i = 0; i < RUNS; i++) {
    freshTarget();
    const startedAt = Date.now();
    const ours = check(await measure(process.execPath, [CLI, 'restore', '--repo', repo, '--pgdata-dir', RESTORED, '--restore-port', String(RESTORE_PORT), '--pg-bin-dir', PG], { env }), 'pgbacula restore');
    rows.restore!.runs.push(ours);
    console.log(`bench: pgbacula restore ${i + 1}: ${restorePhases(RESTORED, ours, startedAt)}`);
    freshTarget();
    const backrestRestore = `${backrest.bin} --config=${conf} --stanza=bench --pg1-path=${RESTORED} --type=immediate --target-action=promote restore && ${startAndPromote}`;
    rows.backrestRestore!.runs.push(check(await measure('/bin/sh', ['-c', backrestRestore], { ...pgUser, env }), 'pgBackRest restore'));
  }
  freshTarget();
  rmSync(RESTORED, { recursive: true, force: true });
  bench.stop();
  for (let i = 0; i < RUNS; i++) {
    rows.verify!.runs.push(check(await measure(process.execPath, [CLI, 'verify', '--pgdata', DATA], { env }), 'pgbacula verify'));
    rows.checksums!.runs.push(check(await measure(`${PG}/pg_checksums`, ['--check', '-D', DATA], { ...pgUser, env }), 'pg_checksums'));
  }
  bench.start();
  const s = new Map(Object.entries(rows).map(([k, r]) => [k, summarize(r, bytes)]));
  const get = (k: string) => s.get(k)!;
  const ratio = (a: string, b: string) => get(b).seconds / get(a).seconds;
  const line = (k: string, vs?: [string, number]) => {
    const x = get(k);
    return `| ${x.name} | ${x.seconds.toFixed(2)} | ${x.mbPerSecond.toFixed(0)} | ${x.cpuSeconds.toFixed(1)} | ${x.peakRssMiB.toFixed(0)} | ${vs ? `**${ratio(k, vs[0]).toFixed(2)}×** (target ≥ ${vs[1]}×)` : ''} |`;
  };
  const cores = execFileSync('nproc', { encoding: 'utf8' }).trim();
  const out = [
    `PGDATA ${(bytes / 1e9).toFixed(2)} GB, ${files} files (PostgreSQL 15, pgbench scale ${SCALE} + ${MD5_ROWS} md5 rows), ${cores} cores, median of ${RUNS} interleaved runs, page cache warm, ${new Date().toISOString().slice(0, 10)}, commit ${commit()}`,
    '',
    '| run | seconds | MB/s | CPU s | peak RSS MiB | ratio |',
    '|---|---|---|---|---|---|',
    line('nullSink', ['basebackup', 3]),
    line('basebackup'),
    line('repo', ['pgbackrest', 1.6]),
    line('pgbackrest'),
    line('restore', ['backrestRestore', 1.25]),
    line('backrestRestore'),
    line('verify', ['checksums', 2]),
    line('checksums'),
  ].join('\n');
  console.log(out);
  writeFileSync(join(ROOT, 'last-result.md'), out + '\n');
}

await main();
