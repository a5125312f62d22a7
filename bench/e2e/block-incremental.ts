/**
 * Block-level incremental backups (mode pitr_block, docs/block-incremental.md) against the
 * tools users compare them with, side by side in ONE run on ONE warm PostgreSQL 17 cluster
 * (pgbench scale 140 by default, > 2 GB; archiving into a pgbacula repository; summarize_wal=on):
 *
 *   1. fulls: a pgbacula pitr_block full that starts the chain, and one base full each for the
 *      other rows below;
 *   2. BENCH_RUNS rounds of the change set — UPDATE of 5 % of pgbench_accounts' rows in one
 *      contiguous aid range and of 1 % scattered rows (BENCH_CONTIGUOUS_PCT, BENCH_SCATTERED_PCT),
 *      then CHECKPOINT — each followed, in an order rotated every round, by a pgbacula pitr_block
 *      full into a third repository (the "pitr Full" of the ratios: measured under the same load
 *      as the incrementals, not before them) and an incremental of:
 *        pgbacula pitr_block incr, changed blocks from the server's summaries;
 *        pgbacula pitr_block incr, changed blocks from pgbacula's own summaries (a second
 *          repository sharing the first one's WAL archive; summarize_wal is turned off for that
 *          job only — pgbacula has no other switch);
 *        pg_basebackup --incremental (PostgreSQL 18 client tools, -Ft into a directory, WAL streamed);
 *        pgBackRest's block incremental (the newest from Debian sid, scripts/pgbackrest-newest.sh;
 *          Debian 12's 2.45 file-level incremental, labelled so, when sid cannot be reached);
 *      the truly changed blocks of each round are counted independently: pages of the relation
 *      files whose page LSN is at or after the reference backup's start; pgbacula's bytes read
 *      from relation files are its manifest's changedBlocks.bytesRead plus the relation files it
 *      stored whole, its bytes stored are the manifest's file sizes (before compression) and
 *      stored sizes, WAL excluded;
 *   3. more rounds until the first repository holds a chain of a full and BENCH_CHAIN (6)
 *      incrementals, a pitr_block full of the same data, then restores of both, interleaved;
 *   4. WAL summarizing throughput: pgbacula's summarizer (src/wal/block-refs.ts summarizeSegment)
 *      over the archived segments, one core.
 *
 * Medians are printed as a Markdown table (and written to <dir>/last-result.md).
 *
 * Run: npm run bench:block   (as root after ./scripts/setup.sh; PGBACULA_BENCH_BLOCK_DIR,
 * BENCH_RUNS, BENCH_PGBENCH_SCALE, BENCH_CHAIN, BENCH_WAL_SEGMENTS)
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { summarizeSegment } from '../../src/wal/block-refs.js';
import { parseLsn } from '../../src/wal/lsn.js';
import { embeddedPgDir, PG18_CLIENT_BIN } from '../../test/harness/pg-binaries.js';
import { BenchCluster } from './bench-cluster.js';
import { createPgBackRestStanza, newestPgBackRest } from './pgbackrest-stanza.js';
import { measure, type Measured } from './process-tree.js';
import { restorePhases } from './restore-phases.js';

const ROOT = process.env.PGBACULA_BENCH_BLOCK_DIR ?? '/var/tmp/pgbacula-bench-block';
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const CHAIN = Math.max(Number(process.env.BENCH_CHAIN ?? 6), RUNS);
const SCALE = Number(process.env.BENCH_PGBENCH_SCALE ?? 140);
const CONTIGUOUS_PCT = Number(process.env.BENCH_CONTIGUOUS_PCT ?? 5);
const SCATTERED_PCT = Number(process.env.BENCH_SCATTERED_PCT ?? 1);
const WAL_SEGMENTS = Number(process.env.BENCH_WAL_SEGMENTS ?? 64);
const PORT = Number(process.env.PGBACULA_BENCH_PORT ?? 55993);
const RESTORE_PORT = PORT + 1;
const MAJOR = 17;
const PG_BIN = join(embeddedPgDir(MAJOR), 'bin');
const CLIENT = PG18_CLIENT_BIN;
const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const CLI = join(REPO_ROOT, 'bin', 'pgbacula.js');
const PAGE = 8192;

const REPO_A = join(ROOT, 'repo-server-summaries');
const REPO_B = join(ROOT, 'repo-own-summaries');
/** The fulls of the ratios, one per round, in the rotation with the incrementals (same load, same data). */
const REPO_C = join(ROOT, 'repo-round-fulls');
const BB_DIR = join(ROOT, 'pg_basebackup');

const bench = new BenchCluster(ROOT, PORT, PG_BIN, CLIENT);
const pgUser = bench.user;
const ROWS = SCALE * 100_000;
const env = { ...process.env, PGBACULA_PROGRESS_SECONDS: '0' };

function fill(c: BenchCluster): void {
  c.asPostgres(`${CLIENT}/pgbench`, ['-i', '-s', String(SCALE), '-q', '-h', c.sock, '-p', String(PORT), '-U', 'postgres', 'postgres']);
  // Hint bits and the visibility map set now, so a round's changes are its UPDATEs only.
  c.psql('VACUUM (FREEZE, ANALYZE)');
}

// ---------------------------------------------------------------------------------------------
// pgBackRest: the newest, or Debian's as a labelled fallback

interface BackRest {
  readonly bin: string;
  readonly label: string;
  readonly block: boolean;
  readonly conf: string;
}

function setUpPgBackRest(): BackRest {
  const { bin, label: version, newest: block } = newestPgBackRest();
  const label = block ? `${version} block incremental (bundle + block)` : `${version} FILE-LEVEL incremental (fallback: no newer pgBackRest)`;
  const conf = createPgBackRestStanza(bench, bin, { block });
  return { bin, label, block, conf };
}

function ownedDir(d: string): void {
  mkdirSync(d, { recursive: true });
  chownSync(d, pgUser.uid, pgUser.gid);
}

// ---------------------------------------------------------------------------------------------
// The cluster between jobs

/** One query's output, trimmed. */
const sql = (q: string): string => bench.psql(q).trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** No WAL waiting for the archiver, and the server's summarizer caught up: nothing runs behind a timed job. */
async function quiesce(): Promise<void> {
  const status = join(bench.data, 'pg_wal', 'archive_status');
  const lsn = sql('SELECT pg_current_wal_insert_lsn()');
  const end = Date.now() + 300_000;
  for (;;) {
    const ready = readdirSync(status).filter((f) => f.endsWith('.ready')).length;
    const on = sql('SHOW summarize_wal') === 'on';
    const caughtUp = !on || sql(`SELECT pending_lsn >= '${lsn}'::pg_lsn FROM pg_get_wal_summarizer_state()`) === 't';
    if (ready === 0 && caughtUp) return;
    if (Date.now() > end) throw new Error(`the cluster did not settle: ${ready} segments not archived, summarizer caught up: ${caughtUp}`);
    await sleep(200);
  }
}

async function setSummarizeWal(on: boolean): Promise<void> {
  sql(`ALTER SYSTEM SET summarize_wal = ${on ? 'on' : 'off'}`);
  sql('SELECT pg_reload_conf()');
  const want = on ? 'on' : 'off';
  const end = Date.now() + 30_000;
  while (sql('SHOW summarize_wal') !== want) {
    if (Date.now() > end) throw new Error(`summarize_wal did not become ${want}`);
    await sleep(100);
  }
}

/** Round k's change set: a contiguous aid range, then scattered rows outside it (index scans only, so no other page is touched). */
function changeSet(k: number): { contiguous: number; scattered: number; seconds: number } {
  const t0 = Date.now();
  const len = Math.round((ROWS * CONTIGUOUS_PCT) / 100);
  const lo = 1 + ((k - 1) * Math.round(len * 1.37)) % (ROWS - len);
  const hi = lo + len - 1;
  const want = Math.round((ROWS * SCATTERED_PCT) / 100);
  // A multiplicative hash by a prime modulo the row count: distinct, evenly spread aids.
  const gen = Math.round(want / (1 - CONTIGUOUS_PCT / 100));
  const noSeqScan = 'SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off;';
  const count = (update: string) => Number(sql(`${noSeqScan} WITH u AS (${update} RETURNING 1) SELECT count(*) FROM u`).trim());
  const contiguous = count(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN ${lo} AND ${hi}`);
  const scattered = count(
    `UPDATE pgbench_accounts a SET abalance = abalance + 1 FROM (SELECT 1 + ((g::bigint * 2654435761 + ${k * 7919}) % ${ROWS}) AS aid FROM generate_series(1, ${gen}) g) s ` +
      `WHERE a.aid = s.aid AND s.aid NOT BETWEEN ${lo} AND ${hi}`,
  );
  sql('CHECKPOINT');
  return { contiguous, scattered, seconds: (Date.now() - t0) / 1000 };
}

/** Pages of the relation files (not the free-space map) whose page LSN is at or after `from`: what truly changed since. */
function changedPages(from: bigint): { pages: number; relationBytes: number } {
  let pages = 0;
  let relationBytes = 0;
  const buf = Buffer.allocUnsafe(1 << 20);
  const hi = Number(from >> 32n);
  const lo = Number(from & 0xffffffffn);
  for (const dir of ['global', ...readdirSync(join(bench.data, 'base')).map((d) => join('base', d))]) {
    for (const name of readdirSync(join(bench.data, dir))) {
      if (!/^\d+(_vm|_init)?(\.\d+)?$/.test(name)) continue;
      const fd = openSync(join(bench.data, dir, name), 'r');
      try {
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, null);
          if (n <= 0) break;
          relationBytes += n;
          for (let off = 0; off + PAGE <= n; off += PAGE) {
            const pageHi = buf.readUInt32LE(off);
            const pageLo = buf.readUInt32LE(off + 4);
            if (pageHi > hi || (pageHi === hi && pageLo >= lo)) pages++;
          }
        }
      } finally {
        closeSync(fd);
      }
    }
  }
  return { pages, relationBytes };
}

// ---------------------------------------------------------------------------------------------
// The jobs

interface Job {
  readonly seconds: number;
  readonly cpuSeconds: number;
  /** Bytes of relation files read for incremental files (pgbacula's manifest changedBlocks.bytesRead), when known. */
  readonly bytesRead?: number;
  /** Bytes of relation files stored whole (read whole), when known. */
  readonly wholeRelationBytes?: number;
  /** Bytes stored, WAL excluded: before compression (when known) and as stored. */
  readonly rawBytes?: number;
  readonly storedBytes: number;
  readonly source?: string;
  readonly id?: string;
  readonly startLsn?: string;
  readonly stopLsn?: string;
}

function check(m: Measured, what: string): Measured {
  if (m.code !== 0) throw new Error(`${what} failed (exit ${m.code}): ${m.stderr.slice(-3000)}`);
  return m;
}

interface PgbaculaManifest {
  backupId: string;
  level: string;
  startLsn: string;
  stopLsn: string;
  fullBecause?: string;
  changedBlocks?: { source: string; changedBlocks: number; bytesRead: number; bytesSkipped: number };
  files: { path: string; size: number; storedSize?: number }[];
}

async function pgbacula(repo: string, type: 'full' | 'incr', what: string): Promise<Job & { manifest: PgbaculaManifest }> {
  const m = check(await measure(process.execPath, [CLI, 'backup', '--repo', repo, '--mode', 'pitr_block', '--type', type, '--compression-level', '1', '--host', bench.sock, '--port', String(PORT), '--user', 'postgres'], { env }), what);
  const id = /backup (\S+) complete/.exec(m.stdout)?.[1];
  if (!id) throw new Error(`${what}: no backup id in ${m.stdout}`);
  // The job log, for a look at where the time went.
  mkdirSync(join(ROOT, 'logs'), { recursive: true });
  writeFileSync(join(ROOT, 'logs', `${id}.log`), `${what}\n${m.stderr}${m.stdout}`);
  const manifest = JSON.parse(readFileSync(join(repo, 'backups', id, 'manifest.json'), 'utf8')) as PgbaculaManifest;
  if (type === 'incr' && manifest.level !== 'incremental') throw new Error(`${what}: a ${manifest.level} backup was taken: ${manifest.fullBecause ?? m.stderr.slice(-2000)}`);
  const data = manifest.files.filter((f) => !f.path.startsWith('wal/'));
  const relation = /^(pgdata\/(base\/\d+|global)|tablespaces\/\d+\/[^/]+\/\d+)\/\d+(_(vm|fsm|init))?(\.\d+)?$/;
  return {
    wholeRelationBytes: data.filter((f) => relation.test(f.path)).reduce((n, f) => n + f.size, 0),
    seconds: m.seconds,
    cpuSeconds: m.cpuSeconds,
    ...(manifest.changedBlocks ? { bytesRead: manifest.changedBlocks.bytesRead, source: manifest.changedBlocks.source } : {}),
    rawBytes: data.reduce((n, f) => n + f.size, 0),
    storedBytes: data.reduce((n, f) => n + (f.storedSize ?? f.size), 0),
    id,
    startLsn: manifest.startLsn,
    stopLsn: manifest.stopLsn,
    manifest,
  };
}

let bbPrevious: string | undefined;
let bbCount = 0;

async function pgBasebackup(incremental: boolean): Promise<Job> {
  const dir = join(BB_DIR, String(++bbCount));
  rmSync(dir, { recursive: true, force: true });
  const args = ['-h', bench.sock, '-p', String(PORT), '-U', 'postgres', '-D', dir, '-Ft', '-c', 'fast', ...(incremental ? [`--incremental=${join(bbPrevious!, 'backup_manifest')}`] : [])];
  const m = check(await measure(join(CLIENT, 'pg_basebackup'), args, { env }), 'pg_basebackup');
  const stored = readdirSync(dir).filter((f) => f !== 'pg_wal.tar').reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  // Only the newest backup's manifest is needed by the next one.
  if (bbPrevious) rmSync(bbPrevious, { recursive: true, force: true });
  bbPrevious = dir;
  return { seconds: m.seconds, cpuSeconds: m.cpuSeconds, rawBytes: stored, storedBytes: stored };
}

async function pgBackRest(br: BackRest, type: 'full' | 'incr'): Promise<Job> {
  const m = check(await measure(br.bin, [`--config=${br.conf}`, '--stanza=bench', `--type=${type}`, 'backup'], { ...pgUser, env }), `pgBackRest ${type}`);
  const info = JSON.parse(bench.asPostgres(br.bin, [`--config=${br.conf}`, '--stanza=bench', '--output=json', 'info'])) as { backup: { info: { delta: number; repository: { delta: number } } }[] }[];
  const last = info[0]!.backup.at(-1)!.info;
  return { seconds: m.seconds, cpuSeconds: m.cpuSeconds, rawBytes: last.delta, storedBytes: last.repository.delta };
}

async function restore(backupId: string, targetLsn: string): Promise<Measured> {
  const target = join(ROOT, 'restore');
  stopRestored(target);
  rmSync(target, { recursive: true, force: true });
  ownedDir(target);
  // PostgreSQL starts only in a data directory of mode 0700 or 0750.
  chmodSync(target, 0o700);
  const started = Date.now();
  const m = check(
    await measure(process.execPath, [CLI, 'restore', '--repo', REPO_A, '--backup', backupId, '--pgdata-dir', target, '--restore-port', String(RESTORE_PORT), '--pg-bin-dir', PG_BIN, '--target-lsn', targetLsn], { env }),
    `restore of ${backupId}`,
  );
  console.log(`  restore of ${backupId}: ${restorePhases(target, m, started)}`);
  stopRestored(target);
  rmSync(target, { recursive: true, force: true });
  return m;
}

function stopRestored(target: string): void {
  if (!existsSync(join(target, 'postmaster.pid'))) return;
  try {
    bench.asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', target, '-m', 'immediate', '-w', 'stop']);
  } catch {
    // not running
  }
}

/**
 * pgbacula's summarizer over the newest archived segments full of records (the rounds' WAL; the
 * nearly empty segments a backup's WAL switch leaves are skipped), in this process: MB of WAL per
 * second on one core.
 */
function walSummarizing(): { segments: number; mb: number; seconds: number; records: number } {
  const systems = readdirSync(join(REPO_A, 'wal')).filter((d) => /^\d+$/.test(d));
  const tlDir = join(REPO_A, 'wal', systems[0]!, '00000001');
  const names = readdirSync(tlDir).filter((f) => /^[0-9A-F]{24}$/.test(f)).sort().reverse();
  let bytes = 0;
  let records = 0;
  let ns = 0n;
  let segments = 0;
  for (const name of names) {
    if (segments >= WAL_SEGMENTS) break;
    const b = readFileSync(join(tlDir, name));
    const segno = (BigInt(`0x${name.slice(8, 16)}`) * 0x100000000n) / BigInt(b.length) + BigInt(`0x${name.slice(16)}`);
    const t0 = process.hrtime.bigint();
    const s = summarizeSegment(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), { timeline: 1, segmentSize: b.length, segno });
    const t = process.hrtime.bigint() - t0;
    if (s.untrusted) throw new Error(`${name}: ${s.untrusted}`);
    if (s.records < 1000 || s.endOfWal !== undefined) continue;
    ns += t;
    bytes += b.length;
    records += s.records;
    segments++;
  }
  return { segments, mb: bytes / 1e6, seconds: Number(ns) / 1e9, records };
}

// ---------------------------------------------------------------------------------------------

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

async function main(): Promise<void> {
  if ((process.getuid?.() ?? 1) !== 0) throw new Error('run the benchmark as root (it starts PostgreSQL as the postgres user)');
  const loadStart = load();
  bench.build(
    `pg${MAJOR}-s${SCALE}`,
    (c) => {
      ownedDir(REPO_A);
      fill(c);
    },
    {
      summarize_wal: 'on',
      archive_mode: 'on',
      archive_command: `'${archiveCommandLine({ repo: REPO_A }).replace(/'/g, "''")}'`,
      // Rounds must change only what their UPDATEs change.
      autovacuum: 'off',
      // WAL stays in pg_wal while summarize_wal is off for a job, so the summarizer resumes without a gap.
      wal_keep_size: "'4GB'",
    },
  );
  bench.start();
  // Set on every run, not only when the cluster is built: the archive must be this checkout's
  // wal-push into this run's repository, whatever an earlier run or a hand left configured.
  sql(`ALTER SYSTEM SET archive_command = '${archiveCommandLine({ repo: REPO_A }).replace(/'/g, "''")}'`);
  sql('SELECT pg_reload_conf()');
  await setSummarizeWal(true);
  const { bytes, files } = bench.size();
  console.log(`bench: PGDATA ${(bytes / 1e9).toFixed(2)} GB in ${files} files (PostgreSQL ${MAJOR}, pgbench -s ${SCALE}); load ${loadStart}`);

  // Fresh repositories; the archive starts after the archiver has gone quiet.
  sql('SELECT pg_switch_wal()');
  await quiesce();
  for (const d of [REPO_A, REPO_B, REPO_C, BB_DIR]) rmSync(d, { recursive: true, force: true });
  ownedDir(REPO_A);
  ownedDir(join(REPO_A, 'wal'));
  ownedDir(REPO_B);
  symlinkSync(join(REPO_A, 'wal'), join(REPO_B, 'wal'));
  ownedDir(REPO_C);
  symlinkSync(join(REPO_A, 'wal'), join(REPO_C, 'wal'));
  mkdirSync(BB_DIR, { recursive: true });
  const backrest = setUpPgBackRest();
  console.log(`bench: ${backrest.label}; warming the page cache`);
  execFileSync('/bin/sh', ['-c', `find '${bench.data}' -type f -exec cat {} + > /dev/null`]);

  // 1. Fulls.
  // One full starts the chain; the fulls of the ratios are taken in the rounds.
  await quiesce();
  const fulls: Job[] = [await pgbacula(REPO_A, 'full', 'pgbacula full')];
  await quiesce();
  await setSummarizeWal(false);
  const fullB = await pgbacula(REPO_B, 'full', 'pgbacula full (own summaries)');
  await setSummarizeWal(true);
  await quiesce();
  const fullBb = await pgBasebackup(false);
  await quiesce();
  const fullBr = await pgBackRest(backrest, 'full');
  console.log(`bench: fulls: pgbacula ${fulls.map((f) => f.seconds.toFixed(1)).join(', ')} s; own-summaries repo ${fullB.seconds.toFixed(1)} s; pg_basebackup ${fullBb.seconds.toFixed(1)} s; pgBackRest ${fullBr.seconds.toFixed(1)} s`);

  // 2. Incremental rounds.
  type Tool = 'server' | 'own' | 'basebackup' | 'backrest' | 'full';
  const tools: Tool[] = ['server', 'own', 'basebackup', 'backrest', 'full'];
  const jobs: Record<Tool, Job[]> = { server: [], own: [], basebackup: [], backrest: [], full: [] };
  const truth: { pages: number; rows: number; changeSeconds: number }[] = [];
  let lastA = fulls.at(-1)!;
  const chain: string[] = [];
  for (let r = 1; r <= RUNS; r++) {
    const cs = changeSet(r);
    await quiesce();
    const t = changedPages(parseLsn(lastA.startLsn!));
    truth.push({ pages: t.pages, rows: cs.contiguous + cs.scattered, changeSeconds: cs.seconds });
    console.log(`bench: round ${r}: ${cs.contiguous} + ${cs.scattered} rows updated in ${cs.seconds.toFixed(1)} s; ${t.pages} pages changed (${mib(t.pages * PAGE)} MiB of ${mib(t.relationBytes)} MiB of relation files); load ${load()}`);
    const order = tools.map((_, i) => tools[(i + r - 1) % tools.length]!);
    for (const tool of order) {
      await quiesce();
      if (tool === 'server') {
        const j = await pgbacula(REPO_A, 'incr', 'pgbacula incr (server summaries)');
        if (j.source !== 'server summaries') throw new Error(`the server-summaries job used ${j.source}`);
        jobs.server.push(j);
        lastA = j;
        chain.push(j.id!);
      } else if (tool === 'own') {
        await setSummarizeWal(false);
        const j = await pgbacula(REPO_B, 'incr', 'pgbacula incr (own summaries)').finally(() => setSummarizeWal(true));
        if (j.source !== 'pgbacula summaries') throw new Error(`the own-summaries job used ${j.source}`);
        jobs.own.push(j);
      } else if (tool === 'full') {
        jobs.full.push(await pgbacula(REPO_C, 'full', 'pgbacula full (the round\'s reference for the ratios)'));
      } else if (tool === 'basebackup') {
        jobs.basebackup.push(await pgBasebackup(true));
      } else {
        jobs.backrest.push(await pgBackRest(backrest, 'incr'));
      }
      const j = jobs[tool].at(-1)!;
      console.log(`  ${tool}: ${j.seconds.toFixed(2)} s, stored ${mib(j.storedBytes)} MiB${j.bytesRead !== undefined ? `, read ${mib(j.bytesRead)} MiB` : ''}`);
    }
  }

  // 3. The rest of the chain, a full of the same data, restores.
  for (let r = RUNS + 1; chain.length < CHAIN; r++) {
    const cs = changeSet(r);
    await quiesce();
    const j = await pgbacula(REPO_A, 'incr', 'pgbacula incr (chain)');
    chain.push(j.id!);
    lastA = j;
    console.log(`bench: chain round ${r}: ${cs.contiguous + cs.scattered} rows; incremental ${j.seconds.toFixed(2)} s`);
  }
  await quiesce();
  const finalFull = await pgbacula(REPO_A, 'full', 'pgbacula full (of the chain end)');
  const restores: { chain: number[]; full: number[] } = { chain: [], full: [] };
  for (let i = 0; i < RUNS; i++) {
    restores.chain.push((await restore(lastA.id!, lastA.stopLsn!)).seconds);
    restores.full.push((await restore(finalFull.id!, finalFull.stopLsn!)).seconds);
    console.log(`bench: restore ${i + 1}: full + ${chain.length} incrementals ${restores.chain.at(-1)!.toFixed(1)} s, one full ${restores.full.at(-1)!.toFixed(1)} s`);
  }

  // 4. WAL summarizing.
  const ws = walSummarizing();
  const loadEnd = load();

  // Report.
  const changedBytes = median(truth.map((t) => t.pages)) * PAGE;
  const fullSeconds = median(jobs.full.map((f) => f.seconds));
  const med = (t: Tool, f: (j: Job) => number | undefined) => {
    const xs = jobs[t].map(f).filter((x): x is number => x !== undefined);
    return xs.length ? median(xs) : undefined;
  };
  const names: Record<Tool, string> = {
    server: 'pgbacula pitr_block incr (server summaries)',
    own: 'pgbacula pitr_block incr (pgbacula summaries)',
    basebackup: 'pg_basebackup 18 --incremental (-Ft, no compression)',
    backrest: backrest.label,
    full: 'pgbacula pitr_block full (the reference of the last column)',
  };
  const row = (t: Tool) => {
    const s = med(t, (j) => j.seconds)!;
    const read = med(t, (j) => (j.bytesRead === undefined ? undefined : j.bytesRead + (j.wholeRelationBytes ?? 0)));
    const raw = med(t, (j) => j.rawBytes);
    const stored = med(t, (j) => j.storedBytes)!;
    return `| ${names[t]} | ${s.toFixed(2)} | ${med(t, (j) => j.cpuSeconds)!.toFixed(1)} | ${read === undefined ? '–' : `${mib(read)} (${(read / changedBytes).toFixed(2)}×)`} | ${raw === undefined ? '–' : `${mib(raw)} (${(raw / changedBytes).toFixed(2)}×)`} | ${mib(stored)} | ${(s / fullSeconds).toFixed(2)}× |`;
  };
  const cores = execFileSync('nproc', { encoding: 'utf8' }).trim();
  const out = [
    `PGDATA ${(bytes / 1e9).toFixed(2)} GB (PostgreSQL ${MAJOR}, pgbench -s ${SCALE}), ${cores} cores, load average ${loadStart} at the start and ${loadEnd} at the end; median of ${RUNS} interleaved rounds, page cache warm.`,
    `Change set per round: ${CONTIGUOUS_PCT} % of pgbench_accounts' rows in one aid range + ${SCATTERED_PCT} % scattered (${median(truth.map((t) => t.rows))} rows), CHECKPOINT: ` +
      `${median(truth.map((t) => t.pages))} pages changed = **${mib(changedBytes)} MiB** (page LSN at or after the reference's start).`,
    `pitr_block full, taken in each round in the rotation with the incrementals (the reference for the ratios): ${fullSeconds.toFixed(2)} s, stored ${mib(median(jobs.full.map((f) => f.storedBytes)))} MiB; the fulls before the rounds: ${fulls.map((f) => f.seconds.toFixed(2)).join(', ')} s; ` +
      `pg_basebackup full ${fullBb.seconds.toFixed(2)} s; ${backrest.label.replace(/ (block|FILE-LEVEL) incremental.*/, '')} full ${fullBr.seconds.toFixed(2)} s.`,
    '',
    '| incremental after the change set | seconds | CPU s | MiB read from relation files (× changed) | MiB stored before compression, WAL excluded (× changed) | MiB stored | × pitr full time |',
    '|---|---|---|---|---|---|---|',
    ...tools.map(row),
    '',
    `Read from relation files = the changed blocks of incremental files (the manifest's changedBlocks.bytesRead: ${mib(med('server', (j) => j.bytesRead)!)} MiB) + relation files stored whole (${mib(med('server', (j) => j.wholeRelationBytes)!)} MiB: free-space maps, files new since the reference or with more than 90 % of their blocks changed).`,
    '',
    `| restore (target: the backup's stop LSN, every page checksum verified) | seconds |`,
    '|---|---|',
    `| full + ${chain.length} incrementals | ${median(restores.chain).toFixed(1)} |`,
    `| one full of the same data | ${median(restores.full).toFixed(1)} |`,
    `| ratio | **${(median(restores.chain) / median(restores.full)).toFixed(2)}×** |`,
    '',
    `WAL summarizing (pgbacula, src/wal/block-refs.ts, one core): ${ws.segments} archived segments of the rounds (${ws.records} records), ${ws.mb.toFixed(0)} MB in ${ws.seconds.toFixed(2)} s = **${(ws.mb / ws.seconds).toFixed(0)} MB/s per core**.`,
  ].join('\n');
  console.log(out);
  writeFileSync(join(ROOT, 'last-result.md'), out + '\n');
}

await main();
