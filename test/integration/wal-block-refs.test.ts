/**
 * pgbacula's WAL summarizer against real servers (docs/block-incremental.md):
 * (a) on 17 and 18, the summary of a range equals the server's own WAL summary of that range;
 * (b) on 10, 13 and 15 (no server summaries), it is sound against the pages themselves: every
 *     page whose LSN is past the range's start is marked, under a limit, or in a changed database;
 * (c) wal-push writes a .summary per segment, and changedBlocksFromArchive merges them (and
 *     refuses, naming it, when a segment is missing); from an archive the native helper filled
 *     (no summaries) it summarizes the WAL itself, to the same table.
 */
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_LIMIT, parseBlockRefTable, type BlockRefTable } from '../../src/format/block-ref-table.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { changedBlocksFromArchive } from '../../src/archive/changed-blocks.js';
import { parseLsn, formatLsn } from '../../src/wal/lsn.js';
import { summarizeRange, summarizeSegment } from '../../src/wal/block-refs.js';
import { parseWalSegmentName, walSegmentName, walSegmentNumber } from '../../src/wal/segment.js';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { ownedDir, SEG, until } from './wal-helpers.js';
import { runNativeWalPush } from '../harness/wal-pushers.js';

type Dump = Record<string, { limit: number; blocks: number[] }>;

function dump(t: BlockRefTable): Dump {
  const out: Dump = {};
  for (const [rf, e] of t.entries()) out[`${rf.spcOid}/${rf.dbOid}/${rf.relNumber}/${rf.fork}`] = { limit: e.limitBlock, blocks: [...e.blocksIn(0, 0xffffffff)] };
  return out;
}

/** Segments [first, last] of timeline 1 read from the server's pg_wal (as root: the test runs as root). */
function segmentsFromPgWal(c: Cluster, first: bigint, last: bigint): { segno: bigint; bytes: Uint8Array }[] {
  const out: { segno: bigint; bytes: Uint8Array }[] = [];
  for (let s = first; s <= last; s++) {
    const p = join(c.pgdata, 'pg_wal', walSegmentName(1, s, SEG));
    if (!existsSync(p)) break;
    out.push({ segno: s, bytes: readFileSync(p) });
  }
  return out;
}

async function insertLsn(c: Cluster): Promise<bigint> {
  const [r] = await c.sql<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l');
  return parseLsn(r!.l);
}

/**
 * Every kind of change the summarizer must see: inserts over many blocks, updates, DELETE and
 * VACUUM truncating, TRUNCATE, DROP TABLE, VACUUM FULL, CREATE INDEX, a rolled-back CREATE
 * TABLE, a prepared transaction dropping a table, CREATE DATABASE (both strategies where they
 * exist) and DROP DATABASE.
 */
async function workload(c: Cluster): Promise<void> {
  const q = (s: string, db = 'postgres') => c.sql(s, [], db);
  await q("CREATE TABLE wb_a (id int PRIMARY KEY, v text); INSERT INTO wb_a SELECT g, repeat('x', 200) FROM generate_series(1, 6000) g");
  await q("UPDATE wb_a SET v = 'y' WHERE id % 97 = 0");
  await q("CREATE TABLE wb_t (id int, v text); INSERT INTO wb_t SELECT g, repeat('t', 300) FROM generate_series(1, 4000) g");
  await q('DELETE FROM wb_t WHERE id > 150');
  await q('VACUUM wb_t');
  await q("CREATE TABLE wb_tr (id int, v text); INSERT INTO wb_tr SELECT g, 'r' FROM generate_series(1, 3000) g");
  await q("TRUNCATE wb_tr; INSERT INTO wb_tr VALUES (1, 'again')");
  await q("CREATE TABLE wb_drop AS SELECT g AS id FROM generate_series(1, 20000) g");
  await q('DROP TABLE wb_drop');
  await q('VACUUM FULL wb_a');
  await q('CREATE INDEX wb_a_v ON wb_a (v)');
  await q("BEGIN; CREATE TABLE wb_rb AS SELECT g FROM generate_series(1, 5000) g; ROLLBACK").catch(() => undefined);
  const client = await c.client();
  try {
    await client.query("BEGIN; CREATE TABLE wb_p (id int); INSERT INTO wb_p SELECT generate_series(1, 1000); PREPARE TRANSACTION 'wb1'");
    await client.query("COMMIT PREPARED 'wb1'");
    await client.query("BEGIN; DROP TABLE wb_p; PREPARE TRANSACTION 'wb2'");
    await client.query("COMMIT PREPARED 'wb2'");
  } finally {
    await client.end();
  }
  await q('CREATE DATABASE wb_db1');
  await q("CREATE TABLE x (id int); INSERT INTO x SELECT generate_series(1, 2000)", 'wb_db1');
  if (c.major >= 15) await q('CREATE DATABASE wb_db2 STRATEGY FILE_COPY');
  await q('DROP DATABASE wb_db1');
  await q("INSERT INTO wb_a SELECT g, 'late' FROM generate_series(6001, 7000) g");
  await q('CHECKPOINT');
  await q('CHECKPOINT');
}

const SETTINGS = { autovacuum: false, max_prepared_transactions: 5, wal_keep_size: '1GB' } as const;

describe.each([17, 18] as const)('(a, c) PostgreSQL %i: equal to the server\'s own WAL summaries; summaries in the archive', (major) => {
  let c: Cluster;
  let repo: string;
  let systemId: string;
  beforeAll(async () => {
    repo = ownedDir(`pg${major}-walsum-repo`);
    c = await startCluster({ major, name: `pg${major}-walsum`, summarizeWal: true, settings: { ...SETTINGS, archive_mode: 'on', archive_command: archiveCommandLine({ repo }) } });
    const [row] = await c.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    systemId = row!.id;
  });
  afterAll(async () => {
    await c?.destroy();
    if (repo) rmSync(repo, { recursive: true, force: true });
  });

  it('every summary the server wrote over the workload equals summarizeRange over the same range', async () => {
    await c.sql("SELECT pg_create_physical_replication_slot('keep', true)");
    await c.sql('CHECKPOINT');
    const from = await insertLsn(c);
    await workload(c);
    // Summaries end at redo points: wait for the one of the last checkpoint.
    const [ck] = await c.sql<{ l: string }>('SELECT redo_lsn::text AS l FROM pg_control_checkpoint()');
    const lastRedo = parseLsn(ck!.l);
    await until('the summarizer reached the last redo point', async () => {
      const [s] = await c.sql<{ l: string }>('SELECT summarized_lsn::text AS l FROM pg_get_wal_summarizer_state()');
      return parseLsn(s!.l) >= lastRedo;
    });
    const ranges = (await c.sql<{ s: string; e: string }>('SELECT start_lsn::text AS s, end_lsn::text AS e FROM pg_available_wal_summaries() WHERE tli = 1 ORDER BY start_lsn'))
      .map((r) => ({ start: parseLsn(r.s), end: parseLsn(r.e) }))
      .filter((r) => r.end > from);
    expect(ranges.length).toBeGreaterThanOrEqual(3);
    let entries = 0;
    let limits = 0;
    for (const r of ranges) {
      const rows = await c.sql<{ n: string; t: string; d: string; f: number; b: string; l: boolean }>(
        'SELECT relfilenode::text AS n, reltablespace::text AS t, reldatabase::text AS d, relforknumber AS f, relblocknumber::text AS b, is_limit_block AS l FROM pg_wal_summary_contents(1, $1::pg_lsn, $2::pg_lsn)',
        [formatLsn(r.start), formatLsn(r.end)],
      );
      const server: Dump = {};
      for (const row of rows) {
        const k = `${row.t}/${row.d}/${row.n}/${row.f}`;
        const e = (server[k] ??= { limit: NO_LIMIT, blocks: [] });
        if (row.l) e.limit = Number(row.b);
        else e.blocks.push(Number(row.b));
      }
      for (const e of Object.values(server)) e.blocks.sort((x, y) => x - y);
      const segs = segmentsFromPgWal(c, walSegmentNumber(r.start, SEG), walSegmentNumber(r.end, SEG) + 1n);
      const mine = summarizeRange(segs, { timeline: 1, segmentSize: SEG, fromLsn: r.start, toLsn: r.end });
      expect(mine.untrusted, `${formatLsn(r.start)}..${formatLsn(r.end)}`).toBeUndefined();
      expect(mine.pendingTail).toBeUndefined();
      expect(mine.records).toBeGreaterThan(0);
      expect(dump(mine.table), `${formatLsn(r.start)}..${formatLsn(r.end)}`).toEqual(server);
      entries += Object.keys(server).length;
      limits += Object.values(server).filter((e) => e.limit !== NO_LIMIT).length;
    }
    // The workload really produced limits (truncate, drops, database create/drop) and many entries.
    expect(limits).toBeGreaterThan(5);
    expect(entries).toBeGreaterThan(50);
  });

  it('wal-push writes a summary per segment; their merge is changedBlocksFromArchive\'s result and one summary of the range; a deleted segment is named', async () => {
    await c.sql("CREATE TABLE wb_c (id int, v text); INSERT INTO wb_c SELECT g, repeat('c', 500) FROM generate_series(1, 120000) g");
    await c.sql('UPDATE wb_c SET v = v WHERE id % 3 = 0');
    await c.sql('DROP TABLE wb_t');
    const [sw] = await c.sql<{ w: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS w');
    const tl = join(repo, 'wal', systemId, '00000001');
    // The archiver's statistics move when wal-push returned, i.e. after the summaries were written.
    await until(`${sw!.w} is archived`, async () => (await c.sql<{ l: string | null }>('SELECT last_archived_wal AS l FROM pg_stat_archiver'))[0]!.l === sw!.w);
    const names = readdirSync(tl).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
    const summaries = readdirSync(tl).filter((n) => n.endsWith('.summary')).sort();
    expect(names.length, names.join(' ')).toBeGreaterThanOrEqual(4);
    // Every archived segment has its summary (wal-push resolves a segment's pending tail with the next one);
    // the last may wait for its successor.
    expect(summaries.map((n) => n.slice(0, 24))).toEqual(expect.arrayContaining(names.slice(0, -1)));
    // Written like the segments (0640 under the archiver's umask).
    for (const n of summaries) expect(statSync(join(tl, n)).mode & 0o777).toBe(statSync(join(tl, n.slice(0, 24))).mode & 0o777);
    // A stretch of whole segments with summaries, from the second archived one on.
    const firstSeg = parseWalSegmentName(names[1]!, SEG).segno;
    const lastSeg = parseWalSegmentName(names[names.length - 2]!, SEG).segno;
    const merged = parseBlockRefTable(readFileSync(join(tl, `${walSegmentName(1, firstSeg, SEG)}.summary`)));
    for (let s = firstSeg + 1n; s <= lastSeg; s++) merged.merge(parseBlockRefTable(readFileSync(join(tl, `${walSegmentName(1, s, SEG)}.summary`))));
    const req = { root: join(repo, 'wal'), systemId, timeline: 1, segmentSize: SEG, fromLsn: firstSeg * BigInt(SEG), toLsn: (lastSeg + 1n) * BigInt(SEG) };
    const t0 = process.hrtime.bigint();
    const r = await changedBlocksFromArchive(req);
    expect(r).toMatchObject({ ok: true, fromSummaries: Number(lastSeg - firstSeg + 1n), summarizedNow: 0 });
    expect(r.ok && dump(r.table)).toEqual(dump(merged));
    const segs = segmentsFromPgWal(c, firstSeg, lastSeg + 1n).map((x) => ({ segno: x.segno, bytes: readFileSync(join(tl, walSegmentName(1, x.segno, SEG))) }));
    const t1 = process.hrtime.bigint();
    const one = summarizeRange(segs, { timeline: 1, segmentSize: SEG, fromLsn: req.fromLsn, toLsn: req.toLsn });
    const t2 = process.hrtime.bigint();
    expect(dump(one.table)).toEqual(dump(merged));
    expect(merged.blockCount).toBeGreaterThan(1000);
    // Without a segment's summary: the same answer, that segment summarized from the archived WAL.
    const firstSummary = join(tl, `${walSegmentName(1, firstSeg, SEG)}.summary`);
    renameSync(firstSummary, `${firstSummary}.aside`);
    const again = await changedBlocksFromArchive({ ...req, fromLsn: req.fromLsn + 1n });
    renameSync(`${firstSummary}.aside`, firstSummary);
    expect(again).toMatchObject({ ok: true, fromSummaries: Number(lastSeg - firstSeg), summarizedNow: 1 });
    if (again.ok) {
      const a = dump(again.table);
      const b = dump(merged);
      const diff = Object.keys({ ...a, ...b }).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map((k) => `${k}: ${JSON.stringify(a[k])} vs ${JSON.stringify(b[k])}`);
      expect(diff).toEqual([]);
    }
    // The native helper archives the same segments without summaries (docs/wal-archive.md): a job then
    // summarizes every segment of its range from the archived WAL, to the same table.
    const nativeRepo = ownedDir(`pg${major}-walsum-native`);
    for (const n of names) {
      const pushed = await runNativeWalPush(['--repo', nativeRepo, '--pgdata', c.pgdata, join(tl, n)]);
      expect(pushed, n).toEqual({ code: 0, stdout: '', stderr: '' });
    }
    const nativeTl = join(nativeRepo, 'wal', systemId, '00000001');
    expect(readdirSync(nativeTl).filter((n) => n.endsWith('.summary'))).toEqual([]);
    const fromNative = await changedBlocksFromArchive({ ...req, root: join(nativeRepo, 'wal') });
    rmSync(nativeRepo, { recursive: true, force: true });
    expect(fromNative).toMatchObject({ ok: true, fromSummaries: 0, summarizedNow: Number(lastSeg - firstSeg + 1n) });
    expect(fromNative.ok && dump(fromNative.table)).toEqual(dump(merged));
    // Throughput, for the record (no assertion): each archived segment summarized alone, as wal-push does.
    const all = names.map((n) => ({ segno: parseWalSegmentName(n, SEG).segno, bytes: readFileSync(join(tl, n)) }));
    const t3 = process.hrtime.bigint();
    let records = 0;
    for (const x of all) records += summarizeSegment(x.bytes, { segno: x.segno, timeline: 1, segmentSize: SEG }).records;
    const secs = Number(process.hrtime.bigint() - t3) / 1e9;
    const mb = (all.length * SEG) / 1e6;
    console.log(`summarizing real WAL: ${all.length} segments, ${records} records, ${mb.toFixed(0)} MB in ${(secs * 1000).toFixed(0)} ms = ${(mb / secs).toFixed(0)} MB/s on one core; one range of ${segs.length} segments ${(Number(t2 - t1) / 1e6).toFixed(0)} ms; merging ${r.ok ? r.fromSummaries : 0} summaries ${(Number(t1 - t0) / 1e6).toFixed(0)} ms`);

    rmSync(join(tl, walSegmentName(1, firstSeg + 1n, SEG)));
    rmSync(join(tl, `${walSegmentName(1, firstSeg + 1n, SEG)}.summary`));
    const gone = await changedBlocksFromArchive(req);
    expect(gone).toEqual({ ok: false, reason: `WAL segment ${walSegmentName(1, firstSeg + 1n, SEG)} (${formatLsn((firstSeg + 1n) * BigInt(SEG))}) is missing from the archive ${join(repo, 'wal')}` });
  });
});

/** Relation files of the cluster: (spc, db, relfilenode, fork, segment) from base/ and global/. */
function relationFiles(pgdata: string): { spc: number; db: number; rel: number; fork: number; seg: number; path: string }[] {
  const out: { spc: number; db: number; rel: number; fork: number; seg: number; path: string }[] = [];
  const forks: Record<string, number> = { '': 0, _fsm: 1, _vm: 2, _init: 3 };
  const scan = (dir: string, spc: number, db: number) => {
    for (const f of readdirSync(dir)) {
      const m = /^(\d+)(_fsm|_vm|_init)?(?:\.(\d+))?$/.exec(f);
      if (!m) continue;
      out.push({ spc, db, rel: Number(m[1]), fork: forks[m[2] ?? '']!, seg: Number(m[3] ?? 0), path: join(dir, f) });
    }
  };
  scan(join(pgdata, 'global'), 1664, 0);
  for (const d of readdirSync(join(pgdata, 'base'))) if (/^\d+$/.test(d)) scan(join(pgdata, 'base', d), 1663, Number(d));
  return out;
}

describe.each([10, 13, 15] as const)('(b) PostgreSQL %i: sound against the pages\' own LSNs', (major) => {
  let c: Cluster;
  beforeAll(async () => {
    const { wal_keep_size: keep, ...rest } = SETTINGS;
    c = await startCluster({ major, name: `pg${major}-walsum`, settings: major < 13 ? { ...rest, wal_keep_segments: 64 } : { ...rest, wal_keep_size: keep } });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('every page changed after the start LSN is marked, under its fork\'s limit, or in a changed database', async () => {
    await c.sql("SELECT pg_create_physical_replication_slot('keep', true)");
    await c.sql('CHECKPOINT');
    const from = await insertLsn(c);
    await workload(c);
    const to = await insertLsn(c);
    const segs = segmentsFromPgWal(c, walSegmentNumber(from, SEG), walSegmentNumber(to, SEG));
    const s = summarizeRange(segs, { timeline: 1, segmentSize: SEG, fromLsn: from, toLsn: to });
    expect(s.untrusted).toBeUndefined();
    expect(s.pendingTail).toBeUndefined();
    let changedPages = 0;
    const missed: string[] = [];
    for (const f of relationFiles(c.pgdata)) {
      if (f.fork === 1) continue; // the free-space map is never tracked (not WAL-logged reliably)
      const bytes = readFileSync(f.path);
      const e = s.table.entry({ spcOid: f.spc, dbOid: f.db, relNumber: f.rel, fork: f.fork });
      for (let p = 0; p + 8192 <= bytes.length; p += 8192) {
        const lsn = (BigInt(bytes.readUInt32LE(p)) << 32n) | BigInt(bytes.readUInt32LE(p + 4));
        if (lsn <= from) continue;
        changedPages++;
        const block = f.seg * 131072 + p / 8192;
        const marked = e !== undefined && (e.limitBlock <= block || e.blocksIn(block, block + 1).length === 1);
        if (!marked && !s.table.databaseChanged(f.spc, f.db)) missed.push(`${f.path} block ${block} (page LSN ${formatLsn(lsn)})`);
      }
    }
    expect(missed).toEqual([]);
    expect(changedPages).toBeGreaterThan(200);
    // And the table is not everything: most pages of the cluster did not change.
    const totalPages = relationFiles(c.pgdata).reduce((n, f) => n + Math.floor(statSync(f.path).size / 8192), 0);
    expect(s.table.blockCount).toBeLessThan(totalPages);
  });
});
