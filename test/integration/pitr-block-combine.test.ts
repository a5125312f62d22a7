/**
 * PostgreSQL's own pg_combinebackup on a chain of pgbacula block-level backups
 * (docs/block-incremental.md, "PostgreSQL's pg_combinebackup"): a full backup and two
 * incrementals, combined from the repository's plain files into a data directory that starts
 * with the newest backup's WAL and equals the source as it was at the end of that backup — as
 * does pgbacula's own restore of the same chain. A chain with a backup left out is refused.
 *
 * Run on PostgreSQL 17 and 18, each with its own major's pg_combinebackup (scripts/setup.sh
 * provides both): 18's reads a backup's global/pg_control in 18's layout only ("CRC is
 * incorrect" on a 17 backup).
 */
import { execFile } from 'node:child_process';
import { appendFileSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, freePort, startCluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { clientBinOf, embeddedPgDir, type ClientMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { amcheckEverything, fingerprint, type Fingerprint } from '../harness/block-workload.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir } from './wal-helpers.js';

const execFileAsync = promisify(execFile);
const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };

/** pg_combinebackup, by default with --no-manifest: pgbacula stores no PostgreSQL backup_manifest. */
async function combine(tool: string, inputs: readonly string[], out: string, options: readonly string[] = ['--no-manifest']): Promise<{ code: number; output: string }> {
  try {
    const r = await execFileAsync(tool, [...inputs, '-o', out, ...options], { env: { PATH: '/usr/bin:/bin', LANG: 'C' } });
    return { code: 0, output: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, output: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  for (const e of readdirSync(path, { withFileTypes: true })) {
    if (e.isDirectory()) chownTree(join(path, e.name), uid, gid);
    else chownSync(join(path, e.name), uid, gid);
  }
}

/**
 * The scenario for one major, with that major's pg_combinebackup. The tool is looked up by the
 * tests that run it, so a missing one fails those tests with the reason (not the whole file).
 */
function combineScenario(major: ClientMajor): void {
  describe(`pg_combinebackup on pgbacula block-level backups of PostgreSQL ${major}`, () => {
    const tool = () => clientBinOf(major, 'pg_combinebackup');
    let c: Cluster;
    let repo: string;
    const ids: Record<'F' | 'I1' | 'I2', string> = { F: '', I1: '', I2: '' };
    let atI2: Fingerprint;
    const servers: Cluster[] = [];
    const restored: string[] = [];
    const conn = () => ['--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'];
    const pgdataOf = (id: string) => join(repo, 'backups', id, 'files', 'pgdata');
    const manifestOf = (id: string) => JSON.parse(readFileSync(join(repo, 'backups', id, 'manifest.json'), 'utf8')) as { level: string; startLsn: string; startTimeline: number; reference?: { backupId: string } };

    const backup = async (type: 'full' | 'incr'): Promise<string> => {
      const r = await runCli(['backup', '--repo', repo, '--mode', 'pitr_block', '--type', type, ...conn()], quiet);
      expect(r.code, r.stderr).toBe(0);
      const id = /backup (\S+) complete/.exec(r.stdout)?.[1];
      expect(id, r.stdout).toBeDefined();
      expect(manifestOf(id!).level).toBe(type === 'full' ? 'full' : 'incremental');
      return id!;
    };
    const changes = async (n: number) => {
      await c.sql(`UPDATE items SET v = md5(v || '${n}') WHERE id % 97 = ${n}`);
      await c.sql(`INSERT INTO items SELECT g, md5(g::text), repeat('x', 120) FROM generate_series(${20_000 + n * 3000 + 1}, ${20_000 + n * 3000 + 3000}) g`);
      await c.sql(`DELETE FROM log WHERE id > ${4000 - n * 1000}`);
      await c.sql('VACUUM log');
      await c.sql(`DROP TABLE gone_${n - 1}`);
      await c.sql(`CREATE TABLE gone_${n} AS SELECT g AS id FROM generate_series(1, ${1000 * n}) g`);
      await c.sql(`CREATE DATABASE db_${n}`);
      await c.sql(`CREATE TABLE t AS SELECT g AS id, md5((g + ${n})::text) AS v FROM generate_series(1, 2000) g`, [], `db_${n}`);
    };

    beforeAll(async () => {
      repo = ownedDir(`combine-repo-${major}`);
      c = await startCluster({ major: major, name: `comb${major}`, summarizeWal: true, settings: { archive_mode: 'on', archive_command: archiveCommandLine({ repo }) } });
      await c.sql(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, pad text NOT NULL)`);
      await c.sql(`INSERT INTO items SELECT g, md5(g::text), repeat('p', 120) FROM generate_series(1, 20000) g`);
      await c.sql('CREATE INDEX items_v ON items (v)');
      await c.sql(`CREATE TABLE log (id int, v text)`);
      await c.sql(`INSERT INTO log SELECT g, repeat('l', 200) FROM generate_series(1, 5000) g`);
      await c.sql(`CREATE TABLE gone_0 AS SELECT g AS id FROM generate_series(1, 500) g`);
      await c.sql('CHECKPOINT');
    });
    afterAll(async () => {
      for (const s of servers) await s.stop('immediate').catch(() => undefined);
      const u = serverUser();
      for (const t of restored) {
        await execFileAsync(join(embeddedPgDir(major), 'bin', 'pg_ctl'), ['-D', t, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid }).catch(() => undefined);
      }
      await c?.destroy();
    });

    it('keeps in each data directory of a chain the backup_label pg_combinebackup checks it with', async () => {
      ids.F = await backup('full');
      await changes(1);
      ids.I1 = await backup('incr');
      await changes(2);
      ids.I2 = await backup('incr');
      // Nothing is written between the end of I2 and this: it is what I2 restores to.
      atI2 = await fingerprint({ host: c.socketDir, port: c.port });

      const top = (id: string) => readFileSync(join(repo, 'backups', id, 'files', 'backup_label'), 'utf8');
      const inside = (id: string) => readFileSync(join(pgdataOf(id), 'backup_label'), 'utf8');
      expect(inside(ids.F)).toBe(top(ids.F));
      for (const [id, ref] of [[ids.I1, ids.F], [ids.I2, ids.I1]] as const) {
        expect(manifestOf(id).reference?.backupId).toBe(ref);
        const r = manifestOf(ref);
        expect(inside(id)).toBe(`${top(id)}INCREMENTAL FROM LSN: ${r.startLsn}\nINCREMENTAL FROM TLI: ${r.startTimeline}\n`);
        // The label a restore lays down stays the server's own.
        expect(top(id)).not.toContain('INCREMENTAL');
        expect(top(id)).toContain(`START WAL LOCATION: ${manifestOf(id).startLsn} `);
      }
      // The incrementals hold INCREMENTAL.<name> files, so pg_combinebackup has something to rebuild.
      const incrementalFiles = readdirSync(join(pgdataOf(ids.I2), 'base'), { recursive: true }).filter((n) => String(n).includes('INCREMENTAL.'));
      expect(incrementalFiles.length).toBeGreaterThan(10);
    });

    it('combines the full backup and both incrementals into a data directory equal to the source at the end of the second', async () => {
      const dir = ownedDir(`combined-${major}`);
      const out = join(dir, 'pgdata');
      const r = await combine(tool(), [ids.F, ids.I1, ids.I2].map(pgdataOf), out);
      expect(r.code, r.output).toBe(0);
      expect(readFileSync(join(out, 'backup_label'), 'utf8')).toBe(readFileSync(join(repo, 'backups', ids.I2, 'files', 'backup_label'), 'utf8'));
      expect(readdirSync(out, { recursive: true }).filter((n) => String(n).includes('INCREMENTAL.'))).toEqual([]);
      // Recovery from backup_label to consistency needs only the newest backup's WAL.
      const wal = join(repo, 'backups', ids.I2, 'files', 'wal');
      for (const name of readdirSync(wal)) copyFileSync(join(wal, name), join(out, 'pg_wal', name));
      const sock = join(dir, 'sock');
      mkdirSync(sock);
      const port = await freePort();
      // The copied configuration archives to the repository: the combined server must not.
      appendFileSync(join(out, 'postgresql.conf'), `\n# combined\nport = ${port}\nunix_socket_directories = '${sock}'\narchive_mode = off\n`);
      const u = serverUser();
      chownTree(dir, u.uid, u.gid);
      const s = new Cluster(major, dir, out, sock, port);
      registerForCleanup(s);
      servers.push(s);
      await s.start();
      expect(existsSync(join(out, 'backup_label.old'))).toBe(true);
      expect(await fingerprint({ host: sock, port })).toEqual(atI2);
      expect(await amcheckEverything({ host: sock, port })).toBeGreaterThan(1);
    });

    it('refuses a chain with the middle backup left out, by the labels', async () => {
      const out = join(ownedDir(`combined-gap-${major}`), 'pgdata');
      const r = await combine(tool(), [ids.F, ids.I2].map(pgdataOf), out);
      expect(r.code).not.toBe(0);
      // I2's label says it counts from I1's start; the backup before it in the list started elsewhere.
      expect(r.output).toContain(`backup at "${pgdataOf(ids.F)}" starts at LSN ${manifestOf(ids.F).startLsn}, but expected ${manifestOf(ids.I1).startLsn}`);
      // Without --no-manifest it wants the newest backup's PostgreSQL manifest.
      const manifest = await combine(tool(), [ids.F, ids.I1, ids.I2].map(pgdataOf), join(ownedDir(`combined-manifest-${major}`), 'pgdata'), []);
      expect(manifest.code).not.toBe(0);
      expect(manifest.output).toContain('cannot generate a manifest because no manifest is available for the final input backup');
      // And an incremental first.
      const first = await combine(tool(), [ids.I1, ids.I2].map(pgdataOf), join(ownedDir(`combined-first-${major}`), 'pgdata'));
      expect(first.code).not.toBe(0);
      expect(first.output).toContain(`backup at "${pgdataOf(ids.I1)}" is an incremental backup, but the first backup should be a full backup`);
    });

    it("pgbacula's own restore of the chain, stopped at consistency, equals the same state", async () => {
      const target = join(testRoot(), `combine-restore-${major}`);
      restored.push(target);
      registerForCleanup({ pgdata: target, dir: target });
      const port = await freePort();
      const r = await runCli(['restore', '--repo', repo, '--backup', ids.I2, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(major), 'bin'), '--skip-wal-replay=true'], quiet);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/rebuilt block by block from a chain of 3 backups/);
      expect(readFileSync(join(target, 'backup_label.old'), 'utf8')).not.toContain('INCREMENTAL');
      expect(await fingerprint({ host: c.socketDir, port })).toEqual(atI2);
    });
  });
}

combineScenario(17);
combineScenario(18);
