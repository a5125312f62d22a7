/**
 * The block reference table against PostgreSQL 17 and 18's own WAL summaries
 * (docs/block-incremental.md): our reader agrees with pg_wal_summary_contents(), our writer
 * reproduces the server's files, pg_walsummary reads our files, and the summaries of a range
 * between two checkpoints hold the blocks changed in between.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import {
  BLOCKS_PER_CHUNK,
  BlockRefTable,
  NO_LIMIT,
  parseBlockRefTable,
  serializeBlockRefTable,
  type RelFork,
} from '../../src/format/block-ref-table.js';
import { crc32c } from '../../src/format/crc32c.js';
import { awaitSummarizer, listServerSummaries, readServerSummaries, summaryCoverage, summaryFileName, type SummaryRange } from '../../src/server/wal-summaries.js';
import { formatLsn, parseLsn, type Lsn } from '../../src/wal/lsn.js';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { clientBin } from '../harness/pg-binaries.js';

const execFileAsync = promisify(execFile);
const FORK_NAMES = ['main', 'fsm', 'vm', 'init'];
const DEFAULT_TABLESPACE = 1663;

type Dump = Array<[string, number, number[]]>;

function key(rf: RelFork): string {
  return `${rf.spcOid}/${rf.dbOid}/${rf.relNumber}/${rf.fork}`;
}

function dump(t: BlockRefTable): Dump {
  return [...t.entries()].map(([rf, e]) => [key(rf), e.limitBlock, [...e.blocksIn(0, NO_LIMIT)]]);
}

/** The server's own reading of a summary, as the same plain data. */
async function serverContents(c: Cluster, r: SummaryRange): Promise<Dump> {
  const rows = await c.sql<{ spc: string; db: string; rel: string; fork: number; blk: string; lim: boolean }>(
    `SELECT reltablespace::text AS spc, reldatabase::text AS db, relfilenode::text AS rel, relforknumber::int AS fork,
            relblocknumber::text AS blk, is_limit_block AS lim
       FROM pg_wal_summary_contents($1, $2::pg_lsn, $3::pg_lsn)`,
    [r.tli, formatLsn(r.startLsn), formatLsn(r.endLsn)],
  );
  const byKey = new Map<string, { rf: number[]; limit: number; blocks: number[] }>();
  for (const row of rows) {
    const rf = [Number(row.spc), Number(row.db), Number(row.rel), row.fork];
    const k = rf.join('/');
    let e = byKey.get(k);
    if (!e) byKey.set(k, (e = { rf, limit: NO_LIMIT, blocks: [] }));
    if (row.lim) e.limit = Number(row.blk);
    else e.blocks.push(Number(row.blk));
  }
  const cmp = (a: number[], b: number[]) => a[0]! - b[0]! || a[1]! - b[1]! || a[2]! - b[2]! || a[3]! - b[3]!;
  return [...byKey.values()].sort((a, b) => cmp(a.rf, b.rf)).map((e) => [e.rf.join('/'), e.limit, e.blocks.sort((x, y) => x - y)]);
}

/**
 * A summary file with the offsets of every array chunk sorted and the CRC recomputed: the server
 * writes offsets in insertion order, pgbacula in ascending order, and nothing else may differ.
 * Walks the bytes itself, so it does not lean on the parser under test.
 */
function withSortedArrays(file: Uint8Array): { bytes: Uint8Array; bitmaps: number; arrays: number; limits: number } {
  const out = new Uint8Array(file); // a copy with its own buffer (a Buffer's slice would share the pool)
  const v = new DataView(out.buffer);
  let at = 4;
  let bitmaps = 0;
  let arrays = 0;
  let limits = 0;
  for (;;) {
    const fields = [0, 4, 8, 12, 16, 20].map((o) => v.getUint32(at + o, true));
    at += 24;
    if (fields.every((f) => f === 0)) break;
    if (fields[4] !== NO_LIMIT) limits++;
    const n = fields[5]!;
    const usage = Array.from({ length: n }, (_, c) => v.getUint16(at + 2 * c, true));
    at += 2 * n;
    for (const u of usage) {
      if (u === 4096) bitmaps++;
      else if (u > 0) {
        arrays++;
        const offsets = Array.from({ length: u }, (_, k) => v.getUint16(at + 2 * k, true)).sort((a, b) => a - b);
        offsets.forEach((o, k) => v.setUint16(at + 2 * k, o, true));
      }
      at += 2 * u;
    }
  }
  expect(at + 4).toBe(out.length);
  v.setUint32(at, crc32c(out.subarray(0, at)), true);
  return { bytes: out, bitmaps, arrays, limits };
}

describe.each([17, 18] as const)('WAL summaries of PostgreSQL %i', (major) => {
  let c: Cluster;
  let tli: number;
  let dbOid: number;
  /** Checkpoint redo LSNs: c0 before the workload, c1 after it, c2 after the update of `u`. */
  let c0: Lsn;
  let c1: Lsn;
  let c2: Lsn;
  const fn: Record<string, number> = {};
  let truncatedTo = 0;
  let db2Oid = 0;
  const updatedBlocks = new Set<number>();
  let scratch: string;

  async function checkpoint(): Promise<Lsn> {
    await c.sql('CHECKPOINT');
    const [row] = await c.sql<{ redo: string; tli: number }>('SELECT redo_lsn::text AS redo, timeline_id AS tli FROM pg_control_checkpoint()');
    tli = row!.tli;
    return parseLsn(row!.redo);
  }

  async function filenode(table: string): Promise<number> {
    const [row] = await c.sql<{ n: string }>('SELECT pg_relation_filenode($1)::text AS n', [table]);
    return Number(row!.n);
  }

  /** One statement at a time: a multi-statement query is one transaction, and VACUUM refuses that. */
  async function run(script: string): Promise<void> {
    for (const stmt of script.split(';').map((x) => x.trim()).filter(Boolean)) await c.sql(stmt);
  }

  const ctidBlocks = (where: string) => `SELECT DISTINCT (ctid::text::point)[0]::bigint::text AS b FROM u WHERE ${where}`;

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'pgbacula-walsummaries-'));
    // No autovacuum: a table the test does not touch must stay out of the summaries.
    c = await startCluster({ major, summarizeWal: true, name: `pg${major}-summaries`, settings: { autovacuum: false } });
    [{ oid: dbOid }] = (await c.sql<{ oid: number }>("SELECT oid::int AS oid FROM pg_database WHERE datname = 'postgres'")) as [{ oid: number }];

    // Before c0: the tables the workload changes.
    await run(`CREATE TABLE trunc (id int, filler text);
      INSERT INTO trunc SELECT g, repeat('t', 200) FROM generate_series(1, 20000) g;
      VACUUM trunc;
      CREATE TABLE dropme (id int); INSERT INTO dropme SELECT generate_series(1, 1000);
      CREATE TABLE u (id int, v int, filler text) WITH (fillfactor = 70);
      INSERT INTO u SELECT g, 0, repeat('u', 100) FROM generate_series(1, 20000) g;
      CREATE TABLE still (id int); INSERT INTO still SELECT generate_series(1, 50000);
      VACUUM FREEZE u; VACUUM FREEZE still; VACUUM FREEZE dropme`);
    for (const t of ['trunc', 'dropme', 'u', 'still']) fn[t] = await filenode(t);
    c0 = await checkpoint();

    // The workload: a new table large enough for a bitmap chunk, updates, a truncation, a drop, a database.
    await run(`CREATE TABLE big (id int, filler text);
      INSERT INTO big SELECT g, repeat('b', 200) FROM generate_series(1, 160000) g;
      UPDATE trunc SET filler = repeat('T', 200) WHERE id % 50 = 0 AND id > 5000;
      DELETE FROM trunc WHERE id > 5000`);
    const [before] = await c.sql<{ n: string }>("SELECT pg_relation_size('trunc')::text AS n");
    await c.sql('VACUUM trunc');
    const [after] = await c.sql<{ n: string }>("SELECT pg_relation_size('trunc')::text AS n");
    truncatedTo = Number(after!.n) / 8192;
    expect(truncatedTo).toBeLessThan(Number(before!.n) / 8192);
    fn.big = await filenode('big');
    await c.sql('DROP TABLE dropme');
    await c.sql('CREATE DATABASE db2');
    [{ oid: db2Oid }] = (await c.sql<{ oid: number }>("SELECT oid::int AS oid FROM pg_database WHERE datname = 'db2'")) as [{ oid: number }];
    c1 = await checkpoint();

    // Between c1 and c2 only `u` changes.
    for (const r of await c.sql<{ b: string }>(ctidBlocks('id % 37 = 0'))) updatedBlocks.add(Number(r.b));
    await c.sql('UPDATE u SET v = v + 1 WHERE id % 37 = 0');
    for (const r of await c.sql<{ b: string }>(ctidBlocks('id % 37 = 0'))) updatedBlocks.add(Number(r.b));
    c2 = await checkpoint();

    const session = await c.client();
    try {
      const state = await awaitSummarizer(session, tli, c2, { timeoutMs: 60_000 });
      expect(state).toMatchObject({ reached: true, running: true });
      expect(state.summarizedLsn >= c2).toBe(true);
    } finally {
      await session.end();
    }
  });

  afterAll(async () => {
    await c?.destroy();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  async function summaries(): Promise<SummaryRange[]> {
    const session = await c.client();
    try {
      return await listServerSummaries(session);
    } finally {
      await session.end();
    }
  }

  it('lists the summary files of pg_wal/summaries, named as the server names them', async () => {
    const ranges = await summaries();
    expect(ranges.length).toBeGreaterThanOrEqual(3);
    const files = readdirSync(join(c.pgdata, 'pg_wal', 'summaries')).filter((f) => f !== 'temp.summary').sort();
    expect(ranges.map(summaryFileName).sort()).toEqual(files);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.startLsn).toBe(ranges[i - 1]!.endLsn);
    expect(ranges.some((r) => r.endLsn === c1)).toBe(true);
    expect(ranges.some((r) => r.endLsn === c2)).toBe(true);
  });

  it('each summary file parses to what pg_wal_summary_contents() says, and is written back byte for byte', async () => {
    let bitmaps = 0;
    let limits = 0;
    for (const r of await summaries()) {
      const bytes = readFileSync(join(c.pgdata, 'pg_wal', 'summaries', summaryFileName(r)));
      const table = parseBlockRefTable(bytes, summaryFileName(r));
      expect(dump(table), summaryFileName(r)).toEqual(await serverContents(c, r));
      const normal = withSortedArrays(bytes);
      bitmaps += normal.bitmaps;
      limits += normal.limits;
      expect(Buffer.from(serializeBlockRefTable(table)).equals(Buffer.from(normal.bytes)), `${summaryFileName(r)} written back`).toBe(true);
      expect(dump(parseBlockRefTable(serializeBlockRefTable(table)))).toEqual(dump(table));
    }
    // The workload reached the cases it is for.
    expect(bitmaps).toBeGreaterThan(0);
    expect(limits).toBeGreaterThan(0);
  });

  it('the summaries of the workload hold its new table, truncation, drop and database', async () => {
    const session = await c.client();
    let table: BlockRefTable;
    try {
      const state = await awaitSummarizer(session, tli, c1, { timeoutMs: 10_000 });
      expect(state.reached).toBe(true);
      const cover = summaryCoverage(await listServerSummaries(session), tli, c0, c1);
      if (!cover.ok) throw new Error(cover.reason);
      table = await readServerSummaries(c.pgdata, cover.use);
    } finally {
      await session.end();
    }
    const rf = (relNumber: number, fork = 0): RelFork => ({ spcOid: DEFAULT_TABLESPACE, dbOid, relNumber, fork });
    const big = table.entry(rf(fn.big!))!;
    expect(big.limitBlock).toBe(0);
    const [bigSize] = await c.sql<{ n: string }>("SELECT pg_relation_size('big')::text AS n");
    expect(big.blockCount).toBe(Number(bigSize!.n) / 8192);
    expect(big.blocksIn(0, BLOCKS_PER_CHUNK).length).toBe(big.blockCount);
    expect(table.entry(rf(fn.trunc!))!.limitBlock).toBe(truncatedTo);
    expect(table.entry(rf(fn.dropme!))!.limitBlock).toBe(0);
    expect(table.databaseChanged(DEFAULT_TABLESPACE, db2Oid)).toBe(true);
    expect(table.databaseChanged(DEFAULT_TABLESPACE, dbOid)).toBe(false);
    expect(table.entry(rf(fn.still!))).toBeUndefined();
  });

  it('the summaries between two checkpoints hold the blocks of the table updated in between', async () => {
    const session = await c.client();
    let table: BlockRefTable;
    try {
      const cover = summaryCoverage(await listServerSummaries(session), tli, c1, c2);
      if (!cover.ok) throw new Error(cover.reason);
      expect(cover.use[0]!.startLsn).toBe(c1);
      expect(cover.use[cover.use.length - 1]!.endLsn).toBe(c2);
      table = await readServerSummaries(c.pgdata, cover.use);
    } finally {
      await session.end();
    }
    const u = table.entry({ spcOid: DEFAULT_TABLESPACE, dbOid, relNumber: fn.u!, fork: 0 });
    expect(u).toBeDefined();
    const marked = new Set(u!.blocksIn(0, NO_LIMIT));
    expect(updatedBlocks.size).toBeGreaterThan(10);
    for (const b of updatedBlocks) expect(marked.has(b), `block ${b} of u`).toBe(true);
    expect(u!.limitBlock).toBe(NO_LIMIT);
    expect(table.entry({ spcOid: DEFAULT_TABLESPACE, dbOid, relNumber: fn.still!, fork: 0 })).toBeUndefined();
    expect(table.entry({ spcOid: DEFAULT_TABLESPACE, dbOid, relNumber: fn.big!, fork: 0 })).toBeUndefined();
    expect(table.databaseChanged(DEFAULT_TABLESPACE, db2Oid)).toBe(false);
  });

  it('a range the summaries do not reach is refused with the reason; the wait is bounded and cancellable', async () => {
    const session = await c.client();
    try {
      const ranges = await listServerSummaries(session);
      const cover = summaryCoverage(ranges, tli, c1, c2 + 0x1000000n);
      expect(cover).toEqual({ ok: false, reason: `the WAL summaries of timeline ${tli} end at ${formatLsn(ranges[ranges.length - 1]!.endLsn)}, before ${formatLsn(c2 + 0x1000000n)}` });
      expect(summaryCoverage(ranges, tli + 1, c1, c2)).toEqual({ ok: false, reason: `there are no WAL summaries of timeline ${tli + 1}` });
      const far = await awaitSummarizer(session, tli, c2 + 0x10000000n, { timeoutMs: 600 });
      expect(far.reached).toBe(false);
      expect(far.running).toBe(true);
      const aborted = new AbortController();
      aborted.abort();
      await expect(awaitSummarizer(session, tli, c2 + 0x10000000n, { timeoutMs: 60_000, signal: aborted.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
      const later = new AbortController();
      setTimeout(() => later.abort(), 300);
      await expect(awaitSummarizer(session, tli, c2 + 0x10000000n, { timeoutMs: 60_000, signal: later.signal })).rejects.toBeInstanceOf(PgbaculaError);
    } finally {
      await session.end();
    }
    await expect(readServerSummaries(c.pgdata, [{ tli, startLsn: c2, endLsn: c2 + 1n }])).rejects.toMatchObject({ code: 'IO' });
  });

  it('pg_walsummary reads a file pgbacula wrote: its blocks and limits', async () => {
    const t = new BlockRefTable();
    const rf = (relNumber: number, fork = 0, db = 5): RelFork => ({ spcOid: DEFAULT_TABLESPACE, dbOid: db, relNumber, fork });
    const expected = new Map<string, { limit: number; blocks: Set<number> }>();
    const want = (r: RelFork, limit: number, blocks: number[]) => expected.set(key(r), { limit, blocks: new Set(blocks) });
    for (const b of [10, 3, 2, 1]) t.markBlock(rf(16384), b);
    want(rf(16384), NO_LIMIT, [1, 2, 3, 10]);
    const bitmap = Array.from({ length: 5000 }, (_, i) => BLOCKS_PER_CHUNK + 3 * i);
    for (const b of bitmap) t.markBlock(rf(16385), b);
    t.markBlock(rf(16385, 2), 0);
    want(rf(16385), NO_LIMIT, bitmap);
    want(rf(16385, 2), NO_LIMIT, [0]);
    t.markBlock(rf(16386), 9);
    t.markBlock(rf(16386), 2);
    t.setLimit(rf(16386), 7);
    t.markBlock(rf(16386), 12);
    want(rf(16386), 7, [2, 12]);
    t.setLimit(rf(16387, 3), 0);
    want(rf(16387, 3), 0, []);
    t.setLimit(rf(0, 0, 16500), 0);
    want(rf(0, 0, 16500), 0, []);
    const file = join(scratch, `pgbacula-${major}.summary`);
    writeFileSync(file, serializeBlockRefTable(t));

    const { stdout } = await execFileAsync(clientBin('pg_walsummary'), ['-i', file], { maxBuffer: 64 * 1024 * 1024 });
    const seen = new Map<string, { limit: number; blocks: Set<number> }>();
    for (const line of stdout.split('\n').filter(Boolean)) {
      const m = /^TS (\d+), DB (\d+), REL (\d+), FORK (\w+): (block|limit) (\d+)$/.exec(line);
      expect(m, line).not.toBeNull();
      const k = `${m![1]}/${m![2]}/${m![3]}/${FORK_NAMES.indexOf(m![4]!)}`;
      let e = seen.get(k);
      if (!e) seen.set(k, (e = { limit: NO_LIMIT, blocks: new Set() }));
      if (m![5] === 'limit') e.limit = Number(m![6]);
      else e.blocks.add(Number(m![6]));
    }
    expect(seen).toEqual(expected);
    // And the ranges form: one line per run of consecutive blocks.
    const ranged = (await execFileAsync(clientBin('pg_walsummary'), [file])).stdout;
    expect(ranged).toContain('TS 1663, DB 5, REL 16384, FORK main: blocks 1..3');
    expect(ranged).toContain('TS 1663, DB 5, REL 16384, FORK main: block 10');
    expect(ranged).toContain('TS 1663, DB 5, REL 16386, FORK main: limit 7');
  });
});
