/**
 * A relation past one 1 GiB segment (PostgreSQL 16, pgbacula's own summaries): an incremental
 * backup stores each changed segment (`16384`, `16384.1`) as its own incremental file with block
 * numbers relative to that segment, verifies the pages it reads with their relation-wide block
 * numbers, and the restored chain equals the source.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, stopServerIn, type Cluster } from '../harness/cluster.js';
import { embeddedPgDir } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { queryAt, type Endpoint } from '../harness/verify-cluster.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, until } from './wal-helpers.js';

const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };
const ROWS = 560_000; // ~4 rows of ~1.9 kB per 8 kB page: about 1.07 GiB

/** A digest of a table too large for one string: the md5 of its rows' md5s in key order. */
async function digest(e: Endpoint): Promise<string> {
  const [row] = await queryAt<{ d: string }>(e, "SELECT md5(string_agg(md5(w::text), '' ORDER BY id)) AS d FROM wide w");
  return row!.d;
}

describe('a relation larger than one segment (PostgreSQL 16)', () => {
  let c: Cluster;
  let repo: string;
  let target: string;

  beforeAll(async () => {
    repo = ownedDir('block-large');
    // The gigabyte of WAL that loads the table is not archived (nothing restores from before the
    // full backup): archiving into the repository starts just before it.
    c = await startCluster({ major: 16, name: 'blklarge', settings: { archive_mode: 'on', archive_command: '/bin/true', max_wal_size: '2GB' } });
    await c.sql('CREATE TABLE wide (id int PRIMARY KEY, pad text NOT NULL) WITH (autovacuum_enabled = off)');
    await c.sql(`INSERT INTO wide SELECT g, repeat(md5(g::text), 59) FROM generate_series(1, ${ROWS}) g`);
    await c.sql('CHECKPOINT');
    await c.sql(`ALTER SYSTEM SET archive_command = '${archiveCommandLine({ repo }).replace(/'/g, "''")}'`);
    await c.sql('SELECT pg_reload_conf()');
    await c.sql('SELECT pg_switch_wal()');
  }, 600_000);
  afterAll(async () => {
    if (target) stopServerIn(16, target);
    await c?.destroy();
  });

  it('stores the changed blocks of each segment, relative to it, and restores the chain', async () => {
    const [{ node, db }] = (await c.sql<{ node: string; db: string }>("SELECT pg_relation_filenode('wide')::text AS node, (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS db")) as [{ node: string; db: string }];
    const conn = ['--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'];
    const full = await runCli(['backup', '--repo', repo, '--mode', 'pitr_block', '--type', 'full', ...conn], quiet);
    expect(full.code, full.stderr).toBe(0);
    // A few rows near the start (segment 0) and near the end (segment 1, past 1 GiB), and more rows.
    await c.sql('UPDATE wide SET pad = upper(pad) WHERE id IN (10, 20, 30)');
    await c.sql(`UPDATE wide SET pad = upper(pad) WHERE id IN (${ROWS - 10}, ${ROWS - 1000})`);
    await c.sql(`INSERT INTO wide SELECT g, repeat(md5(g::text), 59) FROM generate_series(${ROWS + 1}, ${ROWS + 200}) g`);
    const incr = await runCli(['backup', '--repo', repo, '--mode', 'pitr_block', '--type', 'incr', ...conn], quiet);
    expect(incr.code, incr.stderr).toBe(0);
    const id = /backup (\S+) complete/.exec(incr.stdout)![1]!;
    const m = JSON.parse(readFileSync(join(repo, 'backups', id, 'manifest.json'), 'utf8')) as { files: { path: string; size: number; incremental?: { blocks: number; truncationBlocks: number; fileSize: number } }[]; pageVerification: string; checksumFailures: number };
    const seg0 = m.files.find((f) => f.path === `pgdata/base/${db}/INCREMENTAL.${node}`);
    const seg1 = m.files.find((f) => f.path === `pgdata/base/${db}/INCREMENTAL.${node}.1`);
    expect(seg0?.incremental, JSON.stringify(m.files.filter((f) => f.path.includes(node)))).toBeDefined();
    expect(seg1?.incremental).toBeDefined();
    // Segment 0: the three rows' pages (and hint-bit images of a few more), never the whole GiB.
    expect(seg0!.incremental!.blocks).toBeGreaterThanOrEqual(1);
    expect(seg0!.incremental!.blocks).toBeLessThan(1000);
    expect(seg0!.incremental!.truncationBlocks).toBe(131072);
    expect(seg1!.incremental!.blocks).toBeGreaterThanOrEqual(2);
    expect(seg1!.incremental!.blocks).toBeLessThan(1000);
    expect(seg1!.incremental!.fileSize).toBe(seg1!.incremental!.truncationBlocks * 8192);
    // Pages of segment 1 were verified with their relation-wide block numbers: none failed.
    expect(m.pageVerification).toBe('passed');
    expect(m.checksumFailures).toBe(0);

    const [{ lsn }] = (await c.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
    const source = await digest({ host: c.socketDir, port: c.port });
    const [{ name }] = (await c.sql<{ name: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
    await c.sql('SELECT pg_switch_wal()');
    await until(`segment ${name} is archived`, () => execFileSync('find', [join(repo, 'wal'), '-name', name], { encoding: 'utf8' }).trim() !== '', 60_000);

    target = join(testRoot(), 'block-large-restore');
    registerForCleanup({ pgdata: target, dir: target });
    const port = await freePort();
    const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(16), 'bin'), '--target-lsn', lsn], quiet);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/rebuilt block by block from a chain of 2 backups/);
    expect(await digest({ host: c.socketDir, port })).toBe(source);
  }, 600_000);
});
