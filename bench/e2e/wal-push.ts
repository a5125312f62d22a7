/**
 * wal-push throughput: segments per second archiving real 16 MiB WAL segments with the built
 * CLI, one process per segment and one after the other — exactly what PostgreSQL's archiver
 * does with archive_command. Measured side by side in ONE run, interleaved BENCH_RUNS times,
 * on a Debian PostgreSQL 15 cluster built once (its WAL filled by inserts, so every segment is
 * full of real records):
 *
 *   pgbacula wal-push --repo R FILE        the CLI, as archive_command runs it (cwd = PGDATA)
 *   pgbacula-wal-push --repo R FILE        the native helper (native/wal-push), same rules, no Node start
 *   pushWalFile() in-process               the same work without starting Node each time
 *   pgbackrest archive-push (none / lz4-1) the anchor, synchronous mode: Debian's /usr/bin/pgbackrest
 *                                          and the newest one (scripts/pgbackrest-newest.sh) when it can be set up
 *   cp FILE DEST                           the naive archive_command (no validation, no fsync)
 *
 * Each pushes every segment into an empty destination; all run as the postgres OS user (like
 * the archiver) except the in-process one. Prints medians: seconds, segments/s, MB/s, ms per
 * segment, and the load average before and after (the figures are only comparable within one run
 * on a shared machine). Run: npm run build && node dist/bench/e2e/wal-push.js   (as root, after
 * ./scripts/setup.sh; BENCH_WAL_SEGMENTS (64), BENCH_RUNS (3), PGBACULA_BENCH_DIR)
 */
import { execFileSync, spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { chownSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pushWalFile } from '../../src/archive/push.js';
import { BenchCluster } from './bench-cluster.js';

const ROOT = join(process.env.PGBACULA_BENCH_DIR ?? '/var/tmp/pgbacula-bench', '..', 'pgbacula-bench-walpush');
const PORT = Number(process.env.PGBACULA_BENCH_WAL_PORT ?? 55993);
const SEGMENTS = Number(process.env.BENCH_WAL_SEGMENTS ?? 64);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SEG = 16 * 1024 * 1024;
const CLI = fileURLToPath(new URL('../../../bin/pgbacula.js', import.meta.url));
const NATIVE = fileURLToPath(new URL('../../../native/build/pgbacula-wal-push', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SRC = join(ROOT, 'segments');

const bench = new BenchCluster(ROOT, PORT);
const pg = bench.user;

function fill(c: BenchCluster): void {
  c.psql("SELECT pg_create_physical_replication_slot('keep', true)");
  c.psql('CREATE TABLE w (a text)');
  const start = c.psql('SELECT pg_current_wal_lsn()').trim();
  for (;;) {
    c.psql("INSERT INTO w SELECT md5(g::text) || repeat('x', 60) FROM generate_series(1, 200000) g");
    const n = Number(c.psql(`SELECT floor(pg_wal_lsn_diff(pg_current_wal_lsn(), '${start}') / ${SEG})`));
    if (n >= SEGMENTS + 1) break;
  }
  // Complete segments (not the one being written) become the push sources.
  const current = c.psql('SELECT pg_walfile_name(pg_current_wal_lsn())').trim();
  mkdirSync(SRC, { recursive: true });
  const names = readdirSync(join(c.data, 'pg_wal')).filter((n) => /^[0-9A-F]{24}$/.test(n) && n < current).sort().slice(-SEGMENTS);
  for (const n of names) cpSync(join(c.data, 'pg_wal', n), join(SRC, n));
  chownSync(SRC, pg.uid, pg.gid);
  for (const n of names) chownSync(join(SRC, n), pg.uid, pg.gid);
}

function run(cmd: string, args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { uid: pg.uid, gid: pg.gid, cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr}`))));
  });
}

function freshDir(name: string): string {
  const d = join(ROOT, 'dest', name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  chownSync(d, pg.uid, pg.gid);
  chownSync(join(ROOT, 'dest'), pg.uid, pg.gid);
  return d;
}

/** The newest pgBackRest (scripts/pgbackrest-newest.sh), or undefined when it cannot be set up here. */
function newestPgBackRest(): { bin: string; version: string } | undefined {
  try {
    const bin = execFileSync(join(REPO_ROOT, 'scripts', 'pgbackrest-newest.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').at(-1)!;
    return { bin, version: execFileSync(bin, ['version'], { encoding: 'utf8' }).trim().replace(/^pgBackRest /, '') };
  } catch (e) {
    console.error(`bench: the newest pgBackRest could not be set up (${((e as Error).message ?? '').split('\n')[0]}); measuring Debian's only`);
    return undefined;
  }
}

function pgbackrestConf(compress: 'none' | 'lz4', bin = '/usr/bin/pgbackrest', tag = ''): string {
  const dir = freshDir(`pgbackrest${tag}-${compress}`);
  const conf = join(dir, 'pgbackrest.conf');
  for (const d of ['repo', 'log', 'lock', 'spool']) {
    mkdirSync(join(dir, d));
    chownSync(join(dir, d), pg.uid, pg.gid);
  }
  writeFileSync(conf, [
    '[global]', `repo1-path=${join(dir, 'repo')}`, `log-path=${join(dir, 'log')}`, `lock-path=${join(dir, 'lock')}`, `spool-path=${join(dir, 'spool')}`,
    `compress-type=${compress}`, 'compress-level=1', 'log-level-console=error', 'log-level-file=off', 'archive-async=n', '',
    '[walbench]', `pg1-path=${bench.data}`, `pg1-port=${PORT}`, `pg1-socket-path=${bench.sock}`, '',
  ].join('\n'));
  chownSync(conf, pg.uid, pg.gid);
  bench.asPostgres(bin, [`--config=${conf}`, '--stanza=walbench', 'stanza-create']);
  return conf;
}

type Tool = { name: string; prepare(): Promise<(seg: string) => Promise<void>> };

const DEBIAN_PGBACKREST = execFileSync('/usr/bin/pgbackrest', ['version'], { encoding: 'utf8' }).trim().replace(/^pgBackRest /, '');
const NEWEST = newestPgBackRest();

const TOOLS: Tool[] = [
  {
    name: 'pgbacula wal-push (CLI, archive_command)',
    async prepare() {
      const repo = freshDir('pgbacula');
      return (seg) => run(process.execPath, [CLI, 'wal-push', '--repo', repo, seg], bench.data);
    },
  },
  {
    name: 'pgbacula-wal-push (native helper, archive_command)',
    async prepare() {
      const repo = freshDir('pgbacula-native');
      return (seg) => run(NATIVE, ['--repo', repo, seg], bench.data);
    },
  },
  {
    name: 'pushWalFile() in-process (no Node start)',
    async prepare() {
      const root = join(freshDir('pgbacula-lib'), 'wal');
      return async (seg) => {
        await pushWalFile({ root, sourcePath: seg, pgdata: bench.data, singleSystem: true });
      };
    },
  },
  ...[
    { bin: '/usr/bin/pgbackrest', version: DEBIAN_PGBACKREST, tag: '' },
    ...(NEWEST === undefined ? [] : [{ ...NEWEST, tag: '-newest' }]),
  ].flatMap(({ bin, version, tag }) =>
    (['none', 'lz4'] as const).map((compress) => ({
      name: `pgbackrest ${version} archive-push (${compress === 'none' ? 'compress none' : 'lz4 level 1'})`,
      async prepare() {
        const conf = pgbackrestConf(compress, bin, tag);
        return (seg: string) => run(bin, [`--config=${conf}`, '--stanza=walbench', 'archive-push', seg], bench.data);
      },
    })),
  ),
  {
    name: 'cp (no validation, no fsync)',
    async prepare() {
      const dest = freshDir('cp');
      return (seg) => run('/bin/cp', [seg, join(dest, seg.split('/').pop()!)], bench.data);
    },
  },
];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main(): Promise<void> {
  if (!existsSync(CLI) || !existsSync(NATIVE)) throw new Error(`${CLI} or ${NATIVE} is missing: run npm run build`);
  const loadBefore = loadavg();
  bench.build(`walpush-${SEGMENTS}`, fill, { wal_level: "'replica'", archive_mode: 'off' });
  bench.start();
  const segs = readdirSync(SRC).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort().map((n) => join(SRC, n));
  if (segs.length < SEGMENTS) throw new Error(`only ${segs.length} segments in ${SRC}; remove ${ROOT} and run again`);
  console.log(`wal-push bench: ${segs.length} real segments of ${SEG / 1048576} MiB (PostgreSQL 15), ${RUNS} runs, interleaved; node ${process.version}`);
  const seconds = new Map<string, number[]>(TOOLS.map((t) => [t.name, []]));
  for (let r = 0; r < RUNS; r++) {
    for (const tool of TOOLS) {
      const push = await tool.prepare();
      const t0 = process.hrtime.bigint();
      for (const seg of segs) await push(seg);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      seconds.get(tool.name)!.push(s);
      console.log(`  run ${r + 1}: ${tool.name.padEnd(42)} ${s.toFixed(2)} s`);
    }
  }
  const bytes = segs.length * SEG;
  console.log('\nmedian of runs (each: every segment into an empty destination, one process after the other)');
  console.log(`| tool | seconds | segments/s | MB/s | ms per segment |\n|---|---|---|---|---|`);
  for (const tool of TOOLS) {
    const s = median(seconds.get(tool.name)!);
    console.log(`| ${tool.name} | ${s.toFixed(2)} | ${(segs.length / s).toFixed(1)} | ${(bytes / 1e6 / s).toFixed(0)} | ${((1000 * s) / segs.length).toFixed(1)} |`);
  }
  // Identical re-push (what the archiver does after a crash between archive and .done).
  for (const [label, file, prefix, dest] of [
    ['CLI', process.execPath, [CLI, 'wal-push'], 'pgbacula'],
    ['native helper', NATIVE, [], 'pgbacula-native'],
  ] as const) {
    const repo = join(ROOT, 'dest', dest);
    const t0 = process.hrtime.bigint();
    for (const seg of segs.slice(0, 16)) await run(file, [...prefix, '--repo', repo, seg], bench.data);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`identical re-push (${label}): ${(16 / s).toFixed(1)} segments/s`);
  }
  const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  console.log(`\nload average (1, 5, 15 min): before ${fmtLoad(loadBefore)}, after ${fmtLoad(loadavg())}; ${new Date().toISOString()}`);
  rmSync(join(ROOT, 'dest'), { recursive: true, force: true });
}

await main();
