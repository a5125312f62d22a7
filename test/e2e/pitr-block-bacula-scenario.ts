/**
 * Mode pitr_block (docs/block-incremental.md) through real Bacula 15.0.3 daemons driven by
 * bconsole, against a real PostgreSQL whose archive_command is `pgbacula wal-push` into the
 * spool. Before 17 the changed blocks come from the summaries wal-push writes next to each segment
 * in the spool (and, for the segment a backup starts in, from the server's pg_wal); 17 and 18 run
 * with summarize_wal = on, and their jobs read the server's own summaries.
 *
 *  - Full, then Incremental, Incremental, Differential, each after a round of every kind of change
 *    (test/harness/block-workload.ts): the later jobs store INCREMENTAL.<name> files against the
 *    base backup of the job Bacula names by Since=, and say so in the job log
 *  - a restore of Full + Incrementals + Differential (end of WAL) and one of Full + Incrementals at
 *    a point between the two Incrementals reproduce the source as it was then
 *  - with `mechanisms` (the per-mechanism cases, the same code on every major): the estimate of an
 *    Incremental; a restore without the first Incremental is refused before anything is laid
 *    down, naming the missing backup; the kept manifest copy of the reference gone from the spool
 *    breaks the chain, and the next Incremental stores a full base backup and says why
 *
 * Needs scripts/setup.sh (Bacula build); a missing part fails the suite with its reason.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { seededRandom } from '../harness/seeded-random.js';
import type { TestMajor } from '../harness/pg-binaries.js';
import { amcheckEverything, fingerprint, setUpBlockWorkload, type BlockWorkload, type Fingerprint } from '../harness/block-workload.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, until } from '../integration/wal-helpers.js';
import { findBaculaInstall, type BaculaSite, type JobResult } from './bacula-site.js';
import { startPitrSite, stopRestoredServer } from './pitr-fixture.js';
import { buildShimWithRealBackend } from './real-backend.js';

const ID = '\\d{8}-\\d{6}';

interface Point {
  readonly lsn: string;
  readonly fp: Fingerprint;
  /** OIDs of the tablespaces then (a restore next to the source lays them elsewhere). */
  readonly tablespaces: string[];
}

export function pitrBlockBaculaScenario(MAJOR: TestMajor, o: { readonly mechanisms: boolean }): void {
  describe(`mode pitr_block of PostgreSQL ${MAJOR} through real Bacula daemons`, () => {
    const install = findBaculaInstall();
    let work: string;
    let site: BaculaSite;
    let c: Cluster;
    let spool: string;
    let sysid: string;
    let wl: BlockWorkload;
    const jobs: Record<string, JobResult> = {};
    const files: Record<string, string[]> = {};
    const points = new Map<string, Point>();
    const restored: string[] = [];

    const mark = async (name: string): Promise<void> => {
      const [row] = await c.sql<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
      const ts = await c.sql<{ oid: string }>("SELECT oid::text AS oid FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1");
      points.set(name, { lsn: row!.l, fp: await fingerprint({ host: c.socketDir, port: c.port }), tablespaces: ts.map((t) => t.oid) });
    };
    /** The backup id a job stored, from its catalog file list. */
    const backupIdOf = (name: string): string => {
      const m = files[name]!.map((f) => new RegExp(`/pitr/(${ID}[FID])/manifest\\.json$`).exec(f)).find(Boolean);
      expect(m, files[name]!.slice(0, 20).join('\n')).toBeTruthy();
      return m![1]!;
    };
    const switchAndWait = async (): Promise<void> => {
      const [{ f }] = (await c.sql<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')) as [{ f: string }];
      await c.sql('SELECT pg_switch_wal()');
      await until(`segment ${f} and its summary in the spool`, () => existsSync(join(spool, sysid, '00000001', `${f}.summary`)));
    };
    const expectSummaries = (name: string): { archived: number; now: number } => {
      const m = /: (\d+) summarized when archived, (\d+) summarized now\)/.exec(jobs[name]!.log);
      expect(m, jobs[name]!.log).toBeTruthy();
      return { archived: Number(m![1]), now: Number(m![2]) };
    };
    /** The bytes of the base backup a job stored, from its log. */
    const storedBase = (j: JobResult): number => {
      const m = /pgbacula: base backup \S+ complete: [\d,]+ files, ([\d.]+) (B|KiB|MiB|GiB)/.exec(j.log);
      expect(m, j.log).toBeTruthy();
      return Number(m![1]) * { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m![2] as 'B'];
    };
    const run = async (name: string, level: 'Full' | 'Incremental' | 'Differential'): Promise<JobResult> => {
      const j = await site.runJob('pitr', level);
      expect(j.status, j.log).toBe('T');
      jobs[name] = j;
      files[name] = await site.listFiles(j.jobId);
      return j;
    };
    const restore = async (name: string, jobIds: number[], point: string, options: Record<string, string>) => {
      const target = join(testRoot(), `pitr-block-bacula-${MAJOR}-${name}`);
      registerForCleanup({ pgdata: target, dir: target });
      restored.push(target);
      const port = await freePort();
      const remap = points.get(point)!.tablespaces.map((oid) => `${oid}=${join(`${target}-ts`, oid)}`).join(',');
      const res = await site.restore({
        jobId: jobIds,
        where: '',
        pluginOptions: { pgdata_dir: target, restore_port: port, ...(remap ? { remap_tablespace: remap } : {}), ...options },
        timeoutMs: 600_000,
      });
      return { res, at: { host: c.socketDir, port } };
    };

    beforeAll(async () => {
      if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
      work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), `pitr-block-bacula-`));
      const shim = buildShimWithRealBackend(work, install);
      spool = ownedDir(`pitr-block-bacula-spool-${MAJOR}`);
      c = await startCluster({ major: MAJOR, name: `pitr-block-bacula-${MAJOR}`, ...(MAJOR >= 17 ? { summarizeWal: true } : {}), settings: { archive_mode: 'on', archive_command: archiveCommandLine({ spool }) } });
      sysid = (await c.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
      wl = await setUpBlockWorkload(c, seededRandom(MAJOR * 7919));
      site = await startPitrSite({ install, shimSo: shim.so, work, major: MAJOR, spool, params: { mode: 'pitr_block', host: c.socketDir, port: c.port, parallel_jobs: 2 } });
    }, 240_000);

    afterAll(async () => {
      for (const t of restored) stopRestoredServer(MAJOR, t);
      await site?.stop();
      await c?.destroy();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it('Full, then Incrementals and a Differential that store only the blocks changed since the job Bacula names', async () => {
      const full = await run('F', 'Full');
      expect(full.log).toMatch(new RegExp(`pgbacula: base backup ${ID}F complete: `));
      expect(full.log).toMatch(/pgbacula: WAL shipped from the spool: /);
      const fullId = backupIdOf('F');
      expect(files.F!.some((f) => f.endsWith(`/pitr/${fullId}/pgdata/global/pg_control`))).toBe(true);
      expect(files.F!.some((f) => f.includes('/INCREMENTAL.'))).toBe(false);
      expect(existsSync(join(spool, '.bacula-chain', `${sysid}.manifests`, `${fullId}.json`))).toBe(true);

      await wl.round(1);
      if (o.mechanisms) {
        // An Incremental's estimate names what it would store: incremental files, no whole relation files.
        const est = await site.estimate('pitr', 'Incremental');
        const listed = est.listing.join('\n');
        expect(listed, est.raw).toMatch(new RegExp(`/@pgbacula/${sysid}/pitr/${ID}I/pgdata/base/\\d+/INCREMENTAL\\.\\d+`));
        expect(listed).toMatch(new RegExp(`/@pgbacula/${sysid}/pitr/${ID}I/pgdata/global/pg_control`));
      }

      const expectBlockJob = (name: string, level: 'incremental' | 'differential', reference: string): string => {
        const j = jobs[name]!;
        expect(j.log).toMatch(new RegExp(`pgbacula: ${level} backup against ${reference} \\(`));
        if (MAJOR >= 17) {
          expect(j.log).toMatch(/pgbacula: changed blocks found from server summaries \(\d+ summary file\(s\) of the server for [0-9A-F]+\/[0-9A-F]+\.\.[0-9A-F]+\/[0-9A-F]+\): [\d,]+ blocks changed/);
        } else {
          const found = /pgbacula: changed blocks found from pgbacula summaries \((\d+) WAL segment\(s\) for [0-9A-F]+\/[0-9A-F]+\.\.[0-9A-F]+\/[0-9A-F]+: (\d+) summarized when archived, (\d+) summarized now\): [\d,]+ blocks changed/.exec(j.log);
          expect(found, j.log).toBeTruthy();
          expect(Number(found![2]) + Number(found![3])).toBe(Number(found![1]));
        }
        expect(j.log).toMatch(/pgbacula: relation files: [1-9][\d,]* incremental \([\d,]+ blocks, [\d.]+ \w+ read\), [\d,]+ unchanged, [\d,]+ whole; [\d.]+ \w+ of relation files not read/);
        expect(j.log).not.toMatch(/full backup instead|backup chain broken/);
        const id = backupIdOf(name);
        expect(id.endsWith(level === 'incremental' ? 'I' : 'D')).toBe(true);
        const incremental = files[name]!.filter((f) => /\/INCREMENTAL\.\d+(\.\d+)?$/.test(f));
        expect(incremental.length, files[name]!.slice(0, 40).join('\n')).toBeGreaterThan(5);
        for (const f of incremental) expect(f.startsWith(`/@pgbacula/${sysid}/pitr/${id}/pgdata/`)).toBe(true);
        // Less of the base backup is stored than by the Full (the WAL of a round of changes is not).
        expect(storedBase(j)).toBeLessThan(storedBase(full));
        return id;
      };

      await run('I1', 'Incremental');
      const i1 = expectBlockJob('I1', 'incremental', fullId);
      await wl.round(2);
      // A point between the two Incrementals: round 2's changes, not round 3's.
      await mark('mid');
      await wl.round(3);
      // The segments of round 3 reach the spool (and their summaries written by wal-push) before I2
      // starts: I2 counts them from those summaries. (The backup start switches the segment in use,
      // so without this the last segments are still on their way and the job summarizes them itself.)
      await switchAndWait();
      await run('I2', 'Incremental');
      if (MAJOR < 17) expect(expectSummaries('I2').archived).toBeGreaterThan(0);
      expectBlockJob('I2', 'incremental', i1);
      await wl.round(4);
      // Writes stop here: the Differential's restore to the end of its WAL must equal this.
      await mark('end');
      await run('D', 'Differential');
      expectBlockJob('D', 'differential', fullId);
      const manifests = readdirSync(join(spool, '.bacula-chain', `${sysid}.manifests`)).sort();
      expect(manifests).toEqual(['F', 'I1', 'I2', 'D'].map((n) => `${backupIdOf(n)}.json`).sort());
    }, 900_000);

    it('a restore of Full + Incrementals + Differential rebuilds the cluster as it was at the last job', async () => {
      expect(jobs.D, 'the backup test ran').toBeDefined();
      const { res, at } = await restore('end', [jobs.F!.jobId, jobs.I1!.jobId, jobs.I2!.jobId, jobs.D!.jobId], 'end', {});
      expect(res.status, res.log).toBe('T');
      expect(res.log).toMatch(new RegExp(`pgbacula: base backup ${backupIdOf('D')} chosen`));
      expect(res.log).toMatch(/RESTORE PHASE 2\/6 lay-down: .* rebuilt block by block from a chain of 2 backups/);
      expect(res.log).toMatch(/pgbacula: restore complete: .*PostgreSQL is promoted on port \d+/);
      expect(await fingerprint(at)).toEqual(points.get('end')!.fp);
      expect(await amcheckEverything(at)).toBeGreaterThan(3);
    }, 900_000);

    it('a restore of Full + Incrementals to a point between them rebuilds the cluster as it was then', async () => {
      expect(jobs.I2, 'the backup test ran').toBeDefined();
      const { res, at } = await restore('mid', [jobs.F!.jobId, jobs.I1!.jobId, jobs.I2!.jobId], 'mid', { target_lsn: points.get('mid')!.lsn });
      expect(res.status, res.log).toBe('T');
      expect(res.log).toMatch(new RegExp(`pgbacula: base backup ${backupIdOf('I1')} chosen`));
      expect(res.log).toMatch(/RESTORE PHASE 2\/6 lay-down: .* rebuilt block by block from a chain of 2 backups/);
      expect(await fingerprint(at)).toEqual(points.get('mid')!.fp);
    }, 900_000);

    if (o.mechanisms) {
      it('a restore without a link of the chain is refused before anything is laid down, naming the missing backup', async () => {
        expect(jobs.I2, 'the backup test ran').toBeDefined();
        const target = join(work, 'no-link');
        const res = await site.restore({ jobId: [jobs.F!.jobId, jobs.I2!.jobId], where: '', pluginOptions: { pgdata_dir: target } });
        // refused while answering FINISH, once every file is in: a fatal error (test/e2e/NOTES-bacula-15.0.3.md)
        expect(res.status, res.log).toBe('f');
        expect(res.log).toContain(`backup ${backupIdOf('I2')} cannot be restored: backup ${backupIdOf('I2')} was taken against ${backupIdOf('I1')}, which is not a complete backup here`);
        expect(res.log).toContain('select the Full job and every later job up to the one restored');
        expect(res.log).toContain(`${target} is as it was before the restore (absent)`);
        expect(existsSync(target)).toBe(false);
        expect(existsSync(`${target}.pgbacula-restore-${res.jobId}`)).toBe(false);
      });
    }

    if (o.mechanisms) {
      it('the reference manifest copy gone from the spool breaks the chain: the next Incremental stores a full base backup and says why', async () => {
        expect(jobs.D, 'the backup test ran').toBeDefined();
        const ref = backupIdOf('D');
        rmSync(join(spool, '.bacula-chain', `${sysid}.manifests`, `${ref}.json`));
        await wl.round(5);
        const broken = await run('broken', 'Incremental');
        expect(broken.log).toContain(`pgbacula: backup chain broken: the base backup ${ref} of JobId ${jobs.D!.jobId} cannot be counted from: the copy of its manifest`);
        expect(broken.log).toContain('This Incremental job stores a full base backup instead');
        expect(backupIdOf('broken').endsWith('F')).toBe(true);
        expect(files.broken!.some((f) => f.includes('/INCREMENTAL.'))).toBe(false);
      }, 600_000);
    }
  });
}
