/**
 * Crafted and damaged repositories, colliding backups, restore targets that must be refused:
 * each case asserts what the user is promised — nothing written outside a target, nothing the
 * user had lost, no success for work not done, a message that says what to do.
 */
import { runNativeWalPush } from '../harness/wal-pushers.js';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifest, serializeManifest, type BackupManifest, type ManifestFile } from '../../src/format/backup-manifest.js';
import { initRepository } from '../../src/repo/catalog.js';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { embeddedPgDir, repoRoot } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { digestAt } from '../harness/verify-cluster.js';
import { tableDigest } from '../harness/workload.js';

const MAJOR = 15;
const conn = (c: Cluster) => ['--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'];
const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };
const binDir = () => join(embeddedPgDir(MAJOR), 'bin');

function stopServer(pgdata: string): void {
  const u = serverUser();
  try {
    execFileSync(join(binDir(), 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid, stdio: 'ignore' });
  } catch {
    // not running
  }
}

async function restore(repo: string, target: string, extra: string[] = [], port?: number) {
  registerForCleanup({ pgdata: target, dir: target });
  const p = port ?? (await freePort());
  const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(p), '--pg-bin-dir', binDir(), ...extra], quiet);
  return { ...r, port: p };
}

function manifestFile(repo: string, id: string): string {
  return join(repo, 'backups', id, 'manifest.json');
}

function readManifest(repo: string, id: string): BackupManifest {
  return parseManifest(readFileSync(manifestFile(repo, id), 'utf8'));
}

/** A copy of backup `from` under a new id, with its manifest changed by `edit` and sealed again. */
function craftBackup(repo: string, from: string, id: string, edit: (m: BackupManifest) => BackupManifest): void {
  cpSync(join(repo, 'backups', from), join(repo, 'backups', id), { recursive: true });
  const m = edit({ ...readManifest(repo, from), backupId: id });
  writeFileSync(manifestFile(repo, id), serializeManifest(m));
}

function tree(dir: string): string[] {
  return existsSync(dir) ? (readdirSync(dir, { recursive: true }) as string[]).sort() : [];
}

describe(`crafted and damaged repositories (PostgreSQL ${MAJOR})`, () => {
  let c: Cluster;
  let first: string;
  const repo = () => join(testRoot(), 'trust-repo');
  beforeAll(async () => {
    c = await startCluster({ major: MAJOR, name: 'trust' });
    await c.sql('CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g');
    // One stored file per file (no bundles): the crafted cases below copy and edit single stored
    // files; the bundled layout has its own cases at the end.
    const b = await runCli(['backup', '--repo', repo(), ...conn(c), '--json', '--repo-bundle', 'off'], quiet);
    expect(b.code, b.stderr).toBe(0);
    first = JSON.parse(b.stdout).backupId as string;
  });
  afterAll(async () => {
    for (const d of readdirSync(testRoot())) if (d.startsWith('trust-target')) stopServer(join(testRoot(), d));
    await c?.destroy();
  });

  it('refuses a manifest entry that climbs out of its root (re-sealed), writes nothing outside, and verify and info call it damaged', async () => {
    // Two levels up from the target is the test root's parent: where a naive join would write.
    const target = join(testRoot(), 'trust-target-climb');
    const escapeDir = join(dirname(testRoot()), `pgbacula-escape-${process.pid}`);
    rmSync(escapeDir, { recursive: true, force: true });
    const id = '20200101-000001F';
    const climb = `pgdata/../../pgbacula-escape-${process.pid}/owned`;
    craftBackup(repo(), first, id, (m) => {
      const small = m.files.find((f) => f.type === 'file' && f.path === 'pgdata/PG_VERSION')!;
      return { ...m, files: [...m.files, { ...small, path: climb } as ManifestFile] };
    });
    // The stored bytes of the crafted entry, where a naive join would read them from.
    const stored = join(repo(), 'backups', id, 'files', climb);
    mkdirSync(dirname(stored), { recursive: true });
    writeFileSync(stored, readFileSync(join(repo(), 'backups', first, 'files', 'pgdata', 'PG_VERSION')));
    expect(stored.startsWith(repo())).toBe(true);
    try {
      const r = await restore(repo(), target, ['--backup', id]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/damaged/);
      expect(r.stderr).toContain('is not a plain relative path');
      expect(existsSync(join(escapeDir, 'owned'))).toBe(false);
      expect(tree(target)).toEqual([]);
      const v = await runCli(['verify', '--repo', repo(), '--backup', id]);
      expect(v.code).toBe(1);
      expect(v.stdout).toContain(`${id}: DAMAGED`);
      const info = await runCli(['info', '--repo', repo()]);
      expect(info.code).toBe(1);
      expect(info.stdout).toMatch(new RegExp(`${id}\\s+DAMAGED`));
    } finally {
      rmSync(join(repo(), 'backups', id), { recursive: true, force: true });
      rmSync(escapeDir, { recursive: true, force: true });
    }
  });

  it('refuses links other than tablespace links and files beneath a tablespace link', async () => {
    const cases: Array<[string, (m: BackupManifest) => BackupManifest]> = [
      ['20200101-000002F', (m) => ({ ...m, files: [...m.files, { path: 'pgdata/base/evil', type: 'symlink', size: 0, mode: 0o777, mtime: m.startTime, linkTarget: '/etc' }] })],
      ['20200101-000003F', (m) => ({ ...m, tablespaces: [{ oid: '99999', location: join(testRoot(), 'trust-ts') }], files: [...m.files, { path: 'pgdata/pg_tblspc/99999', type: 'symlink', size: 0, mode: 0o777, mtime: m.startTime, linkTarget: '/etc' }, { ...m.files.find((f) => f.path === 'pgdata/PG_VERSION')!, path: 'pgdata/pg_tblspc/99999/passwd' }] })],
      ['20200101-000004F', (m) => ({ ...m, tablespaces: [{ oid: '99998', location: '/srv/../etc' }] })],
    ];
    for (const [id, edit] of cases) {
      craftBackup(repo(), first, id, edit);
      try {
        const v = await runCli(['verify', '--repo', repo(), '--backup', id]);
        expect(v.code, id).toBe(1);
        expect(v.stdout, id).toMatch(/DAMAGED[\s\S]*(symbolic link|beneath a tablespace link|not a normalised absolute path)/);
        const target = join(testRoot(), `trust-target-${id}`);
        const r = await restore(repo(), target, ['--backup', id]);
        expect(r.code, id).not.toBe(0);
        expect(tree(target), id).toEqual([]);
      } finally {
        rmSync(join(repo(), 'backups', id), { recursive: true, force: true });
      }
    }
  });

  it('a backup with one edited size is reported damaged, kept, skipped by restore with a warning, and never removed by the next backup', async () => {
    const b = await runCli(['backup', '--repo', repo(), ...conn(c), '--json'], quiet);
    expect(b.code, b.stderr).toBe(0);
    const id = JSON.parse(b.stdout).backupId as string;
    const path = manifestFile(repo(), id);
    const text = readFileSync(path, 'utf8');
    const edited = text.replace(/("path":"pgdata\/PG_VERSION","type":"file","size":)(\d+)/, (_m, a: string, n: string) => `${a}${Number(n) + 1}`);
    expect(edited).not.toBe(text);
    writeFileSync(path, edited);
    const info = await runCli(['info', '--repo', repo()]);
    expect(info.code).toBe(1);
    expect(info.stdout).toMatch(new RegExp(`${id}\\s+DAMAGED\\s+manifest.json is damaged: manifest seal mismatch`));
    const v = await runCli(['verify', '--repo', repo()]);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain(`${id}: DAMAGED`);
    expect(v.stdout).toContain(`${first}: OK`);
    const target = join(testRoot(), 'trust-target-skip');
    const r = await restore(repo(), target);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`backup ${id} is newer than the one restored`);
    stopServer(target);
    const next = await runCli(['backup', '--repo', repo(), ...conn(c)], quiet);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).not.toContain(`removed incomplete backup ${id}`);
    expect(readFileSync(path, 'utf8')).toBe(edited);
  });

  it('a directory without manifest and without in-progress marker is kept as damaged; an interrupted backup (marker) is removed', async () => {
    const stranger = '20200101-000005F';
    mkdirSync(join(repo(), 'backups', stranger, 'files'), { recursive: true });
    writeFileSync(join(repo(), 'backups', stranger, 'files', 'note'), 'not ours to delete');
    // What a backup killed mid-way leaves: its directory with the marker of a process now gone.
    const interrupted = '20200101-000006F';
    mkdirSync(join(repo(), 'backups', interrupted, 'files', 'pgdata'), { recursive: true });
    writeFileSync(join(repo(), 'backups', interrupted, 'backup.in-progress'), JSON.stringify({ pid: 4194301, host: hostname(), started: new Date().toISOString() }));
    const next = await runCli(['backup', '--repo', repo(), ...conn(c)], quiet);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toContain(`removed incomplete backup ${interrupted}`);
    expect(existsSync(join(repo(), 'backups', interrupted))).toBe(false);
    expect(readFileSync(join(repo(), 'backups', stranger, 'files', 'note'), 'utf8')).toBe('not ours to delete');
    const info = await runCli(['info', '--repo', repo()]);
    expect(info.stdout).toMatch(new RegExp(`${stranger}\\s+DAMAGED\\s+no manifest.json and no in-progress marker`));
    rmSync(join(repo(), 'backups', stranger), { recursive: true, force: true });
  });

  it('backups that start in the same second get distinct ids; none replaces another', async () => {
    // Occupy the ids of the next seconds with sealed copies of a real backup: the new backup must
    // neither write into them nor replace them.
    const now = Date.now();
    const taken: string[] = [];
    const sealed = readFileSync(manifestFile(repo(), first), 'utf8');
    for (let s = 0; s < 20; s++) {
      const iso = new Date(now + s * 1000).toISOString();
      const id = `${iso.slice(0, 10).replace(/-/g, '')}-${iso.slice(11, 19).replace(/:/g, '')}F`;
      // The backup of the test before may have ended in this very second: its id is taken already.
      if (existsSync(join(repo(), 'backups', id))) continue;
      mkdirSync(join(repo(), 'backups', id, 'files', 'pgdata'), { recursive: true });
      writeFileSync(join(repo(), 'backups', id, 'files', 'pgdata', 'PG_VERSION'), 'sentinel');
      writeFileSync(manifestFile(repo(), id), serializeManifest({ ...parseManifest(sealed), backupId: id }));
      taken.push(id);
    }
    const before = taken.map((id) => readFileSync(manifestFile(repo(), id), 'utf8'));
    try {
      const b = await runCli(['backup', '--repo', repo(), ...conn(c), '--json'], quiet);
      expect(b.code, b.stderr).toBe(0);
      const id = JSON.parse(b.stdout).backupId as string;
      expect(taken).not.toContain(id);
      expect(id).toMatch(/^\d{8}-\d{6}F-2$/);
      expect(taken.map((t) => readFileSync(manifestFile(repo(), t), 'utf8'))).toEqual(before);
      expect(taken.map((t) => readdirSync(join(repo(), 'backups', t, 'files', 'pgdata')))).toEqual(taken.map(() => ['PG_VERSION']));
      const v = await runCli(['verify', '--repo', repo(), '--backup', id]);
      expect(v.code, v.stdout).toBe(0);
    } finally {
      for (const t of taken) rmSync(join(repo(), 'backups', t), { recursive: true, force: true });
    }
  });

  it('a new repository is created once by concurrent processes, and a stale temporary marker of a dead process does not block it', async () => {
    const fresh = join(testRoot(), 'trust-fresh-repo');
    mkdirSync(fresh);
    // What a wal-push killed by a full disk leaves behind.
    writeFileSync(join(fresh, 'pgbacula-repo.json.tmp-4194300-deadbeef'), '{"form');
    const catalog = join(repoRoot(), 'dist', 'src', 'repo', 'catalog.js');
    const runs = await Promise.all(
      Array.from({ length: 6 }, () => new Promise<number | null>((resolve) => {
        const p = spawn(process.execPath, ['--input-type=module', '-e', `const { initRepository } = await import(${JSON.stringify(catalog)}); await initRepository(process.argv[1]);`, fresh], { stdio: 'inherit' });
        p.on('close', resolve);
      })),
    );
    expect(runs).toEqual([0, 0, 0, 0, 0, 0]);
    expect(readdirSync(fresh).sort()).toEqual(['backups', 'pgbacula-repo.json']);
    expect(JSON.parse(readFileSync(join(fresh, 'pgbacula-repo.json'), 'utf8')).format).toBe(1);
    await initRepository(fresh);

    // The native archive helper creates the repository on its first push the same way.
    const nativeFresh = join(testRoot(), 'trust-fresh-repo-native');
    mkdirSync(nativeFresh);
    writeFileSync(join(nativeFresh, 'pgbacula-repo.json.tmp-4194300-deadbeef'), '{"form');
    const pushes = await Promise.all(Array.from({ length: 6 }, () => runNativeWalPush(['--repo', nativeFresh, join(nativeFresh, 'missing', '000000010000000000000001')])));
    // The file to archive does not exist (exit 1, said so); the repository was created before that.
    for (const r of pushes) expect({ code: r.code, said: /the file to archive .* does not exist/.test(r.stderr) }).toEqual({ code: 1, said: true });
    expect(readdirSync(nativeFresh).sort()).toEqual(['backups', 'pgbacula-repo.json']);
    expect(JSON.parse(readFileSync(join(nativeFresh, 'pgbacula-repo.json'), 'utf8')).format).toBe(1);
    await initRepository(nativeFresh);
  });
});

describe(`restore targets that must be refused, and restores that must not be "resumed" (PostgreSQL ${MAJOR})`, () => {
  let c: Cluster;
  const repo = () => join(testRoot(), 'trust-repo-2');
  beforeAll(async () => {
    c = await startCluster({ major: MAJOR, name: 'trust2' });
    await c.sql('CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g');
    const b = await runCli(['backup', '--repo', repo(), ...conn(c), '--repo-bundle', 'off'], quiet);
    expect(b.code, b.stderr).toBe(0);
  });
  afterAll(async () => {
    for (const d of readdirSync(testRoot())) if (d.startsWith('trust2-')) stopServer(join(testRoot(), d));
    await c?.destroy();
  });

  it('refuses the repository, a place inside it, or a directory containing it as target — even with overwrite — and the repository stays whole', async () => {
    const before = tree(repo());
    for (const [target, how] of [
      [repo(), 'is the repository'],
      [join(repo(), 'backups', 'x'), 'lies inside the repository'],
      [join(repo(), 'wal'), 'lies inside the repository'],
      [testRoot(), 'contains the repository'],
    ] as const) {
      const r = await runCli(['restore', '--repo', repo(), '--pgdata-dir', target, '--overwrite-existing=true', '--pg-bin-dir', binDir()], quiet);
      expect(r.code, target).toBe(1);
      expect(r.stderr, target).toContain(`restore target ${target} ${how}`);
    }
    const spool = join(testRoot(), 'trust2-spool');
    mkdirSync(spool);
    writeFileSync(join(spool, 'keep'), 'x');
    const r = await runCli(['restore', '--repo', repo(), '--pgdata-dir', spool, '--wal-spool', spool, '--overwrite-existing=true', '--pg-bin-dir', binDir()], quiet);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is the WAL spool');
    expect(readFileSync(join(spool, 'keep'), 'utf8')).toBe('x');
    expect(tree(repo())).toEqual(before);
    const v = await runCli(['verify', '--repo', repo()]);
    expect(v.code, v.stdout).toBe(0);
  });

  it('a finished restore is a non-empty target: not resumed with the same or other arguments; overwrite restores afresh; a backup of it carries no restore state', async () => {
    const target = join(testRoot(), 'trust2-done');
    const port = await freePort();
    const r1 = await restore(repo(), target, [], port);
    expect(r1.code, r1.stderr).toBe(0);
    for (const extra of [[], ['--target-time', new Date().toISOString()], ['--overwrite-existing=false']]) {
      const again = await restore(repo(), target, extra, port);
      expect(again.code, again.stderr).toBe(1);
      expect(again.stderr).not.toContain('resuming');
      expect(again.stderr).toMatch(/finished restore|PostgreSQL is running/);
    }
    // A backup of the restored cluster: the restore's own state stays out of it.
    const repo2 = join(testRoot(), 'trust2-repo-of-restored');
    const b = await runCli(['backup', '--repo', repo2, '--host', c.socketDir, '--port', String(port), '--user', 'postgres', '--json'], quiet);
    expect(b.code, b.stderr).toBe(0);
    const m = readManifest(repo2, JSON.parse(b.stdout).backupId as string);
    expect(m.files.some((f) => f.path === 'pgdata/PG_VERSION')).toBe(true);
    expect(m.files.some((f) => f.path.startsWith('pgdata/pgbacula_restore'))).toBe(false);
    stopServer(target);
    const again = await restore(repo(), target, [], port);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('holds a finished restore of backup');
    const over = await restore(repo(), target, ['--overwrite-existing=true'], port);
    expect(over.code, over.stderr).toBe(0);
    expect(over.stderr).not.toContain('resuming');
    expect(await digestAt({ host: c.socketDir, port }, 't')).toBe(await tableDigest(c, 't'));
    stopServer(target);
  });

  it('an interrupted restore is resumed only with the same arguments', async () => {
    const target = join(testRoot(), 'trust2-interrupted');
    const port = await freePort();
    const args = ['restore', '--repo', repo(), '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', binDir()];
    registerForCleanup({ pgdata: target, dir: target });
    // Interrupted after phase 1: the state file exists, nothing else was done.
    const { runBin } = await import('../harness/run-bin.js');
    const killed = await runBin(args, { env: quiet, killWhen: /RESTORE PHASE 1\/6/ });
    expect(killed.signal).toBe('SIGKILL');
    const other = await runCli([...args.slice(0, -4), '--restore-port', String(await freePort()), '--pg-bin-dir', binDir()], quiet);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('interrupted restore of backup');
    expect(other.stderr).toContain('with other arguments');
    const same = await runCli(args, quiet);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stderr).toContain('resuming an interrupted restore');
    expect(await digestAt({ host: c.socketDir, port }, 't')).toBe(await tableDigest(c, 't'));
    stopServer(target);
  });

  it('a restore whose server cannot start (port taken) fails in phase 4, claims nothing, and completes when run again once the port is free', async () => {
    const target = join(testRoot(), 'trust2-port');
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    let r;
    try {
      r = await restore(repo(), target, [], port);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('RESTORE PHASE 3/6');
    expect(r.stderr).not.toContain('RESTORE PHASE 4/6');
    expect(r.stderr).toMatch(/did not (start|finish recovery)/);
    const again = await restore(repo(), target, [], port);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('resuming an interrupted restore');
    expect(again.stderr).toContain('RESTORE PHASE 6/6 verify: SELECT 1 answered');
    expect(await digestAt({ host: c.socketDir, port }, 't')).toBe(await tableDigest(c, 't'));
    stopServer(target);
  });

  it('refuses a backup whose manifest names another database system than its pg_control', async () => {
    const src = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout).backups[0].id as string;
    const id = '20200101-000007F';
    craftBackup(repo(), src, id, (m) => ({ ...m, systemIdentifier: '7000000000000000001' }));
    const target = join(testRoot(), 'trust2-sysid');
    const r = await restore(repo(), target, ['--backup', id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('belongs to database system');
    expect(r.stderr).not.toContain('RESTORE PHASE 4/6');
    rmSync(join(repo(), 'backups', id), { recursive: true, force: true });
  });

  it('a stored file with a flipped byte, one missing, or a link in its place: restore fails in lay-down naming it, verify names it, the file is not followed', async () => {
    const src = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout).backups[0].id as string;
    const m = readManifest(repo(), src);
    const victim = m.files.find((f) => f.type === 'file' && f.path.startsWith('pgdata/base/') && f.size > 8192)!;
    const stored = (id: string) => join(repo(), 'backups', id, 'files', victim.stored === 'lz4' ? `${victim.path}.lz4` : victim.path);
    const damage: Array<[string, (p: string) => void, RegExp]> = [
      ['20200101-000008F', (p) => {
        const b = readFileSync(p);
        b[b.length >> 1]! ^= 0x40;
        writeFileSync(p, b);
      }, /content hash|LZ4|frame|checksum/i],
      ['20200101-000009F', (p) => rmSync(p), /missing or unreadable/],
      ['20200101-000010F', (p) => {
        rmSync(p);
        symlinkSync('/etc/passwd', p);
      }, /missing or unreadable: ELOOP/],
    ];
    for (const [id, hurt, why] of damage) {
      craftBackup(repo(), src, id, (x) => x);
      hurt(stored(id));
      try {
        const v = await runCli(['verify', '--repo', repo(), '--backup', id]);
        expect(v.code, id).toBe(1);
        expect(v.stdout, id).toContain(victim.path);
        expect(v.stdout, id).toMatch(why);
        const target = join(testRoot(), `trust2-hurt-${id}`);
        const r = await restore(repo(), target, ['--backup', id]);
        expect(r.code, id).toBe(1);
        expect(r.stderr, id).toContain(`backup ${id} is damaged`);
        expect(r.stderr, id).toContain(victim.path);
        expect(r.stderr, id).not.toContain('RESTORE PHASE 2/6');
      } finally {
        rmSync(join(repo(), 'backups', id), { recursive: true, force: true });
      }
    }
  });

  it('a target whose parent directories do not exist yet: they are made so the server can start', async () => {
    const target = join(testRoot(), 'trust2-new', 'a', 'b', 'pg');
    const port = await freePort();
    const r = await restore(repo(), target, [], port);
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(join(testRoot(), 'trust2-new', 'a')).mode & 0o777).toBe(0o755);
    expect(await digestAt({ host: c.socketDir, port }, 't')).toBe(await tableDigest(c, 't'));
    stopServer(target);
  });

  it('a tablespace location that exists and belongs to another user is refused and left as it was; tablespace files live only in a PG_ directory', async () => {
    const src = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout).backups[0].id as string;
    const m0 = readManifest(repo(), src);
    const version = m0.files.find((f) => f.path === 'pgdata/PG_VERSION')!;
    const rootDir = join(testRoot(), 'trust2-rootowned');
    mkdirSync(rootDir, { mode: 0o755 });
    const id = '20200101-000011F';
    const vdir = `PG_${MAJOR}_202209061`;
    craftBackup(repo(), src, id, (m) => ({
      ...m,
      tablespaces: [{ oid: '99997', location: rootDir }],
      files: [
        ...m.files,
        { path: 'pgdata/pg_tblspc/99997', type: 'symlink', size: 0, mode: 0o777, mtime: m.startTime, linkTarget: rootDir },
        { path: 'tablespaces/99997', type: 'dir', size: 0, mode: 0o700, mtime: m.startTime },
        { path: `tablespaces/99997/${vdir}`, type: 'dir', size: 0, mode: 0o700, mtime: m.startTime },
        { ...version, path: `tablespaces/99997/${vdir}/f` },
      ],
    }));
    mkdirSync(join(repo(), 'backups', id, 'files', 'tablespaces', '99997', vdir), { recursive: true });
    cpSync(join(repo(), 'backups', id, 'files', 'pgdata', 'PG_VERSION'), join(repo(), 'backups', id, 'files', 'tablespaces', '99997', vdir, 'f'));
    try {
      const r = await restore(repo(), join(testRoot(), 'trust2-ts'), ['--backup', id]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`location ${rootDir} exists and belongs to uid 0`);
      expect(statSync(rootDir).uid).toBe(0);
      expect(readdirSync(rootDir)).toEqual([]);
      const over = await restore(repo(), join(testRoot(), 'trust2-ts'), ['--backup', id, '--overwrite-existing=true']);
      expect(over.code).toBe(1);
      expect(statSync(rootDir).uid).toBe(0);
    } finally {
      rmSync(join(repo(), 'backups', id), { recursive: true, force: true });
    }
    const id2 = '20200101-000012F';
    craftBackup(repo(), src, id2, (m) => ({
      ...m,
      tablespaces: [{ oid: '99997', location: rootDir }],
      files: [...m.files, { path: 'pgdata/pg_tblspc/99997', type: 'symlink', size: 0, mode: 0o777, mtime: m.startTime, linkTarget: rootDir }, { ...version, path: 'tablespaces/99997/passwd' }],
    }));
    try {
      const v = await runCli(['verify', '--repo', repo(), '--backup', id2]);
      expect(v.code).toBe(1);
      expect(v.stdout).toContain('is not inside a PG_<major>_<catalog> directory');
    } finally {
      rmSync(join(repo(), 'backups', id2), { recursive: true, force: true });
    }
  });

  it('a directory of the repository replaced by a link out of it: verify and restore name it, and nothing read through it stays in the target', async () => {
    const src = JSON.parse((await runCli(['info', '--repo', repo(), '--json'])).stdout).backups[0].id as string;
    const id = '20200101-000013F';
    craftBackup(repo(), src, id, (m) => m);
    const elsewhere = join(testRoot(), 'trust2-elsewhere');
    cpSync(join(repo(), 'backups', id, 'files', 'pgdata', 'global'), elsewhere, { recursive: true });
    rmSync(join(repo(), 'backups', id, 'files', 'pgdata', 'global'), { recursive: true });
    symlinkSync(elsewhere, join(repo(), 'backups', id, 'files', 'pgdata', 'global'));
    try {
      const v = await runCli(['verify', '--repo', repo(), '--backup', id]);
      expect(v.code).toBe(1);
      expect(v.stdout).toContain('stored beneath a symbolic link that leads out of the repository');
      const target = join(testRoot(), 'trust2-linked');
      const r = await restore(repo(), target, ['--backup', id]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('leads out of the repository');
      expect(existsSync(join(target, 'global', 'pg_control'))).toBe(false);
    } finally {
      rmSync(join(repo(), 'backups', id), { recursive: true, force: true });
    }
  });

  it('bundles: a bundle directory replaced by a link out of the repository, and a bundle reference past the end of its bundle (re-sealed), are refused by verify and restore', async () => {
    const bundledRepo = join(testRoot(), 'trust2-bundled-repo');
    const b = await runCli(['backup', '--repo', bundledRepo, ...conn(c), '--json'], quiet);
    expect(b.code, b.stderr).toBe(0);
    const src = JSON.parse(b.stdout).backupId as string;
    const m = readManifest(bundledRepo, src);
    expect(m.version).toBe(3);
    const control = m.files.find((f) => f.path === 'pgdata/global/pg_control')!;
    expect(control.bundle).toBeDefined();
    expect(existsSync(join(bundledRepo, 'backups', src, 'files', 'pgdata', 'global', 'pg_control'))).toBe(false);

    const linked = '20200101-000021F';
    craftBackup(bundledRepo, src, linked, (x) => x);
    const elsewhere = join(testRoot(), 'trust2-bundles-elsewhere');
    cpSync(join(bundledRepo, 'backups', linked, 'bundles'), elsewhere, { recursive: true });
    rmSync(join(bundledRepo, 'backups', linked, 'bundles'), { recursive: true });
    symlinkSync(elsewhere, join(bundledRepo, 'backups', linked, 'bundles'));
    try {
      const v = await runCli(['verify', '--repo', bundledRepo, '--backup', linked]);
      expect(v.code).toBe(1);
      expect(v.stdout).toContain('pgdata/global/pg_control: stored beneath a symbolic link that leads out of the repository');
      const target = join(testRoot(), 'trust2-bundles-linked');
      const r = await restore(bundledRepo, target, ['--backup', linked]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('leads out of the repository');
      expect(existsSync(join(target, 'global', 'pg_control'))).toBe(false);
    } finally {
      rmSync(join(bundledRepo, 'backups', linked), { recursive: true, force: true });
    }

    const past = '20200101-000022F';
    const bundleSize = statSync(join(bundledRepo, 'backups', src, 'bundles', String(control.bundle!.id))).size;
    craftBackup(bundledRepo, src, past, (x) => ({
      ...x,
      files: x.files.map((f) => (f.path === control.path ? { ...f, bundle: { ...f.bundle!, offset: bundleSize - 10 } } : f)),
    }));
    try {
      const v = await runCli(['verify', '--repo', bundledRepo, '--backup', past]);
      expect(v.code).toBe(1);
      expect(v.stdout).toContain(`${past}: DAMAGED`);
      expect(v.stdout).toMatch(/pgdata\/global\/pg_control: (holds \d+ bytes|lz4 frame|content hash)/);
      const target = join(testRoot(), 'trust2-bundles-past');
      const r = await restore(bundledRepo, target, ['--backup', past]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('is damaged');
      expect(existsSync(join(target, 'postmaster.pid'))).toBe(false);
    } finally {
      rmSync(join(bundledRepo, 'backups', past), { recursive: true, force: true });
    }
  });

  it('refuses a target that is a symbolic link, and overwrite of a directory that is not a data directory', async () => {
    const real = join(testRoot(), 'trust2-real');
    mkdirSync(real);
    const link = join(testRoot(), 'trust2-link');
    symlinkSync(real, link);
    const r = await restore(repo(), link);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`restore target ${link} is a symbolic link`);
    expect(readdirSync(real)).toEqual([]);
    const parent = join(testRoot(), 'trust2-parent');
    mkdirSync(join(parent, '15', 'main'), { recursive: true });
    writeFileSync(join(parent, 'notes.txt'), 'keep');
    const o = await restore(repo(), parent, ['--overwrite-existing=true']);
    expect(o.code).toBe(1);
    expect(o.stderr).toContain('is not a PostgreSQL data directory');
    expect(readFileSync(join(parent, 'notes.txt'), 'utf8')).toBe('keep');
  });

  it('wal-fetch that cannot even start (an unknown flag) stops recovery (exit 200) instead of meaning "not archived"', async () => {
    const r = await runCli(['wal-fetch', '--repo', repo(), '--wal-spol', '/x', '000000010000000000000001', '/tmp/x']);
    expect(r.code).toBe(200);
  });
});
