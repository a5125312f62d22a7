/**
 * Where a block-level backup finds its changed blocks, and what it does when it cannot: a WAL
 * segment deleted from the archive between two jobs makes the next one read every page instead
 * (a page LSN scan) and say why, and the chain through it restores equal to the source; on 17+,
 * summarize_wal turned on between
 * jobs moves the source from pgbacula's summaries to the server's once they cover the range.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { embeddedPgDir } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { queryAt } from '../harness/verify-cluster.js';
import { serverUser } from '../harness/os-user.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, until } from './wal-helpers.js';

const quiet = { PGBACULA_PROGRESS_SECONDS: '0', PGBACULA_SUMMARIZER_WAIT_SECONDS: '20' };

interface Manifest {
  level: string;
  reference?: { backupId: string };
  fullBecause?: string;
  changedBlocks?: { source: string };
}

function setUp(major: 15 | 17, summarizeWal: boolean) {
  const s = {} as { c: Cluster; repo: string };
  const backup = async (type: 'full' | 'incr' | 'diff') => {
    const r = await runCli(['backup', '--repo', s.repo, '--mode', 'pitr_block', '--type', type, '--host', s.c.socketDir, '--port', String(s.c.port), '--user', 'postgres'], quiet);
    expect(r.code, r.stderr).toBe(0);
    const id = /backup (\S+) complete/.exec(r.stdout)![1]!;
    return { ...r, id, manifest: JSON.parse(readFileSync(join(s.repo, 'backups', id, 'manifest.json'), 'utf8')) as Manifest };
  };
  const change = async (n: number) => {
    await s.c.sql(`UPDATE t SET v = md5(v || '${n}') WHERE id % 13 = ${n % 13}`);
    await s.c.sql(`INSERT INTO t SELECT g, md5(g::text) FROM generate_series(${100000 + n * 1000}, ${100500 + n * 1000}) g`);
  };
  beforeAll(async () => {
    s.repo = ownedDir(`block-fallback-${major}`);
    s.c = await startCluster({ major, name: `blkfb${major}`, ...(summarizeWal ? { summarizeWal: true } : {}), settings: { archive_mode: 'on', archive_command: archiveCommandLine({ repo: s.repo }) } });
    await s.c.sql('CREATE TABLE t (id int PRIMARY KEY, v text)');
    await s.c.sql('INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 30000) g');
  });
  afterAll(async () => {
    await s.c?.destroy();
  });
  return { s, backup, change };
}

/** The rows of t and of wide, in order, as digests, with their counts. */
async function contents(at: { host: string; port: number } | Cluster): Promise<Record<string, string>> {
  const sql =
    "SELECT (SELECT count(*) FROM t)::text AS t_rows, (SELECT md5(string_agg(id::text || ':' || v, ',' ORDER BY id)) FROM t) AS t_digest, " +
    "(SELECT count(*) FROM wide)::text AS wide_rows, (SELECT md5(string_agg(id::text || ':' || pad, ',' ORDER BY id)) FROM wide) AS wide_digest";
  const [r] = 'sql' in at ? await at.sql<Record<string, string>>(sql) : await queryAt<Record<string, string>>(at, sql);
  return r!;
}

/** `pgbacula restore` of one backup (its chain rebuilt) into a new directory, started on a free port, recovered to the backup's end. */
async function restoreBackup(repo: string, id: string, major: 15 | 17, socketDir: string): Promise<{ host: string; port: number; stop: () => void }> {
  const pgdata = join(testRoot(), `block-fallback-restored-${major}`);
  registerForCleanup({ pgdata, dir: pgdata });
  const port = await freePort();
  // To the backup's own end: the archive holds WAL of later changes too.
  const r = await runCli(['restore', '--repo', repo, '--backup', id, '--pgdata-dir', pgdata, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(major), 'bin'), '--skip-wal-replay=true'], quiet);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/RESTORE PHASE 2\/6 lay-down: .* rebuilt block by block from a chain of 2 backups/);
  expect(r.stderr).toMatch(/RESTORE PHASE 6\/6 verify: SELECT 1 answered; page checksums [\d,]+ pages, 0 failures/);
  const u = serverUser();
  const stop = () => execFileSync(join(embeddedPgDir(major), 'bin', 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid, stdio: 'ignore' });
  // The restored server keeps the source's settings: its socket directory among them.
  return { host: socketDir, port, stop };
}

/** Switch to a new segment and wait until the archive holds the one just closed. */
async function archiveCurrent(c: Cluster, repo: string): Promise<string> {
  const [{ name }] = (await c.sql<{ name: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
  await c.sql('SELECT pg_switch_wal()');
  const dir = (): string[] => readdirSync(join(repo, 'wal')).filter((d) => /^\d+$/.test(d)).flatMap((sys) => readdirSync(join(repo, 'wal', sys, '00000001')).map((f) => join(repo, 'wal', sys, '00000001', f)));
  await until(`segment ${name} is archived`, () => dir().some((p) => p.endsWith(`/${name}`)), 60_000);
  return dir().find((p) => p.endsWith(`/${name}`))!;
}

describe('a WAL segment missing from the archive (PostgreSQL 15)', () => {
  const { s, backup, change } = setUp(15, false);

  it('makes the next incremental read every page (a page LSN scan), saying why; the chain through it restores equal to the source', async () => {
    // A table of ≈ 600 pages of which the scan finds one changed: stored as an incremental file.
    await s.c.sql("CREATE TABLE wide AS SELECT g AS id, repeat(md5(g::text), 6) AS pad FROM generate_series(1, 20000) g");
    await s.c.sql('CHECKPOINT');
    const full = await backup('full');
    await s.c.sql("UPDATE wide SET pad = 'changed' WHERE id = 7");
    await change(1);
    const gone = await archiveCurrent(s.c, s.repo);
    await change(2);
    await archiveCurrent(s.c, s.repo);
    rmSync(gone);
    rmSync(`${gone}.summary`, { force: true });
    // Gone from the server's pg_wal too (the job would read it there): two checkpoints later.
    const name0 = gone.split('/').pop()!;
    for (let i = 0; i < 3 && existsSync(join(s.c.pgdata, 'pg_wal', name0)); i++) {
      await s.c.sql('SELECT pg_switch_wal()');
      await s.c.sql('CHECKPOINT');
    }
    expect(existsSync(join(s.c.pgdata, 'pg_wal', name0))).toBe(false);
    const fallback = await backup('incr');
    const name = gone.split('/').pop()!;
    // No summary covers the range: every page of the reference's relation files is read, and
    // those written since the reference started are stored.
    expect(fallback.manifest.level).toBe('incremental');
    expect(fallback.manifest.reference?.backupId).toBe(full.id);
    expect(fallback.manifest.changedBlocks?.source).toBe('page LSN scan');
    expect(fallback.stderr).toMatch(new RegExp(`the changed blocks cannot be found from WAL summaries \\(.*${name}.*\\): reading every page of the relation files instead \\(page LSN scan\\)`));
    expect(fallback.stderr).toMatch(/changed blocks found from the page LSN scan \([\d,]+ relation files, .* read, pages with an LSN from \S+ on\): [\d,]+ blocks changed/);
    const scanned = fallback.manifest.changedBlocks as unknown as { incrementalFiles: number; unchangedFiles: number; bytesSkipped: number };
    expect(scanned.incrementalFiles).toBeGreaterThan(0);
    expect(scanned.unchangedFiles).toBeGreaterThan(0);
    expect(scanned.bytesSkipped).toBe(0);
    const atFallback = await contents(s.c);
    await change(3);
    const next = await backup('incr');
    expect(next.manifest.level).toBe('incremental');
    expect(next.manifest.reference?.backupId).toBe(fallback.id);
    expect(next.manifest.changedBlocks?.source).toBe('pgbacula summaries');
    expect(full.manifest.level).toBe('full');
    // The chain through the scanned incremental restores to what the source held then.
    const restored = await restoreBackup(s.repo, fallback.id, 15, s.c.socketDir);
    try {
      expect(await contents(restored)).toEqual(atFallback);
    } finally {
      restored.stop();
    }
  });
});

describe('summarize_wal turned on between jobs (PostgreSQL 17)', () => {
  const { s, backup, change } = setUp(17, false);

  it('uses the server\'s summaries once they cover the range, and pgbacula\'s when they do not', async () => {
    await backup('full');
    await change(1);
    const first = await backup('incr');
    expect(first.manifest.changedBlocks?.source).toBe('pgbacula summaries');
    expect(first.stderr).toContain("not from the server's summaries: the server does not summarize WAL (summarize_wal = off)");
    await s.c.sql('ALTER SYSTEM SET summarize_wal = on');
    await s.c.sql('SELECT pg_reload_conf()');
    await change(2);
    // The summarizer starts from WAL the server still has: it covers the range from the reference on.
    const second = await backup('incr');
    expect(second.manifest.level).toBe('incremental');
    expect(second.manifest.changedBlocks?.source, second.stderr).toBe('server summaries');
    expect(second.stderr).toMatch(/changed blocks found from server summaries \(\d+ summary file\(s\) of the server/);
    // A differential counts from the full backup: summaries the server no longer has from there
    // on leave pgbacula's summaries of the archive, and the job says why.
    const dir = join(s.c.pgdata, 'pg_wal', 'summaries');
    for (const f of readdirSync(dir)) rmSync(join(dir, f));
    await change(3);
    const third = await backup('diff');
    expect(third.manifest.level).toBe('differential');
    expect(third.manifest.changedBlocks?.source).toBe('pgbacula summaries');
    expect(third.stderr).toMatch(/not from the server's summaries: the server's summaries do not cover/);
  });
});
