/**
 * Smoke test of the FD shim with real Bacula 15.0.3 daemons:
 *  - a plain (non-plugin) FileSet backup and restore works on the harness site;
 *  - pgbacula-fd.so loads, spawns its backend, and a Full job of one virtual file ends T;
 *  - estimate lists the virtual file; the catalog holds /@pgbacula/...;
 *  - the restore side receives the file (written by the backend below Where=);
 *  - restore-time Plugin Options (bconsole mod → Plugin Options) reach the backend.
 * The backend here is test/e2e/fixtures/fake-backend.mjs (tests the shim + daemons only).
 *
 * Needs scripts/bacula-build.sh to have run (scripts/setup.sh runs it); without it the suite fails
 * with that reason — it never skips.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BaculaSite, findBaculaInstall, pluginLine } from './bacula-site.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const install = findBaculaInstall();
const FAKE_DATA = 'hello from the pgbacula fake backend\n';

interface ShimParams {
  params: string[];
  restoreOptions: Array<{ name: string; type: string; doc?: string }>;
}

/** The project's parameter schema, as the shim build takes it (the built CLI must exist). */
function shimParams(): ShimParams {
  const cli = join(REPO, 'bin/pgbacula.js');
  const out = execFileSync(process.execPath, ['--no-warnings', cli, 'shim-params', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out) as ShimParams;
}

describe('FD shim smoke test (real Bacula 15.0.3 daemons, fake backend)', () => {
  let work: string;
  let site: BaculaSite;
  let fakeLog: string;
  let data: string;
  let schema: ShimParams;

  const received = (): Array<{ pid: number; dir: string; status: string; text: string }> =>
    existsSync(fakeLog)
      ? readFileSync(fakeLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { pid: number; dir: string; status: string; text: string })
      : [];

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    const parent = process.env.PGBACULA_TEST_ROOT ?? tmpdir();
    work = mkdtempSync(join(parent, 'shim-smoke-'));
    fakeLog = join(work, 'fake-backend.log');

    // 1. the backend launcher (BACKEND_CMD cannot carry arguments)
    const launcher = join(work, 'fake-backend');
    writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} --no-warnings ${join(REPO, 'test/e2e/fixtures/fake-backend.mjs')}\n`);
    chmodSync(launcher, 0o755);

    // 2. the shim, built against the cached tree, pointing at that launcher
    schema = shimParams();
    const paramsFile = join(work, 'shim-params.json');
    writeFileSync(paramsFile, JSON.stringify(schema));
    const shimDir = join(work, 'shim');
    execFileSync(join(REPO, 'native/build.sh'), ['--params', paramsFile, '--backend', launcher, '--out', shimDir], {
      stdio: 'pipe',
      env: { ...process.env, BACULA_SRC: install!.src },
    });

    // 3. a local directory for the plain FileSet
    data = join(work, 'data');
    mkdirSync(join(data, 'sub'), { recursive: true });
    writeFileSync(join(data, 'a.txt'), 'plain file a\n');
    writeFileSync(join(data, 'sub', 'b.bin'), Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251)));

    site = await BaculaSite.start({
      install,
      plugins: [join(shimDir, 'pgbacula-fd.so')],
      fdEnv: { PGBACULA_FAKE_LOG: fakeLog },
      parentDir: work,
      fileSets: [
        { name: 'plain', files: [data] },
        { name: 'pg', plugins: [pluginLine('pgbacula', { mode: 'dump' })] },
        {
          name: 'pg-two',
          plugins: [pluginLine('pgbacula', { mode: 'dump', database: 'alpha' }), pluginLine('pgbacula', { mode: 'dump', database: 'beta' })],
        },
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

  it('estimates the virtual file through the shim', async () => {
    const est = await site.estimate('pg-backup', 'Full');
    expect(est.files).toBe(1);
    expect(est.bytes).toBe(FAKE_DATA.length);
    expect(est.listing.join('\n')).toContain('/@pgbacula/smoke/hello.txt');
  });

  it('runs a Full plugin job that ends with status T', async () => {
    const run = await site.runJob('pg-backup', 'Full');
    expect(run.status, run.log).toBe('T');
    expect(run.errors).toBe(0);
    expect(run.log).toContain('pgbacula: fake backend: backup');
    expect(await site.listFiles(run.jobId)).toEqual(['/@pgbacula/smoke/hello.txt']);

    const pkts = received().filter((p) => p.dir === 'in');
    const texts = pkts.map((p) => p.text);
    expect(texts).toContain('Hello pgbacula 1\n');
    expect(texts).toContain(`JobID=${run.jobId}\n`);
    expect(texts).toContain('Namespace=@pgbacula\n');
    expect(texts).toContain('mode=dump\n');
    expect(texts).toContain('BackupStart\n');
  });

  it('restores the virtual file through the backend under where=', async () => {
    const backup = await site.runJob('pg-backup', 'Full');
    expect(backup.status, backup.log).toBe('T');
    const where = join(site.root, 'restore', 'pg');
    const restore = await site.restore({ jobId: backup.jobId, where });
    expect(restore.status, restore.log).toBe('T');
    expect(readFileSync(join(where, '@pgbacula/smoke/hello.txt'), 'utf8')).toBe(FAKE_DATA);
    const texts = received().map((p) => p.text);
    expect(texts).toContain(`FNAME:${where}/@pgbacula/smoke/hello.txt\n`);
    expect(texts).toContain(`Where=${where}\n`);
  });

  it('passes restore-time Plugin Options (bconsole mod) to the backend', async () => {
    const str = schema.restoreOptions.find((o) => o.type !== 'bool');
    const bool = schema.restoreOptions.find((o) => o.type === 'bool');
    expect(str && bool, 'the schema needs a string and a bool restore option').toBeTruthy();
    const backup = await site.runJob('pg-backup', 'Full');
    expect(backup.status, backup.log).toBe('T');
    const where = join(site.root, 'restore', 'pg-options');
    const before = received().length;
    const restore = await site.restore({
      jobId: backup.jobId,
      where,
      pluginOptions: { [str!.name]: '2025-03-25 10:00:00+00', [bool!.name]: true },
    });
    expect(restore.status, restore.log).toBe('T');
    expect(readFileSync(join(where, '@pgbacula/smoke/hello.txt'), 'utf8')).toBe(FAKE_DATA);
    const texts = received().slice(before).filter((p) => p.dir === 'in').map((p) => p.text);
    const params = texts.slice(texts.indexOf('Params\n'), texts.indexOf('RestoreStart\n'));
    expect(params).toContain('mode=dump\n');
    expect(params).toContain(`${str!.name}=2025-03-25 10:00:00+00\n`);
    expect(params).toContain(`${bool!.name}=1\n`);
  });

  it('handles two Plugin= lines: one backend each, file= selection, Plugin Options are per job', async () => {
    const backup = await site.runJob('pg-two-backup', 'Full');
    expect(backup.status, backup.log).toBe('T');
    expect((await site.listFiles(backup.jobId)).sort()).toEqual(['/@pgbacula/smoke/alpha/hello.txt', '/@pgbacula/smoke/beta/hello.txt']);

    // file= picks one catalog path; only that plugin's backend is started
    const whereOne = join(site.root, 'restore', 'pg-two-file');
    const one = await site.restore({ jobId: backup.jobId, where: whereOne, files: ['/@pgbacula/smoke/beta/hello.txt'] });
    expect(one.status, one.log).toBe('T');
    expect(existsSync(join(whereOne, '@pgbacula/smoke/beta/hello.txt'))).toBe(true);
    expect(existsSync(join(whereOne, '@pgbacula/smoke/alpha/hello.txt'))).toBe(false);

    // Plugin Options for one of the two plugin strings
    const bool = schema.restoreOptions.find((o) => o.type === 'bool')!;
    const where = join(site.root, 'restore', 'pg-two-options');
    const before = received().length;
    const restore = await site.restore({ jobId: backup.jobId, where, plugin: 'database=beta', pluginOptions: { [bool.name]: true } });
    expect(restore.status, restore.log).toBe('T');
    expect(readFileSync(join(where, '@pgbacula/smoke/alpha/hello.txt'), 'utf8')).toBe(FAKE_DATA);
    expect(readFileSync(join(where, '@pgbacula/smoke/beta/hello.txt'), 'utf8')).toBe(FAKE_DATA);
    const byPid = new Map<number, string[]>();
    for (const p of received().slice(before)) if (p.dir === 'in') byPid.set(p.pid, [...(byPid.get(p.pid) ?? []), p.text]);
    const paramsOf = (db: string): string[] | undefined => [...byPid.values()].find((t) => t.includes(`database=${db}\n`));
    expect(paramsOf('beta')).toContain(`${bool.name}=1\n`);
    // 15.0.3: the metaplugin keeps ONE option set per job and plugin, so options chosen for one
    // Plugin= string reach every pgbacula backend of that restore job
    expect(paramsOf('alpha')).toContain(`${bool.name}=1\n`);
  });
});
