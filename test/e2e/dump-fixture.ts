/**
 * The PostgreSQL side of the dump-mode e2e tests: a source cluster with three databases — alpha
 * (large objects, a role of its own as owner), beta (a table in a non-default tablespace), gamma
 * (a few MB of rows, so a dump takes a moment) — reached over TCP with a password, and the
 * checksums a restore must reproduce (md5 over the ordered rows of every table, md5 of every
 * large object, the tablespace of every table).
 */
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import type { TestMajor } from '../harness/pg-binaries.js';
import { tableDigest } from '../harness/workload.js';

export const PASSWORD = 'e2e-Secret-8c1d0f';
export const SOURCE_DATABASES = ['alpha', 'beta', 'gamma'] as const;

/** A directory the postgres OS user owns (tablespaces). */
export function serverOwnedDir(path: string): string {
  mkdirSync(path, { recursive: true });
  const u = serverUser();
  chownSync(path, u.uid, u.gid);
  chmodSync(path, 0o700);
  return path;
}

/** A cluster that accepts the test password over TCP (pg_hba: scram-sha-256 for 127.0.0.1). */
export async function passwordCluster(major: TestMajor, name: string): Promise<Cluster> {
  const c = await startCluster({ major, name });
  await c.sql(`ALTER ROLE postgres PASSWORD '${PASSWORD}'`);
  return c;
}

/** The three databases described above; `gammaRows` sets gamma's size (~135 bytes a row). */
export async function populateSource(c: Cluster, tablespaceDir: string, gammaRows = 60_000): Promise<void> {
  await c.sql('CREATE ROLE app_owner LOGIN');
  await c.sql(`CREATE TABLESPACE ts1 LOCATION '${serverOwnedDir(tablespaceDir)}'`);
  await c.sql('CREATE DATABASE alpha OWNER app_owner');
  await c.sql('CREATE DATABASE beta');
  await c.sql('CREATE DATABASE gamma');
  await c.sql(`CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL, balance numeric(12,2), opened date)`, [], 'alpha');
  await c.sql(`INSERT INTO accounts SELECT g, 'account ' || g, g * 3.25, date '2020-01-01' + g FROM generate_series(1, 2000) g`, [], 'alpha');
  await c.sql('ALTER TABLE accounts OWNER TO app_owner', [], 'alpha');
  await c.sql('CREATE TABLE documents (id serial PRIMARY KEY, title text, body oid)', [], 'alpha');
  await c.sql(`INSERT INTO documents (title, body) SELECT 'doc ' || g, lo_from_bytea(0, decode(repeat(md5(g::text), 1000 * g), 'hex')) FROM generate_series(1, 3) g`, [], 'alpha');
  await c.sql('CREATE TABLE placed (id int PRIMARY KEY, v text) TABLESPACE ts1', [], 'beta');
  await c.sql(`INSERT INTO placed SELECT g, repeat(chr(65 + g % 26), g % 50) FROM generate_series(1, 5000) g`, [], 'beta');
  await c.sql('CREATE TABLE regular (k text PRIMARY KEY, n bigint)', [], 'beta');
  await c.sql(`INSERT INTO regular SELECT 'k' || g, g * g FROM generate_series(1, 3000) g`, [], 'beta');
  await c.sql('CREATE TABLE bulk (id int PRIMARY KEY, payload text NOT NULL)', [], 'gamma');
  await c.sql(`INSERT INTO bulk SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, ${gammaRows}) g`, [], 'gamma');
}

/** Everything a restore must reproduce, per database. */
export interface DatabaseState {
  /** schema.table → md5 of its ordered rows */
  readonly tables: Record<string, string>;
  /** schema.table → tablespace */
  readonly placement: Record<string, string>;
  /** md5 over (oid, md5(content)) of every large object */
  readonly largeObjects: string;
  readonly largeObjectCount: number;
  readonly owner: string;
}

export async function databaseState(c: Cluster, db: string): Promise<DatabaseState> {
  const tables = await c.sql<{ t: string; ts: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS t, coalesce(ts.spcname, 'pg_default') AS ts
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
    [],
    db,
  );
  const digests: Record<string, string> = {};
  const placement: Record<string, string> = {};
  for (const { t, ts } of tables) {
    digests[t] = await tableDigest(c, t, db);
    placement[t] = ts;
  }
  const lo = (await c.sql<{ d: string | null; n: string }>(
    `SELECT md5(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' ORDER BY oid)) AS d, count(*) AS n FROM pg_largeobject_metadata`,
    [],
    db,
  ))[0]!;
  const owner = (await c.sql<{ o: string }>('SELECT pg_get_userbyid(datdba) AS o FROM pg_database WHERE datname = current_database()', [], db))[0]!.o;
  return { tables: digests, placement, largeObjects: lo.d ?? '', largeObjectCount: Number(lo.n), owner };
}

export async function clusterState(c: Cluster, dbs: readonly string[]): Promise<Record<string, DatabaseState>> {
  const out: Record<string, DatabaseState> = {};
  for (const db of dbs) out[db] = await databaseState(c, db);
  return out;
}

export async function userDatabases(c: Cluster): Promise<string[]> {
  return (await c.sql<{ datname: string }>('SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1')).map((r) => r.datname);
}

/** pgbacula.conf holding the password (0640: accepted; the only place a password may live). */
export function writePasswordConfig(path: string, password: string): string {
  writeFileSync(path, `# e2e\n[connection]\npassword = ${password}\n`, { mode: 0o640 });
  chmodSync(path, 0o640);
  return path;
}

export function pgClientBin(): string {
  return process.env.PGBACULA_PG18_BIN ?? join(process.env.PGBACULA_CACHE ?? '/var/cache/pgbacula', 'pg18', 'bin');
}
