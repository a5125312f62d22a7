/**
 * Memory stays bounded by design: peak RSS of the whole pgbacula process tree (main thread,
 * worker threads, any child) while backing up (1) a cluster with one 10 GiB table, (2) a cluster
 * with 100,000 small relation files and (3) one with 1,000,000 (empty, synthetic) relation files —
 * to a null sink and to the repository (lz4) — and verifying them. The bar: under 256 MiB
 * everywhere. BENCH_CLUSTERS=many,million measures only those.
 *
 * Run: npm run bench:memory   (as root after ./scripts/setup.sh; ~10 minutes the first time,
 * needs ~12 GB free under PGBACULA_BENCH_DIR, default /var/tmp/pgbacula-bench-memory)
 */
import { chownSync, closeSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchCluster } from './bench-cluster.js';
import { createPgBackRestStanza, newestPgBackRest } from './pgbackrest-stanza.js';
import { measure } from './process-tree.js';

const ROOT = process.env.PGBACULA_BENCH_DIR ?? '/var/tmp/pgbacula-bench-memory';
const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const CLI = join(REPO_ROOT, 'bin', 'pgbacula.js');
const NULL_BACKUP = join(REPO_ROOT, 'dist', 'bench', 'e2e', 'null-backup.js');
const LIMIT_MIB = 256;
const BIG_GIB = Number(process.env.BENCH_BIG_GIB ?? 10);
const SMALL_FILES = Number(process.env.BENCH_SMALL_FILES ?? 100_000);
const MILLION_FILES = Number(process.env.BENCH_MILLION_FILES ?? 1_000_000);
/** Which clusters to measure: names out of big, many, million (default: all). */
const ONLY = (process.env.BENCH_CLUSTERS ?? 'big,many,million').split(',');

const clusters = [
  {
    name: `one ${BIG_GIB} GiB table`,
    cluster: new BenchCluster(join(ROOT, 'big'), 55991),
    key: `big-${BIG_GIB}`,
    fill: (c: BenchCluster) => {
      // ~1 KiB rows; loaded in slices so no single statement holds gigabytes of WAL.
      const rows = Math.round((BIG_GIB * 1024 * 1024 * 1024) / 1100);
      c.psql('CREATE TABLE big (id bigint, payload text) WITH (autovacuum_enabled = off)');
      const slice = 1_000_000;
      for (let from = 1; from <= rows; from += slice) {
        c.psql(`INSERT INTO big SELECT g, repeat(md5(g::text), 30) FROM generate_series(${from}, ${Math.min(rows, from + slice - 1)}) g`);
      }
    },
  },
  {
    name: `${SMALL_FILES.toLocaleString('en-US')} small relation files`,
    cluster: new BenchCluster(join(ROOT, 'many'), 55992),
    key: `many-${SMALL_FILES}`,
    fill: (c: BenchCluster) => {
      const perCall = 5000;
      for (let from = 0; from < SMALL_FILES; from += perCall) {
        c.psql(`DO $$ BEGIN FOR i IN ${from}..${Math.min(SMALL_FILES, from + perCall) - 1} LOOP EXECUTE format('CREATE TABLE small_%s (a int)', i); EXECUTE format('INSERT INTO small_%s VALUES (1)', i); END LOOP; END $$`);
      }
    },
    settings: { max_locks_per_transaction: '512' },
    // The anchor of issue 15's small-file row: the newest pgBackRest, bundling on, side by side.
    pgbackrest: true,
  },
  {
    // The walk, the plan, the manifest and the bundles at a million files: empty relation files
    // made in the postgres database's directory (no catalog rows: the server never opens them).
    name: `${MILLION_FILES.toLocaleString('en-US')} relation files (empty, synthetic)`,
    cluster: new BenchCluster(join(ROOT, 'million'), 55994),
    key: `million-${MILLION_FILES}`,
    fill: (c: BenchCluster) => {
      const db = c.psql("SELECT oid FROM pg_database WHERE datname = 'postgres'").trim();
      const dir = join(c.data, 'base', db);
      for (let i = 0; i < MILLION_FILES; i++) {
        const p = join(dir, String(900_000_000 + i));
        closeSync(openSync(p, 'wx', 0o600));
        chownSync(p, c.user.uid, c.user.gid);
      }
    },
  },
];

async function main(): Promise<void> {
  const env = { ...process.env, PGBACULA_PROGRESS_SECONDS: '0' };
  const lines = ['| cluster | run | seconds | peak RSS MiB (whole process tree) |', '|---|---|---|---|'];
  let worst = 0;
  for (const c of clusters.filter((x) => ONLY.includes(x.key.split('-')[0]!))) {
    c.cluster.build(c.key, c.fill, c.settings);
    c.cluster.start();
    const { bytes, files } = c.cluster.size();
    console.log(`bench: ${c.name}: ${(bytes / 1e9).toFixed(2)} GB in ${files.toLocaleString('en-US')} files`);
    const repo = join(c.cluster.root, 'pgbacula-repo');
    rmSync(repo, { recursive: true, force: true });
    const runs: [string, Promise<Awaited<ReturnType<typeof measure>>>][] = [];
    runs.push(['backup → null sink', measure(process.execPath, [NULL_BACKUP, c.cluster.sock, String(c.cluster.port)], { env })]);
    await runs.at(-1)![1];
    runs.push(['backup → repository (lz4)', measure(process.execPath, [CLI, 'backup', '--repo', repo, '--host', c.cluster.sock, '--port', String(c.cluster.port), '--user', 'postgres', '--compression-level', '1'], { env })]);
    await runs.at(-1)![1];
    runs.push(['verify --pgdata (online)', measure(process.execPath, [CLI, 'verify', '--pgdata', c.cluster.data], { env })]);
    await runs.at(-1)![1];
    if ('pgbackrest' in c) {
      const backrest = newestPgBackRest();
      const conf = createPgBackRestStanza(c.cluster, backrest.bin, { block: true });
      runs.push([`${backrest.label} full (bundle + block, lz4-1, process-max=2)`, measure(backrest.bin, [`--config=${conf}`, '--stanza=bench', '--type=full', 'backup'], { ...c.cluster.user, env })]);
      await runs.at(-1)![1];
      rmSync(join(c.cluster.root, 'pgbackrest-repo'), { recursive: true, force: true });
    }
    for (const [what, p] of runs) {
      const m = await p;
      if (m.code !== 0) throw new Error(`${c.name}: ${what} failed (exit ${m.code}): ${m.stderr.slice(-1500)}`);
      const mib = m.peakTreeRssBytes / (1024 * 1024);
      if (!what.startsWith('pgBackRest')) worst = Math.max(worst, mib);
      lines.push(`| ${c.name} | ${what} | ${m.seconds.toFixed(1)} | ${mib.toFixed(0)} |`);
    }
    rmSync(repo, { recursive: true, force: true });
    c.cluster.stop();
  }
  console.log(lines.join('\n'));
  console.log(`worst peak RSS ${worst.toFixed(0)} MiB — ${worst < LIMIT_MIB ? 'under' : 'OVER'} the ${LIMIT_MIB} MiB bar`);
  if (worst >= LIMIT_MIB) process.exitCode = 1;
}

await main();
