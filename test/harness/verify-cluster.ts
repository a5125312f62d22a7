import pg from 'pg';
import type { Cluster } from './cluster.js';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

async function withClient<T>(e: Endpoint, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: e.host, port: e.port, user: 'postgres', database });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** amcheck's bt_index_check on every btree index of a database; returns how many were checked. */
export async function amcheckAllIndexes(e: Endpoint, database = 'postgres'): Promise<number> {
  return withClient(e, database, async (c) => {
    await c.query('CREATE EXTENSION IF NOT EXISTS amcheck');
    const r = await c.query<{ oid: number; name: string }>(
      "SELECT c.oid, c.relname AS name FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.relkind = 'i' AND am.amname = 'btree' AND c.relpersistence <> 't'",
    );
    for (const row of r.rows) await c.query('SELECT bt_index_check($1::regclass)', [row.oid]);
    return r.rows.length;
  });
}

export async function digestAt(e: Endpoint, table: string, database = 'postgres'): Promise<string> {
  return withClient(e, database, async (c) => {
    const r = await c.query<{ d: string }>(`SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS d FROM ${table} t`);
    return r.rows[0]!.d;
  });
}

export async function queryAt<T extends Record<string, unknown>>(e: Endpoint, sql: string, database = 'postgres'): Promise<T[]> {
  return withClient(e, database, async (c) => (await c.query<T>(sql)).rows);
}

/** Fixed tables no workload touches: their digests must survive backup and restore exactly. */
export async function createStaticTables(c: Cluster, rows = 20000): Promise<string[]> {
  await c.sql(`CREATE TABLE static_a AS SELECT g AS id, md5(g::text) AS v, now() - g * interval '1 minute' AS at FROM generate_series(1, ${rows}) g`);
  await c.sql('ALTER TABLE static_a ADD PRIMARY KEY (id)');
  await c.sql('CREATE INDEX static_a_v ON static_a (v)');
  await c.sql(`CREATE TABLE static_b (k text PRIMARY KEY, n numeric, j text)`);
  await c.sql(`INSERT INTO static_b SELECT 'k' || g, g * 1.5, repeat('x', g % 300) FROM generate_series(1, ${Math.floor(rows / 2)}) g`);
  await c.sql('CHECKPOINT');
  return ['static_a', 'static_b'];
}
