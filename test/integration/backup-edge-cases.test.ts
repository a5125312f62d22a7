import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, renameSync, statSync, writeFileSync, writeSync, closeSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, startStandby, type Cluster, stopServerIn } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { embeddedPgDir, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runBin, runCliProcess as runCli } from '../harness/run-bin.js';
import { amcheckAllIndexes, createStaticTables, digestAt, queryAt } from '../harness/verify-cluster.js';
import { commitRows, tableDigest } from '../harness/workload.js';
import { parseManifest } from '../../src/format/backup-manifest.js';
import { storedLocation } from '../../src/repo/layout.js';

const conn = (c: Cluster) => ['--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'];
const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };

async function restoreTo(major: TestMajor, repo: string, target: string, extra: string[] = []) {
  registerForCleanup({ pgdata: target, dir: target });
  const port = await freePort();
  const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(major), 'bin'), ...extra], quiet);
  return { ...r, port };
}

describe.each([11, 17] as const)('backup from a standby of PostgreSQL %i', (major) => {
  let primary: Cluster;
  let standby: Cluster;
  const target = () => join(testRoot(), `from-standby-${major}`);
  beforeAll(async () => {
    primary = await startCluster({ major, name: `sbp${major}` });
    await createStaticTables(primary, 5000);
    standby = await startStandby(primary);
  });
  afterAll(async () => {
    stopServerIn(major, target());
    await standby?.destroy();
    await primary?.destroy();
  });

  it('restores the same way as a primary backup', async () => {
    const rows = await commitRows(primary, 20);
    // The standby must have replayed what we compare against.
    for (let i = 0; i < 100; i++) {
      const [r] = await standby.sql<{ n: string }>('SELECT count(*)::text AS n FROM workload_rows').catch(() => [{ n: '0' }]);
      if (Number(r!.n) >= rows.length) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const [replayed] = await standby.sql<{ n: string }>('SELECT count(*)::text AS n FROM workload_rows');
    expect(Number(replayed!.n)).toBe(rows.length);
    const digests = { a: await tableDigest(primary, 'static_a'), w: await tableDigest(primary, 'workload_rows') };
    const repo = join(testRoot(), `repo-standby-${major}`);
    const b = await runCli(['backup', '--repo', repo, ...conn(standby), '--backup-from-standby'], quiet);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toContain(', standby)');
    const refused = await runCli(['backup', '--repo', repo, ...conn(primary), '--backup-from-standby'], quiet);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('backup_from_standby=true but the server is a primary');

    const r = await restoreTo(major, repo, target());
    expect(r.code, r.stderr).toBe(0);
    const at = { host: standby.socketDir, port: r.port };
    expect(await digestAt(at, 'static_a')).toBe(digests.a);
    expect(await digestAt(at, 'workload_rows')).toBe(digests.w);
    expect(await amcheckAllIndexes(at)).toBeGreaterThan(2);
  });
});

describe('a cluster with a tablespace (PostgreSQL 16)', () => {
  let c: Cluster;
  const target = join(testRoot(), 'ts-restored');
  beforeAll(async () => {
    c = await startCluster({ major: 16, name: 'tsp' });
  });
  afterAll(async () => {
    stopServerIn(16, target);
    await c?.destroy();
  });

  it('restores its tablespace to the remapped place', async () => {
    const u = serverUser();
    const loc = join(c.dir, 'ts-original');
    mkdirSync(loc);
    chownSync(loc, u.uid, u.gid);
    await c.sql(`CREATE TABLESPACE space1 LOCATION '${loc}'`);
    await c.sql("CREATE TABLE in_space TABLESPACE space1 AS SELECT g, md5(g::text) FROM generate_series(1, 30000) g");
    await c.sql('CREATE INDEX ON in_space (md5) TABLESPACE space1');
    const [{ oid }] = (await c.sql<{ oid: string }>("SELECT oid::text FROM pg_tablespace WHERE spcname = 'space1'")) as [{ oid: string }];
    const digest = await tableDigest(c, 'in_space');
    const repo = join(testRoot(), 'repo-ts');
    const b = await runCli(['backup', '--repo', repo, ...conn(c)], quiet);
    expect(b.code, b.stderr).toBe(0);

    // The original location is in use by the running source: refused unless remapped.
    const refused = await restoreTo(16, repo, join(testRoot(), 'ts-refused'));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`remap_tablespace=${oid}=`);

    const newLoc = join(testRoot(), 'ts-new');
    const r = await restoreTo(16, repo, target, ['--remap-tablespace', `${oid}=${newLoc}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(readlinkSync(join(target, 'pg_tblspc', oid))).toBe(newLoc);
    const at = { host: c.socketDir, port: r.port };
    expect(await digestAt(at, 'in_space')).toBe(digest);
    const [loc2] = await queryAt<{ l: string }>(at, `SELECT pg_tablespace_location(${oid}) AS l`);
    expect(loc2!.l).toBe(newLoc);
    expect(await amcheckAllIndexes(at)).toBeGreaterThan(1);
  });
});

describe('a cluster without data checksums, restored crash-consistent only (PostgreSQL 13)', () => {
  let c: Cluster;
  const target = join(testRoot(), 'nosum-restored');
  beforeAll(async () => {
    c = await startCluster({ major: 13, name: 'nosum', checksums: false });
  });
  afterAll(async () => {
    stopServerIn(13, target);
    await c?.destroy();
  });

  it('verify --pgdata says the cluster has no checksums to verify, instead of reporting every page as corrupt', async () => {
    const v = await runCli(['verify', '--pgdata', c.pgdata, '--pg-bin-dir', join(embeddedPgDir(13), 'bin')]);
    expect(v.code).not.toBe(0);
    expect(v.code).not.toBe(4);
    expect(v.stderr).toContain('has data checksums disabled');
    expect(v.stdout + v.stderr).not.toMatch(/checksum failure:/);
  });

  it('is backed up with verification reported unavailable, not passed; skip_wal_replay stops at consistency', async () => {
    await createStaticTables(c, 3000);
    const repo = join(testRoot(), 'repo-nosum');
    const b = await runCli(['backup', '--repo', repo, ...conn(c), '--json'], quiet);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout).manifest.pageVerification).toBe('unavailable');
    expect(b.stderr).toContain('page checksums: unavailable (the cluster has data checksums off)');
    expect(b.stderr).not.toContain('page checksums verified');
    const r = await restoreTo(13, repo, target, ['--skip-wal-replay']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('stop as soon as consistent (recovery_target = immediate)');
    expect(r.stderr).toMatch(/RESTORE PHASE 4\/6 start: .*recovery stopping after reaching consistency/);
    expect(r.stderr).toContain('page checksums unavailable (cluster without checksums)');
    expect(await digestAt({ host: c.socketDir, port: r.port }, 'static_a')).toBe(await tableDigest(c, 'static_a'));
  });
});

describe('page checksum failures and damaged backups (PostgreSQL 15)', () => {
  let c: Cluster;
  const repo = () => join(testRoot(), 'repo-damage');
  beforeAll(async () => {
    c = await startCluster({ major: 15, name: 'damage' });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('a good backup: a flipped byte and a removed file in the repository are found by verify --repo', async () => {
    await createStaticTables(c, 20000);
    const b = await runCli(['backup', '--repo', repo(), ...conn(c), '--compression-level', '1', '--json'], quiet);
    expect(b.code, b.stderr).toBe(0);
    const id = JSON.parse(b.stdout).backupId as string;
    expect((await runCli(['verify', '--repo', repo()])).code).toBe(0);
    const [{ path }] = (await c.sql<{ path: string }>("SELECT pg_relation_filepath('static_a') AS path")) as [{ path: string }];
    const stored = join(repo(), 'backups', id, 'files', 'pgdata', `${path}.lz4`);
    const size = statSync(stored).size;
    const fd = openSync(stored, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, Math.floor(size / 2));
    writeSync(fd, Buffer.from([byte[0]! ^ 0x10]), 0, 1, Math.floor(size / 2));
    closeSync(fd);
    const flipped = await runCli(['verify', '--repo', repo()]);
    expect(flipped.code).toBe(1);
    expect(flipped.stdout).toContain('DAMAGED');
    expect(flipped.stdout).toContain(`pgdata/${path}`);

    // Small files are stored together in bundles: a byte flipped inside one file's region is
    // named as that file's damage; a bundle gone takes each of its files with it.
    const manifest = parseManifest(readFileSync(join(repo(), 'backups', id, 'manifest.json'), 'utf8'));
    const control = manifest.files.find((f) => f.path === 'pgdata/global/pg_control')!;
    expect(control.bundle).toBeDefined();
    const at = storedLocation(repo(), id, control);
    const bundled = openSync(at.storedPath, 'r+');
    const mid = at.region!.offset + Math.floor(at.region!.length / 2);
    readSync(bundled, byte, 0, 1, mid);
    writeSync(bundled, Buffer.from([byte[0]! ^ 0x10]), 0, 1, mid);
    const inBundle = await runCli(['verify', '--repo', repo()]);
    expect(inBundle.code).toBe(1);
    expect(inBundle.stdout).toMatch(/pgdata\/global\/pg_control: (content hash|lz4 frame)/);
    writeSync(bundled, byte, 0, 1, mid);
    closeSync(bundled);

    const vm = at.storedPath;
    const sharing = manifest.files.filter((f) => f.bundle?.id === control.bundle!.id).length;
    expect(sharing).toBeGreaterThan(100);
    renameSync(vm, `${vm}.away`);
    const removed = await runCli(['verify', '--repo', repo()]);
    expect(removed.code).toBe(1);
    expect(removed.stdout).toMatch(/pgdata\/global\/pg_control: stored file is missing/);
    expect(removed.stdout.split('\n').filter((l) => l.includes('stored file is missing')).length).toBe(sharing);
    renameSync(`${vm}.away`, vm);

    // A restore of the damaged backup is refused before the server is ever started.
    const target = join(testRoot(), 'damaged-restore');
    const r = await restoreTo(15, repo(), target);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is damaged');
    expect(existsSync(join(target, 'postmaster.pid'))).toBe(false);
  });

  it('a bit flipped in a table file is named by backup and verify --pgdata, with exit status 4', async () => {
    await c.sql("CREATE TABLE victim AS SELECT g, repeat('v', 200) AS pad FROM generate_series(1, 5000) g");
    await c.sql('CHECKPOINT');
    const [{ path }] = (await c.sql<{ path: string }>("SELECT pg_relation_filepath('victim') AS path")) as [{ path: string }];
    const file = join(c.pgdata, path);
    const fd = openSync(file, 'r+');
    const at = 3 * 8192 + 4000;
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    writeSync(fd, Buffer.from([b[0]! ^ 0x01]), 0, 1, at);
    closeSync(fd);

    const backup = await runCli(['backup', '--repo', join(testRoot(), 'repo-flip'), ...conn(c)], quiet);
    expect(backup.code).toBe(4);
    expect(backup.stderr).toContain(`checksum verification failed in ${path} (main fork), block 3`);
    expect(backup.stderr).toMatch(/page checksums verified: [\d,]+ pages, 1 failures/);
    const info = await runCli(['info', '--repo', join(testRoot(), 'repo-flip'), '--json']);
    expect(JSON.parse(info.stdout).backups[0]).toMatchObject({ state: 'complete', pageVerification: 'failed', checksumFailures: 1 });

    const v = await runCli(['verify', '--pgdata', c.pgdata]);
    expect(v.code).toBe(4);
    expect(v.stdout).toContain(`checksum failure: ${path} (main fork) block 3`);
    // the worker pipeline (no native addon) finds the same page, with the same words
    const viaWorkers = await runCli(['verify', '--pgdata', c.pgdata], { PGBACULA_KERNELS: 'fallback' });
    expect(viaWorkers.code).toBe(4);
    expect(viaWorkers.stdout.split('\n').filter((l) => l.includes('checksum failure'))).toEqual(v.stdout.split('\n').filter((l) => l.includes('checksum failure')));
    // pg_checksums agrees (offline).
    await c.stop();
    let pgChecksums = '';
    try {
      execFileSync('/usr/lib/postgresql/15/bin/pg_checksums', ['--check', '-D', c.pgdata], { encoding: 'utf8' });
    } catch (e) {
      pgChecksums = String((e as { stdout: string; stderr: string }).stderr) + String((e as { stdout: string }).stdout);
    }
    expect(pgChecksums).toContain('block 3');
    const offline = await runCli(['verify', '--pgdata', c.pgdata]);
    expect(offline.code).toBe(4);
    // Repair the page so the cluster can be used on: write it back flipped again.
    const fd2 = openSync(file, 'r+');
    readSync(fd2, b, 0, 1, at);
    writeSync(fd2, Buffer.from([b[0]! ^ 0x01]), 0, 1, at);
    closeSync(fd2);
    await c.start();
    expect((await runCli(['verify', '--pgdata', c.pgdata])).code).toBe(0);
  });
});

describe('no false positive under heavy concurrent writes (pgbench, PostgreSQL 15)', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ major: 15, name: 'torn', settings: { shared_buffers: '16MB', checkpoint_timeout: '30s' } });
    execFileSync('/usr/lib/postgresql/15/bin/pgbench', ['-i', '-s', '10', '-q', '-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', 'postgres'], { stdio: 'ignore' });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('three backups and three online verifications during pgbench report no checksum failure', async () => {
    const bench = spawn('/usr/lib/postgresql/15/bin/pgbench', ['-c', '4', '-j', '2', '-T', '40', '-N', '-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', 'postgres'], { stdio: 'ignore' });
    const done = new Promise((res) => bench.on('close', res));
    try {
      await new Promise((res) => setTimeout(res, 1000));
      for (let i = 0; i < 3; i++) {
        const b = await runCli(['backup', '--repo', join(testRoot(), 'repo-torn'), ...conn(c), '--json'], quiet);
        expect(b.code, b.stderr).toBe(0);
        expect(JSON.parse(b.stdout).manifest.checksumFailures).toBe(0);
        // native threads and the worker pipeline in turn
        const v = await runCli(['verify', '--pgdata', c.pgdata, '--json'], i === 1 ? { PGBACULA_KERNELS: 'fallback' } : {});
        expect(v.code, v.stdout).toBe(0);
        expect(JSON.parse(v.stdout).pagesChecked).toBeGreaterThan(1000);
      }
    } finally {
      bench.kill('SIGTERM');
      await done;
    }
  });
});

describe('safety gates and interrupted runs (PostgreSQL 14)', () => {
  let c: Cluster;
  const repo = () => join(testRoot(), 'repo-victim');
  beforeAll(async () => {
    c = await startCluster({ major: 14, name: 'victim' });
    // Enough data that lay-down and backup last long enough to be killed midway.
    await c.sql("CREATE TABLE big AS SELECT g, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 1500000) g");
    await c.sql('CHECKPOINT');
  });
  afterAll(async () => {
    stopServerIn(14, join(testRoot(), 'victim-restore'));
    await c?.destroy();
  });

  it('refuses a non-empty target without overwrite_existing and changes nothing there', async () => {
    const b = await runCli(['backup', '--repo', repo(), ...conn(c)], quiet);
    expect(b.code, b.stderr).toBe(0);
    const target = join(testRoot(), 'occupied');
    mkdirSync(target);
    writeFileSync(join(target, 'precious.txt'), 'keep me');
    const r = await restoreTo(14, repo(), target);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`restore target ${target} is not empty (precious.txt)`);
    expect(r.stderr).toContain('overwrite_existing=true');
    expect(readdirSync(target)).toEqual(['precious.txt']);
    expect(readFileSync(join(target, 'precious.txt'), 'utf8')).toBe('keep me');
  });

  it('a backup killed midway never shows as complete and is cleaned by the next run', async () => {
    const killed = await runBin(['backup', '--repo', repo(), ...conn(c)], { env: { PGBACULA_PROGRESS_SECONDS: '0.05' }, killWhen: /progress: backup/ });
    expect(killed.signal).toBe('SIGKILL');
    const info = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout) as { backups: { id: string; state: string }[] };
    const incomplete = info.backups.filter((b) => b.state === 'incomplete');
    expect(incomplete.length).toBe(1);
    // The killed session ended the server's backup and its temporary slot.
    for (let i = 0; i < 50; i++) {
      const [s] = await c.sql<{ n: string }>('SELECT count(*)::text AS n FROM pg_replication_slots');
      if (s!.n === '0') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect((await c.sql<{ n: string }>('SELECT count(*)::text AS n FROM pg_replication_slots'))[0]!.n).toBe('0');
    const next = await runCli(['backup', '--repo', repo(), ...conn(c)], quiet);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toContain(`removed incomplete backup ${incomplete[0]!.id}`);
    const after = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout) as { backups: { state: string }[] };
    expect(after.backups.every((b) => b.state === 'complete')).toBe(true);
  });

  it('a restore killed midway and re-run completes', async () => {
    const target = join(testRoot(), 'victim-restore');
    registerForCleanup({ pgdata: target, dir: target });
    const port = await freePort();
    const args = ['restore', '--repo', repo(), '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(14), 'bin')];
    const killed = await runBin(args, { env: { PGBACULA_PROGRESS_SECONDS: '0.02' }, killWhen: /progress: restore/ });
    expect(killed.signal).toBe('SIGKILL');
    expect(killed.stderr).toContain('RESTORE PHASE 1/6');
    expect(killed.stderr).not.toContain('RESTORE PHASE 2/6');
    const again = await runBin(args, { env: quiet });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('resuming an interrupted restore');
    expect(again.stderr).toContain('RESTORE PHASE 6/6 verify: SELECT 1 answered');
    const at = { host: c.socketDir, port };
    expect(await digestAt(at, 'big')).toBe(await tableDigest(c, 'big'));
    expect(await amcheckAllIndexes(at)).toBeGreaterThan(0);
    unlinkSync(join(target, 'pgbacula_restore', 'audit.log'));
  });
});
