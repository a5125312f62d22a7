/**
 * Smoke test of the FD shim with real Bacula 15.0.3 daemons and the real backend
 * (`pgbacula backend` behind a launcher, exactly as installed), against a small PostgreSQL 18:
 *  - a plain (non-plugin) FileSet backup and restore works on the harness site;
 *  - pgbacula-fd.so loads, spawns its backend, and a Full job ends with status T;
 *  - estimate lists the virtual files; the catalog holds /@pgbacula/...; `.ls` and `.query` answer;
 *  - the restore side receives the files (written by the backend below Where=);
 *  - restore-time Plugin Options (bconsole mod → Plugin Options) reach the backend, and —
 *    15.0.3's metaplugin keeps one option set per job — reach every backend of the job;
 *  - two Plugin= lines: one backend each; file= starts only the one that is needed.
 * The dump modes themselves are proven in dump-modes.test.ts and dump-failures.test.ts.
 *
 * Needs scripts/bacula-build.sh to have run (scripts/setup.sh runs it); without it the suite fails
 * with that reason — it never skips.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { BaculaSite, findBaculaInstall, pluginLine } from './bacula-site.js';
import { pgClientBin } from './dump-fixture.js';
import { buildShimWithRealBackend, clientToolsFor, type ShimParams } from './real-backend.js';

const install = findBaculaInstall();

describe('FD shim smoke test (real Bacula 15.0.3 daemons, real backend)', () => {
  let work: string;
  let site: BaculaSite;
  let pg: Cluster;
  let data: string;
  let schema: ShimParams;

  const line = (params: Record<string, string | number>) => pluginLine('pgbacula', { mode: 'dump', host: pg.socketDir, port: pg.port, user: 'postgres', ...params });
  const dumpFile = (cluster: string, jobId: number | string, db: string) => `/@pgbacula/${cluster}/dump/${jobId}/${db}.dump`;

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    const parent = process.env.PGBACULA_TEST_ROOT ?? tmpdir();
    work = mkdtempSync(join(parent, 'shim-smoke-'));
    const shim = buildShimWithRealBackend(work, install);
    schema = shim.schema;

    pg = await startCluster({ major: 18, name: 'smoke' });
    for (const db of ['alpha', 'beta']) {
      await pg.sql(`CREATE DATABASE ${db}`);
      await pg.sql(`CREATE TABLE t AS SELECT g AS id, '${db}' || g AS v FROM generate_series(1, 100) g`, [], db);
    }

    // a local directory for the plain FileSet
    data = join(work, 'data');
    mkdirSync(join(data, 'sub'), { recursive: true });
    writeFileSync(join(data, 'a.txt'), 'plain file a\n');
    writeFileSync(join(data, 'sub', 'b.bin'), Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251)));

    site = await BaculaSite.start({
      install,
      plugins: [shim.so],
      parentDir: work,
      fdEnv: { PATH: `${pgClientBin()}:${process.env.PATH ?? '/usr/bin:/bin'}` },
      fileSets: [
        { name: 'plain', files: [data] },
        { name: 'pg', plugins: [line({ database: 'alpha', cluster: 'smoke' })] },
        // two clusters in one FileSet (here: the same server under two names), one backend each
        { name: 'pg-two', plugins: [line({ database: 'alpha', cluster: 'smoke-a' }), line({ database: 'beta', cluster: 'smoke-b' })] },
      ],
      jobs: [
        { name: 'plain-backup', fileSet: 'plain' },
        { name: 'pg-backup', fileSet: 'pg' },
        { name: 'pg-two-backup', fileSet: 'pg-two' },
      ],
    });
  }, 180_000);

  afterAll(async () => {
    await site?.stop();
    await pg?.destroy();
  });

  it('runs a plain FileSet backup and restores it under where=', async () => {
    const backup = await site.runJob('plain-backup', 'Full');
    expect(backup.status, backup.log).toBe('T');
    const files = await site.listFiles(backup.jobId);
    expect(files).toContain(join(data, 'a.txt'));
    expect(files).toContain(join(data, 'sub', 'b.bin'));

    const where = join(site.root, 'restore', 'plain');
    const restore = await site.restore({ jobId: backup.jobId, where });
    expect(restore.status, restore.log).toBe('T');
    expect(readFileSync(join(where, data, 'a.txt'), 'utf8')).toBe('plain file a\n');
    expect(readFileSync(join(where, data, 'sub', 'b.bin')).equals(readFileSync(join(data, 'sub', 'b.bin')))).toBe(true);
  });

  it('loads pgbacula-fd.so in the FD', async () => {
    const out = await site.bconsole(`status client=${site.layout.names.fd}`);
    expect(out).toMatch(/Plugin: .*pgbacula\(/);
  });

  it('estimates the virtual files through the shim', async () => {
    const est = await site.estimate('pg-backup', 'Full');
    expect(est.files, est.raw).toBe(3);
    const listing = est.listing.join('\n');
    for (const f of ['manifest.json', 'globals.sql', 'alpha.dump']) expect(listing).toContain(`/@pgbacula/smoke/dump/0/${f}`);
  });

  it('answers .ls and .query through the shim', async () => {
    const ls = await site.bconsole(`.ls client=${site.layout.names.fd} plugin="${line({ cluster: 'smoke' }).replace(/"/g, '\\"')}" path=/`);
    expect(ls).toContain('/@pgbacula/smoke/');
    const q = await site.bconsole(`.query client=${site.layout.names.fd} plugin="${line({ cluster: 'smoke' }).replace(/"/g, '\\"')}" parameter=databases`);
    expect(q).toMatch(/database=alpha/);
    expect(q).toMatch(/database=beta/);
  });

  it('runs a Full plugin job that ends with status T', async () => {
    const run = await site.runJob('pg-backup', 'Full');
    expect(run.status, run.log).toBe('T');
    expect(run.errors).toBe(0);
    expect(run.log).toContain('pgbacula: starting dump backup (Full) of 1 database: alpha');
    expect((await site.listFiles(run.jobId)).sort()).toEqual(
      [dumpFile('smoke', run.jobId, 'alpha'), `/@pgbacula/smoke/dump/${run.jobId}/globals.sql`, `/@pgbacula/smoke/dump/${run.jobId}/manifest.json`],
    );
    // shim RestoreOptions object + 3 files
    expect(run.files).toBe(4);
  });

  it('restores the files through the backend under where=', async () => {
    const backup = await site.runJob('pg-backup', 'Full');
    expect(backup.status, backup.log).toBe('T');
    const where = join(site.root, 'restore', 'pg');
    const restore = await site.restore({ jobId: backup.jobId, where });
    expect(restore.status, restore.log).toBe('T');
    const archive = readFileSync(join(where, dumpFile('smoke', backup.jobId, 'alpha')));
    expect(archive.subarray(0, 5).toString('latin1')).toBe('PGDMP'); // a pg_dump custom archive
    expect(restore.log).toContain(`pgbacula: restoring the dump files under ${where}`);
  });

  it('passes restore-time Plugin Options (bconsole mod) to the backend', async () => {
    const str = schema.restoreOptions.find((o) => o.name === 'target_database');
    const bool = schema.restoreOptions.find((o) => o.name === 'overwrite_existing');
    expect(str && bool, 'the schema offers target_database and overwrite_existing').toBeTruthy();
    const backup = await site.runJob('pg-backup', 'Full');
    expect(backup.status, backup.log).toBe('T');
    const where = join(site.root, 'restore', 'pg-options');
    const restore = await site.restore({ jobId: backup.jobId, where, pluginOptions: { target_database: 'alpha', overwrite_existing: true } });
    expect(restore.status, restore.log).toBe('T');
    expect(restore.log).toMatch(/pgbacula: restore parameters: mode=dump .*database=alpha cluster=smoke target_database=alpha overwrite_existing=1/);
    expect(existsSync(join(where, dumpFile('smoke', backup.jobId, 'alpha')))).toBe(true);
  });

  it('handles two Plugin= lines: one backend each, file= selection, Plugin Options are per job', async () => {
    const backup = await site.runJob('pg-two-backup', 'Full');
    expect(backup.status, backup.log).toBe('T');
    const files = await site.listFiles(backup.jobId);
    expect(files).toContain(dumpFile('smoke-a', backup.jobId, 'alpha'));
    expect(files).toContain(dumpFile('smoke-b', backup.jobId, 'beta'));
    expect(backup.log.match(/pgbacula: Full backup parameters:/g)).toHaveLength(2);

    // file= picks one catalog path; only that plugin's backend is started
    const whereOne = join(site.root, 'restore', 'pg-two-file');
    const one = await site.restore({ jobId: backup.jobId, where: whereOne, files: [dumpFile('smoke-b', backup.jobId, 'beta')] });
    expect(one.status, one.log).toBe('T');
    expect(existsSync(join(whereOne, dumpFile('smoke-b', backup.jobId, 'beta')))).toBe(true);
    expect(existsSync(join(whereOne, '@pgbacula', 'smoke-a'))).toBe(false);
    expect(one.log.match(/pgbacula: restore parameters:/g)).toHaveLength(1);

    // Plugin Options chosen for one of the two plugin strings
    const where = join(site.root, 'restore', 'pg-two-options');
    const restore = await site.restore({ jobId: backup.jobId, where, plugin: 'cluster=smoke-b', pluginOptions: { target_database: 'beta' } });
    expect(restore.status, restore.log).toBe('T');
    expect(readdirSync(join(where, '@pgbacula')).sort()).toEqual(['smoke-a', 'smoke-b']);
    const paramLines = restore.log.split('\n').filter((l) => l.includes('pgbacula: restore parameters:'));
    expect(paramLines).toHaveLength(2);
    // 15.0.3: the metaplugin keeps ONE option set per job and plugin, so options chosen for one
    // Plugin= string reach every pgbacula backend of that restore job
    for (const l of paramLines) expect(l).toContain('target_database=beta');
    expect(clientToolsFor(pg.port)).toEqual([]);
  });
});
