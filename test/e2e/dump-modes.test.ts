/**
 * Issue 3, acceptance 1–3, through real Bacula 15.0.3 daemons driven by bconsole: modes `dump`
 * and `parallel_dump` of the real backend against a real PostgreSQL 17 with three databases
 * (large objects in alpha, a non-default tablespace in beta, a few MB in gamma), reached over TCP
 * with a password that lives only in a pgbacula.conf.
 *
 *  1. estimate lists the virtual files; Full jobs end T; `list files` shows /@pgbacula/... paths
 *  2. where= writes the archives as files; plugin options restore into fresh servers, every table's
 *     md5 over ordered rows (and every large object) equal to the source; target_database
 *  3. custom, directory, tar and plain round-trip; include_blobs=false; exclude_database;
 *     an Incremental job is a full dump and says so
 *
 * Needs scripts/setup.sh (Bacula build, PostgreSQL 18 client tools); a missing part fails the suite
 * with its reason — never a skip.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../harness/cluster.js';
import { BaculaSite, findBaculaInstall, pluginLine, type JobResult } from './bacula-site.js';
import {
  clusterState, passwordCluster, PASSWORD, pgClientBin, populateSource, serverOwnedDir, userDatabases, writePasswordConfig,
} from './dump-fixture.js';
import { buildShimWithRealBackend, clientToolsFor } from './real-backend.js';

const MAJOR = 17 as const;
const ALL_DBS = ['alpha', 'beta', 'gamma', 'postgres'];

describe('dump modes through real Bacula daemons (issue 3, acceptance 1–3)', () => {
  const install = findBaculaInstall();
  let work: string;
  let site: BaculaSite;
  let source: Cluster;
  let targets: Cluster[] = [];
  let sysid: string;
  let conf: string;
  let sourceState: Awaited<ReturnType<typeof clusterState>>;
  const fullJobs: Record<string, JobResult> = {};

  const base = (): Record<string, string | number> => ({ host: '127.0.0.1', port: source.port, user: 'postgres', config: conf });
  const dumpDir = (job: number | string): string => `/@pgbacula/${sysid}/dump/${job}`;
  /** Restore-time options pointing at a fresh server; ts1 relocated (its directory is the source's). */
  const into = (t: Cluster, extra: Record<string, string | boolean> = {}): Record<string, string | number | boolean> => ({
    host: '127.0.0.1',
    port: String(t.port),
    remap_tablespace: `ts1=${serverOwnedDir(join(t.dir, 'ts1-restored'))}`,
    ...extra,
  });

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    if (!existsSync(join(pgClientBin(), 'pg_dump'))) throw new Error(`PostgreSQL 18 client tools missing in ${pgClientBin()}: run ./scripts/setup.sh`);
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), 'dump-modes-'));
    const shim = buildShimWithRealBackend(work, install);
    [source, ...targets] = await Promise.all([
      passwordCluster(MAJOR, 'dump-src'),
      passwordCluster(MAJOR, 'dump-dst-a'),
      passwordCluster(MAJOR, 'dump-dst-b'),
      passwordCluster(MAJOR, 'dump-dst-c'),
    ]);
    await populateSource(source, join(source.dir, 'ts1'));
    sysid = (await source.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
    sourceState = await clusterState(source, ALL_DBS);
    conf = writePasswordConfig(join(work, 'pgbacula.conf'), PASSWORD);
    const fs = (name: string, params: Record<string, string | number | boolean>) => ({ name, plugins: [pluginLine('pgbacula', { ...base(), ...params })] });
    site = await BaculaSite.start({
      install,
      plugins: [shim.so],
      parentDir: work,
      // the newest client tools first on the FD's PATH, as on a host with the PGDG/sid client installed
      fdEnv: { PATH: `${pgClientBin()}:${process.env.PATH ?? '/usr/bin:/bin'}`, PGBACULA_PROGRESS_SECONDS: '0.1' },
      fileSets: [
        fs('dump', { mode: 'dump' }),
        fs('pdump', { mode: 'parallel_dump', parallel_jobs: 2, tmpdir: join(work, 'staging') }),
        fs('tar', { mode: 'dump', dump_format: 'tar' }),
        fs('plain', { mode: 'dump', dump_format: 'plain' }),
        fs('noblobs', { mode: 'dump', include_blobs: false, exclude_database: 'gamma' }),
      ],
      jobs: [
        { name: 'dump', fileSet: 'dump' },
        { name: 'pdump', fileSet: 'pdump' },
        { name: 'tar', fileSet: 'tar' },
        { name: 'plain', fileSet: 'plain' },
        { name: 'noblobs', fileSet: 'noblobs' },
      ],
    });
  }, 240_000);

  afterAll(async () => {
    await site?.stop();
    await Promise.all([source, ...targets].filter(Boolean).map((c) => c.destroy()));
    // no client program may outlive the jobs
    if (source) expect(clientToolsFor(source.port)).toEqual([]);
  });

  /** Every database of the source, table by table, row by row, large object by large object. */
  async function expectSameAsSource(target: Cluster, dbs = ALL_DBS): Promise<void> {
    const got = await clusterState(target, dbs);
    for (const db of dbs) {
      expect(got[db], `database ${db}`).toEqual(sourceState[db]);
      if (db !== 'postgres') expect(Object.keys(got[db]!.tables).length, `tables of ${db}`).toBeGreaterThan(0);
    }
  }

  // ---- 1. estimate, Full, list files ------------------------------------------------------------

  it('estimate lists the virtual files of both modes (no data moves)', async () => {
    const dump = await site.estimate('dump');
    const names = ['manifest.json', 'globals.sql', 'alpha.dump', 'beta.dump', 'gamma.dump', 'postgres.dump'];
    expect(dump.files, dump.raw).toBe(names.length);
    for (const n of names) expect(dump.listing.join('\n'), dump.raw).toContain(`${dumpDir(0)}/${n}`);
    const pdump = await site.estimate('pdump');
    expect(pdump.files, pdump.raw).toBe(6);
    for (const db of ALL_DBS) expect(pdump.listing.some((l) => l.startsWith('d') && l.includes(`${dumpDir(0)}/${db}.dir`)), pdump.raw).toBe(true);
    // estimated bytes: the databases' sizes
    expect(pdump.bytes).toBeGreaterThan(8_000_000);
    expect(clientToolsFor(source.port)).toEqual([]);
  });

  it('a Full dump job ends T, logs what it did, and list files shows the /@pgbacula paths', async () => {
    const run = await site.runJob('dump', 'Full');
    fullJobs.dump = run;
    expect(run.status, run.log).toBe('T');
    expect(run.errors).toBe(0);
    expect(run.log).toMatch(/pgbacula: Full backup parameters: host=127\.0\.0\.1 port=\d+ user=postgres config=\S+ mode=dump\n/);
    expect(run.log).toMatch(/pgbacula: starting dump backup \(Full\) of 4 databases: alpha, beta, gamma, postgres \(PG 17\.\d+ on 127\.0\.0\.1:\d+; pg_dump 18\.\d+, format custom, compression 0\)/);
    expect(run.log).toMatch(/pgbacula: globals \(roles, tablespaces\): [\d.]+ (B|KiB)/);
    expect(run.log).toMatch(/pgbacula: database gamma: [\d.]+ MiB in [\d.]+ s/);
    expect(run.log).toMatch(/pgbacula: dump complete: 4 databases and globals/);
    // progress (bytes, rate) while a dump runs: every 0.1 s on this site
    expect(run.log).toMatch(/pgbacula: progress: dumping gamma: [\d.]+ (KiB|MiB), [\d.]+ MB\/s/);
    expect(run.log).not.toContain(PASSWORD);
    const files = (await site.listFiles(run.jobId)).sort();
    const dir = dumpDir(run.jobId);
    expect(files).toEqual([`${dir}/alpha.dump`, `${dir}/beta.dump`, `${dir}/gamma.dump`, `${dir}/globals.sql`, `${dir}/manifest.json`, `${dir}/postgres.dump`]);
    expect(run.bytes).toBeGreaterThan(8_000_000);
  });

  it('a Full parallel_dump job (-Fd -j 2) ends T with each directory archive file by file', async () => {
    const run = await site.runJob('pdump', 'Full');
    fullJobs.pdump = run;
    expect(run.status, run.log).toBe('T');
    expect(run.log).toMatch(/pgbacula: starting parallel_dump backup \(Full\) of 4 databases: .*format directory, 2 jobs/);
    expect(run.log).toContain('pgbacula: dumping database gamma (directory, 2 parallel jobs; staged in');
    const files = await site.listFiles(run.jobId);
    const dir = dumpDir(run.jobId);
    for (const db of ALL_DBS) expect(files, files.join('\n')).toContain(`${dir}/${db}.dir/toc.dat`);
    expect(files.filter((f) => f.startsWith(`${dir}/gamma.dir/`) && /\/\d+\.dat$/.test(f)).length).toBeGreaterThan(0);
    // the staging directory is gone
    expect(readdirSync(join(work, 'staging'))).toEqual([]);
  });

  // ---- 2. restores ----------------------------------------------------------------------------

  it('restore with where= writes the archives as files that pg_restore reads', async () => {
    const job = fullJobs.dump!;
    const where = join(work, 'restored-files');
    const res = await site.restore({ jobId: job.jobId, where });
    expect(res.status, res.log).toBe('T');
    const dir = join(where, dumpDir(job.jobId));
    expect(readdirSync(dir).sort()).toEqual(['alpha.dump', 'beta.dump', 'gamma.dump', 'globals.sql', 'manifest.json', 'postgres.dump']);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { databases: Array<{ name: string }>; tablespaces: Array<{ name: string }>; systemIdentifier: string };
    expect(manifest.databases.map((d) => d.name)).toEqual(ALL_DBS);
    expect(manifest.tablespaces.map((t) => t.name)).toEqual(['ts1']);
    expect(manifest.systemIdentifier).toBe(sysid);
    expect(readFileSync(join(dir, 'globals.sql'), 'utf8')).toMatch(/CREATE ROLE app_owner;[\s\S]*CREATE TABLESPACE ts1 OWNER postgres LOCATION/);
    const toc = execFileSync(join(pgClientBin(), 'pg_restore'), ['-l', join(dir, 'alpha.dump')], { encoding: 'utf8' });
    expect(toc).toMatch(/TABLE DATA public accounts/);
    expect(toc).toMatch(/BLOB/);
    expect(statSync(join(dir, 'gamma.dump')).size).toBeGreaterThan(8_000_000);
    expect(res.log).toMatch(/pgbacula: restored 6 files \([\d.]+ MiB\) under /);
  });

  it('restore into a fresh server (plugin options) rebuilds every database, row for row', async () => {
    const t = targets[0]!;
    const res = await site.restore({ jobId: fullJobs.dump!.jobId, where: '', pluginOptions: into(t) });
    expect(res.status, res.log).toBe('T');
    expect(res.log).toMatch(new RegExp(`pgbacula: restoring dumps into PostgreSQL 17\\.\\d+ at 127\\.0\\.0\\.1:${t.port} as postgres`));
    expect(res.log).toContain('pgbacula: globals (roles, tablespaces) restored');
    expect(res.log).toMatch(/pgbacula: tablespace ts1: location .* → .*ts1-restored \(remap_tablespace\)/);
    expect(res.log).toContain('pgbacula: database postgres: dropped the existing empty database, recreating it from the backup');
    expect(res.log).toMatch(/pgbacula: restore complete: 4 databases \(alpha, beta, gamma, postgres\) and globals into 127\.0\.0\.1:\d+/);
    expect(await userDatabases(t)).toEqual(ALL_DBS);
    await expectSameAsSource(t);
    const st = await clusterState(t, ['alpha', 'beta']);
    expect(st.alpha!.largeObjectCount).toBe(3);
    expect(st.alpha!.owner).toBe('app_owner');
    expect(st.beta!.placement['public.placed']).toBe('ts1');
    const loc = (await t.sql<{ l: string }>("SELECT pg_tablespace_location(oid) AS l FROM pg_tablespace WHERE spcname = 'ts1'"))[0]!.l;
    expect(loc).toBe(join(t.dir, 'ts1-restored'));
  });

  it('target_database restores only that database (with the globals it needs)', async () => {
    const t = targets[1]!;
    const res = await site.restore({ jobId: fullJobs.dump!.jobId, where: '', pluginOptions: into(t, { target_database: 'beta' }) });
    expect(res.status, res.log).toBe('T');
    expect(res.log).toContain('pgbacula: database alpha: skipped (target_database=beta)');
    expect(await userDatabases(t)).toEqual(['beta', 'postgres']);
    await expectSameAsSource(t, ['beta']);
    // the postgres database of the target was left alone
    expect(res.log).not.toContain('database postgres: dropped');
  });

  it('parallel_dump archives restore with pg_restore -j into a fresh server', async () => {
    const t = targets[2]!;
    const res = await site.restore({ jobId: fullJobs.pdump!.jobId, where: '', pluginOptions: into(t) });
    expect(res.status, res.log).toBe('T');
    expect(res.log).toMatch(/pgbacula: database gamma restored \(directory archive, 2 parallel jobs\)/);
    await expectSameAsSource(t);
  });

  // ---- 3. formats, options, levels --------------------------------------------------------------

  for (const format of ['tar', 'plain'] as const) {
    it(`dump_format=${format} round-trips (restored over the earlier restore: overwrite_existing)`, async () => {
      const run = await site.runJob(format, 'Full');
      expect(run.status, run.log).toBe('T');
      const ext = format === 'tar' ? 'tar' : 'sql';
      expect((await site.listFiles(run.jobId)).sort()).toContain(`${dumpDir(run.jobId)}/alpha.${ext}`);
      const t = targets[0]!;
      if (format === 'tar') {
        // a non-empty database is refused without overwrite_existing (the restore job fails)...
        const refused = await site.restore({ jobId: run.jobId, where: '', pluginOptions: into(t, { target_database: 'gamma' }) });
        expect(refused.status).toBe('E');
        expect(refused.log).toMatch(/database gamma already exists on 127\.0\.0\.1:\d+ and is not empty\. Set the Plugin Option overwrite_existing=yes/);
      }
      // ...and replaced with it
      const res = await site.restore({ jobId: run.jobId, where: '', pluginOptions: into(t, { overwrite_existing: true }) });
      expect(res.status, res.log).toBe('T');
      expect(res.log).toMatch(/database alpha: dropped the existing database, recreating it from the backup \(overwrite_existing\)/);
      expect(res.log).toMatch(/globals: \d+ role\/tablespace definitions? (was|were) already there/);
      await expectSameAsSource(t);
    });
  }

  it('include_blobs=false leaves the large objects out; exclude_database leaves gamma out', async () => {
    const run = await site.runJob('noblobs', 'Full');
    expect(run.status, run.log).toBe('T');
    expect(run.log).toMatch(/starting dump backup \(Full\) of 3 databases: alpha, beta, postgres .*without large objects/);
    const dir = dumpDir(run.jobId);
    const files = (await site.listFiles(run.jobId)).sort();
    expect(files).toEqual([`${dir}/alpha.dump`, `${dir}/beta.dump`, `${dir}/globals.sql`, `${dir}/manifest.json`, `${dir}/postgres.dump`]);
    const where = join(work, 'restored-noblobs');
    const res = await site.restore({ jobId: run.jobId, where, files: [`${dir}/alpha.dump`] });
    expect(res.status, res.log).toBe('T');
    const toc = execFileSync(join(pgClientBin(), 'pg_restore'), ['-l', join(where, dir, 'alpha.dump')], { encoding: 'utf8' });
    expect(toc).toMatch(/TABLE DATA public documents/);
    expect(toc).not.toMatch(/BLOB/);
  });

  it('an Incremental job of a dump mode is a full dump, and says so', async () => {
    const run = await site.runJob('dump', 'Incremental');
    expect(run.status, run.log).toBe('T');
    expect(run.log).toMatch(/Backup Level:\s+Incremental/);
    expect(run.log).toContain('pgbacula: Incremental level requested: dump always takes a full dump of every database');
    const files = (await site.listFiles(run.jobId)).sort();
    expect(files.filter((f) => f.endsWith('.dump'))).toEqual(['alpha', 'beta', 'gamma', 'postgres'].map((d) => `${dumpDir(run.jobId)}/${d}.dump`));
    expect(run.bytes).toBeGreaterThan(8_000_000);
    // Bacula stores the Plugin Options descriptor (the shim's RestoreOptions object) with Full
    // jobs only: an Incremental job alone offers none (documented in the README)
    await expect(site.restore({ jobId: run.jobId, where: '', pluginOptions: { target_database: 'alpha' } })).rejects.toThrow(/No plugin to configure/);
  });
});
