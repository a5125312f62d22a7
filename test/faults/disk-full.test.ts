/**
 * Disk full, on a small tmpfs each time: the repository, the WAL archive (wal-push), tmpdir and
 * a restore target. Each failure must name the path and ENOSPC, leave nothing that looks
 * complete, touch nothing outside its target, and the same command must work once space is
 * freed (the tmpfs is remounted larger). tmpdir owned by another user is refused with the
 * directory and the fix.
 */
import { NATIVE_WAL_PUSH } from '../harness/wal-pushers.js';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { embeddedPgDir, repoRoot } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';

const MAJOR = 17;
const mounted = new Set<string>();

function mountTmpfs(dir: string, size: string, owner?: { uid: number; gid: number }): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  mounted.add(dir);
  if (owner) chownSync(dir, owner.uid, owner.gid);
}

/** "Free space": the same file system, grown. */
function grow(dir: string, size: string): void {
  execFileSync('mount', ['-o', `remount,size=${size}`, dir]);
}

function unmountAll(): void {
  for (const d of mounted) {
    try {
      execFileSync('umount', ['-l', d]);
    } catch {
      // already gone
    }
  }
  mounted.clear();
}

/** Every file under dir, relative, with its size: what a fault must not change. */
function tree(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p, `${rel}${e.name}/`);
      else out[`${rel}${e.name}`] = statSync(p).size;
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out;
}

function stopServer(pgdata: string): void {
  const u = serverUser();
  try {
    execFileSync(join(embeddedPgDir(MAJOR), 'bin', 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid, stdio: 'ignore' });
  } catch {
    // not running
  }
}

describe(`disk full on PostgreSQL ${MAJOR}`, () => {
  let source: Cluster;
  let base: string;
  const conn = () => ['--host', source.socketDir, '--port', String(source.port), '--user', 'postgres'];

  beforeAll(async () => {
    source = await startCluster({ major: MAJOR, name: `full${MAJOR}` });
    base = join(testRoot(), `disk-full-${process.pid}`);
    mkdirSync(base, { recursive: true });
  });
  afterAll(async () => {
    stopServer(join(base, 'restored'));
    unmountAll();
    await source?.destroy();
    rmSync(base, { recursive: true, force: true });
  });

  it('repository: the backup fails naming the path and ENOSPC, nothing is shown complete, and after freeing space the next backup works', async () => {
    const repo = join(base, 'repo');
    mountTmpfs(repo, '6m');
    const tmpdir = join(base, 'tmp-repo');
    const r = await runCli(['backup', '--repo', repo, '--tmpdir', tmpdir, ...conn()], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('ENOSPC');
    expect(r.stderr).toMatch(new RegExp(`${repo}/\\S+`));
    expect(r.stderr).toContain('free space');
    const info = await runCli(['info', '--repo', repo, '--json']);
    expect(info.stdout).not.toMatch(/"state":\s*"complete"/);

    grow(repo, '512m');
    const again = await runCli(['backup', '--repo', repo, '--tmpdir', tmpdir, ...conn()], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(again.code, again.stderr).toBe(0);
    const after = await runCli(['info', '--repo', repo, '--json']);
    expect(after.stdout).toMatch(/"state":\s*"complete"/);
    const v = await runCli(['verify', '--repo', repo]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });

  it('tmpdir: the backup fails naming the staging path and ENOSPC, and works once there is room', async () => {
    const repo = join(base, 'repo-tmpdir');
    const tmpdir = join(base, 'tmp-small');
    mountTmpfs(tmpdir, '4k');
    const r = await runCli(['backup', '--repo', repo, '--tmpdir', tmpdir, ...conn()], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('ENOSPC');
    expect(r.stderr).toContain(tmpdir);
    const info = await runCli(['info', '--repo', repo, '--json']);
    expect(info.stdout).not.toMatch(/"state":\s*"complete"/);
    grow(tmpdir, '256m');
    const again = await runCli(['backup', '--repo', repo, '--tmpdir', tmpdir, ...conn()], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(again.code, again.stderr).toBe(0);
    // The run's own staging is gone; nothing of it is left in tmpdir.
    expect(readdirSync(tmpdir)).toEqual([]);
  });

  it('tmpdir made 0700 by root: a run as postgres names the directory and the fix, not a bare EACCES', async () => {
    const tmpdir = join(base, 'root-only');
    mkdirSync(tmpdir, { mode: 0o700 });
    chmodSync(tmpdir, 0o700);
    const repo = join(base, 'repo-pg');
    mkdirSync(repo);
    const u = serverUser();
    chownSync(repo, u.uid, u.gid);
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), 'backup', '--repo', repo, '--tmpdir', tmpdir, ...conn()], {
        uid: u.uid, gid: u.gid, cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', PGBACULA_PROGRESS_SECONDS: '0' }, stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`staging directory (tmpdir) ${tmpdir}`);
    expect(r.stderr).toContain('chown');
    expect(r.stderr).toContain('--tmpdir');
  });

  it.each([
    { name: 'pgbacula wal-push', file: process.execPath, prefix: [join(repoRoot(), 'bin', 'pgbacula.js'), 'wal-push'], dir: 'archive' },
    { name: 'pgbacula-wal-push (native)', file: NATIVE_WAL_PUSH, prefix: [], dir: 'archive-native' },
  ])('WAL archive: $name fails with the path and ENOSPC, stores nothing half, and the retry after freeing space stores the segment', async (program) => {
    const repo = join(base, program.dir);
    const u = serverUser();
    mountTmpfs(repo, '4m', u);
    // A real segment of the server, copied where the postgres user can read it.
    await source.sql('CREATE TABLE IF NOT EXISTS filler AS SELECT g FROM generate_series(1, 10000) g');
    await source.sql('INSERT INTO filler SELECT g FROM generate_series(1, 10000) g'); // new WAL on every run: the switch below has a segment to end
    const [seg] = await source.sql<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
    const src = join(base, seg!.name);
    copyFileSync(join(source.pgdata, 'pg_wal', seg!.name), src);
    chownSync(src, u.uid, u.gid);
    const push = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = spawn(program.file, [...program.prefix, ...args], { uid: u.uid, gid: u.gid, cwd: source.pgdata, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' }, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stderr }));
      });
    const r = await push(['--repo', repo, src]);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr).toContain('ENOSPC');
    expect(r.stderr).toContain(repo);
    // Nothing under a final segment name, and no temporary file left to block the next try.
    const files = Object.keys(tree(repo));
    expect(files.filter((f) => f.endsWith(seg!.name))).toEqual([]);
    expect(files.filter((f) => /tmp|partial/i.test(f))).toEqual([]);

    grow(repo, '64m');
    const again = await push(['--repo', repo, src]);
    expect(again.code, again.stderr).toBe(0);
    const stored = Object.keys(tree(repo)).filter((f) => f.endsWith(seg!.name));
    expect(stored).toHaveLength(1);
    expect(readFileSync(join(repo, stored[0]!)).equals(readFileSync(src))).toBe(true);
  });

  it('restore target: lay-down fails naming the path and ENOSPC, nothing outside the target is touched, and a rerun after freeing space works', async () => {
    // A tablespace remapped onto a small file system: the pre-check sizes PGDATA only, so the
    // lay-down itself meets the full disk.
    const u = serverUser();
    const tsDir = join(base, 'ts-source');
    mkdirSync(tsDir);
    chownSync(tsDir, u.uid, u.gid);
    await source.sql(`CREATE TABLESPACE full_ts LOCATION '${tsDir}'`);
    await source.sql("CREATE TABLE big TABLESPACE full_ts AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 40000) g");
    const [ts] = await source.sql<{ oid: string }>("SELECT oid::text AS oid FROM pg_tablespace WHERE spcname = 'full_ts'");
    const repo = join(base, 'repo-restore');
    const b = await runCli(['backup', '--repo', repo, '--tmpdir', join(base, 'tmp-r'), ...conn()], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(b.code, b.stderr).toBe(0);

    const outside = join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'keep.txt'), 'the user had this');
    const tsTarget = join(outside, 'ts-small');
    mountTmpfs(tsTarget, '1m');
    // An existing tablespace location must belong to the cluster's owner (it is never chowned).
    chownSync(tsTarget, u.uid, u.gid);
    const target = join(base, 'restored');
    registerForCleanup({ pgdata: target, dir: target });
    const before = tree(outside);
    const repoBefore = tree(repo);
    const port = await freePort();
    const args = ['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(MAJOR), 'bin'), `--remap-tablespace=${ts!.oid}=${tsTarget}`];
    const r = await runCli(args, { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('ENOSPC');
    expect(r.stderr).toMatch(new RegExp(`cannot write ${tsTarget}/\\S+`));
    expect(r.stderr).not.toContain('is damaged');
    expect(r.stderr).not.toContain('RESTORE PHASE 2/6');
    // Outside the targets: as before; the repository: as before.
    const after = tree(outside);
    for (const [k, v] of Object.entries(before)) expect(after[k], k).toBe(v);
    expect(Object.keys(after).filter((k) => !k.startsWith('ts-small/') && !(k in before))).toEqual([]);
    expect(tree(repo)).toEqual(repoBefore);

    grow(tsTarget, '128m');
    const again = await runCli(args, { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('RESTORE PHASE 6/6');
    stopServer(target);
    expect(readFileSync(join(outside, 'keep.txt'), 'utf8')).toBe('the user had this');
  });
});
