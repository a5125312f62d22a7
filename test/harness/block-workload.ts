/**
 * A randomized workload that makes every kind of change a block-level backup must follow:
 * scattered and ranged updates, inserts that extend files, DELETE + VACUUM truncating files,
 * TRUNCATE, DROP TABLE, VACUUM FULL and CLUSTER (new relfilenodes), an index rebuild, an unlogged
 * table, CREATE/DROP DATABASE and CREATE/DROP TABLESPACE. And a fingerprint of a cluster's
 * contents to compare a restore with its source.
 */
import { execFile } from 'node:child_process';
import { chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Cluster } from './cluster.js';
import { serverUser } from './os-user.js';
import { clientBin } from './pg-binaries.js';
import { testRoot } from './registry.js';
import { queryAt, type Endpoint } from './verify-cluster.js';

const execFileAsync = promisify(execFile);

export interface BlockWorkload {
  /** Tablespace directories made for the workload (restores remap them). */
  readonly tablespaceDirs: string[];
  /** One round of every change kind; `n` (distinct per round) names what it makes. Rounds run one at a time. */
  round(n: number): Promise<void>;
}

const BIG_ROWS = 60_000;

/** Tables and the first tablespace and database; then `round(n)` changes them. */
export async function setUpBlockWorkload(c: Cluster, random: () => number): Promise<BlockWorkload> {
  // seededRandom gives 32-bit integers.
  const pick = (n: number) => 1 + (random() % n);
  const tablespaceDirs: string[] = [];
  const newTablespaceDir = (name: string): string => {
    const dir = join(testRoot(), `ts-${c.major}-${c.port}-${name}`);
    mkdirSync(dir, { recursive: true });
    const u = serverUser();
    chownSync(dir, u.uid, u.gid);
    tablespaceDirs.push(dir);
    return dir;
  };
  await c.sql(`CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL, pad text NOT NULL)`);
  await c.sql(`INSERT INTO big SELECT g, md5(g::text), repeat('p', 100) FROM generate_series(1, ${BIG_ROWS}) g`);
  await c.sql('CREATE INDEX big_v ON big (v)');
  await c.sql(`CREATE TABLE churn (id int, v text)`);
  await c.sql(`INSERT INTO churn SELECT g, repeat('c', 200) FROM generate_series(1, 20000) g`);
  await c.sql(`CREATE TABLE trunc_me (id int, v text)`);
  await c.sql(`INSERT INTO trunc_me SELECT g, md5(g::text) FROM generate_series(1, 5000) g`);
  await c.sql(`CREATE TABLE drop_0 AS SELECT g AS id FROM generate_series(1, 3000) g`);
  await c.sql(`CREATE TABLE vf (id int, v text)`);
  await c.sql(`INSERT INTO vf SELECT g, md5(g::text) FROM generate_series(1, 10000) g`);
  await c.sql(`CREATE TABLE cl (id int, v text)`);
  await c.sql(`INSERT INTO cl SELECT g, md5(g::text) FROM generate_series(1, 10000) g`);
  await c.sql('CREATE INDEX cl_id ON cl (id)');
  await c.sql(`CREATE UNLOGGED TABLE scratch (id int, v text)`);
  await c.sql(`CREATE TABLESPACE ts_0 LOCATION '${newTablespaceDir('0')}'`);
  await c.sql(`CREATE TABLE in_ts_0 (id int, v text) TABLESPACE ts_0`);
  await c.sql(`INSERT INTO in_ts_0 SELECT g, md5(g::text) FROM generate_series(1, 5000) g`);
  await c.sql('CREATE DATABASE db_0');
  await c.sql(`CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g`, [], 'db_0');
  await c.sql('CHECKPOINT');

  // What the previous round made, which the next one drops (rounds may come in any number order).
  let last = 0;
  return {
    tablespaceDirs,
    async round(n: number) {
      const prev = last;
      last = n;
      // Scattered updates, then a contiguous range.
      const ids = Array.from({ length: 200 }, () => pick(BIG_ROWS));
      await c.sql(`UPDATE big SET v = md5(v || '${n}') WHERE id = ANY($1::int[])`, [ids]);
      const from = pick(BIG_ROWS - 3000);
      await c.sql(`UPDATE big SET v = md5(v), pad = repeat('${String.fromCharCode(97 + (n % 26))}', 100) WHERE id BETWEEN ${from} AND ${from + 2000}`);
      // Inserts that extend the file.
      await c.sql(`INSERT INTO big SELECT g, md5(g::text), repeat('n', 100) FROM generate_series(${BIG_ROWS + n * 5000 + 1}, ${BIG_ROWS + n * 5000 + 3000}) g`);
      // Delete the tail and vacuum: the file is truncated; then it grows again.
      await c.sql(`DELETE FROM churn WHERE id > ${5000 + pick(5000)}`);
      await c.sql('VACUUM churn');
      await c.sql(`INSERT INTO churn SELECT g, repeat('${n % 10}', 200) FROM generate_series(30000, ${30000 + pick(3000)}) g`);
      await c.sql('TRUNCATE trunc_me');
      await c.sql(`INSERT INTO trunc_me SELECT g, md5((g * ${n})::text) FROM generate_series(1, ${1000 + pick(3000)}) g`);
      await c.sql(`DROP TABLE drop_${prev}`);
      await c.sql(`CREATE TABLE drop_${n} AS SELECT g AS id FROM generate_series(1, ${1000 + pick(2000)}) g`);
      await c.sql(`UPDATE vf SET v = md5(v) WHERE id % 7 = ${n % 7}`);
      await c.sql('VACUUM FULL vf');
      await c.sql(`UPDATE cl SET v = md5(v) WHERE id % 5 = ${n % 5}`);
      await c.sql('CLUSTER cl USING cl_id');
      await c.sql('REINDEX INDEX big_v');
      await c.sql(`INSERT INTO scratch SELECT g, md5(g::text) FROM generate_series(1, 2000) g`);
      await c.sql(`CREATE DATABASE db_${n}`);
      await c.sql(`CREATE TABLE t AS SELECT g AS id, md5((g + ${n})::text) AS v FROM generate_series(1, ${2000 + pick(2000)}) g`, [], `db_${n}`);
      await c.sql(`DROP DATABASE db_${prev}`);
      await c.sql(`CREATE TABLESPACE ts_${n} LOCATION '${newTablespaceDir(String(n))}'`);
      await c.sql(`CREATE TABLE in_ts_${n} (id int, v text) TABLESPACE ts_${n}`);
      await c.sql(`INSERT INTO in_ts_${n} SELECT g, md5((g * ${n})::text) FROM generate_series(1, ${1000 + pick(3000)}) g`);
      await c.sql(`DROP TABLE in_ts_${prev}`);
      await c.sql(`DROP TABLESPACE ts_${prev}`);
    },
  };
}

export interface Fingerprint {
  /** pg_dumpall --schema-only, with tablespace locations and version comments taken out. */
  readonly schema: string;
  /** md5 of each permanent table's rows, by "database.table". */
  readonly tables: Record<string, string>;
}

/** What a restore must reproduce: every database's schema and every permanent table's rows. */
export async function fingerprint(e: Endpoint): Promise<Fingerprint> {
  const { stdout } = await execFileAsync(clientBin('pg_dumpall'), ['--schema-only', '-h', e.host, '-p', String(e.port), '-U', 'postgres'], { maxBuffer: 64 * 1024 * 1024, env: { PATH: '/usr/bin:/bin' } });
  const schema = stdout
    .split('\n')
    .filter((l) => !l.startsWith('-- Dumped ') && !l.startsWith('\\restrict') && !l.startsWith('\\unrestrict'))
    .map((l) => l.replace(/LOCATION '[^']*'/, "LOCATION '…'"))
    .join('\n');
  const tables: Record<string, string> = {};
  const dbs = await queryAt<{ d: string }>(e, 'SELECT datname AS d FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1');
  for (const { d } of dbs) {
    const rels = await queryAt<{ r: string }>(
      e,
      "SELECT c.oid::regclass::text AS r FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
      d,
    );
    for (const { r } of rels) {
      const [row] = await queryAt<{ h: string }>(e, `SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS h FROM ${r} t`, d);
      tables[`${d}.${r}`] = row!.h;
    }
  }
  return { schema, tables };
}

/** amcheck on every btree index of every database, heap against index (heapallindexed); returns the count. */
export async function amcheckEverything(e: Endpoint): Promise<number> {
  let n = 0;
  const dbs = await queryAt<{ d: string }>(e, 'SELECT datname AS d FROM pg_database WHERE datallowconn ORDER BY 1');
  for (const { d } of dbs) {
    await queryAt(e, 'CREATE EXTENSION IF NOT EXISTS amcheck', d);
    const idx = await queryAt<{ oid: number }>(
      e,
      "SELECT c.oid FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.relkind = 'i' AND am.amname = 'btree' AND c.relpersistence = 'p'",
      d,
    );
    // heapallindexed (heap against index) exists from amcheck 1.1 (PostgreSQL 11).
    const [{ v }] = (await queryAt<{ v: string }>(e, "SELECT extversion AS v FROM pg_extension WHERE extname = 'amcheck'", d)) as [{ v: string }];
    const heap = v === '1.0' ? '' : ', true';
    for (const { oid } of idx) await queryAt(e, `SELECT bt_index_check(${oid}::regclass${heap})`, d);
    n += idx.length;
  }
  return n;
}
