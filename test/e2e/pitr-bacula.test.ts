/**
 * Issue 5, acceptance 3 and the chain rules of acceptance 4, through real Bacula 15.0.3 daemons
 * driven by bconsole: mode pitr of the real backend against a real PostgreSQL 16 whose
 * archive_command is `pgbacula wal-push` into a local spool.
 *
 *  - Full = base backup + WAL; Incremental = WAL since the previous job; Differential = WAL since
 *    the last Full; each while a workload commits rows a second apart
 *  - a restore of the Full, the Differential and the last Incremental with the plugin option
 *    target_time recovers exactly the rows committed up to that second into a new pgdata_dir
 *    (and the static tables' digests, amcheck clean)
 *  - a segment missing from the spool breaks the chain: the next Incremental stores a base
 *    backup and says why; once Bacula has confirmed it, the spool is pruned below its start
 *
 * Needs scripts/setup.sh (Bacula build); a missing part fails the suite with its reason.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import type { TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { amcheckAllIndexes, createStaticTables, digestAt, queryAt } from '../harness/verify-cluster.js';
import { commitRows, type CommittedRow } from '../harness/workload.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, until } from '../integration/wal-helpers.js';
import { findBaculaInstall, type BaculaSite, type JobResult } from './bacula-site.js';
import { startPitrSite, stopRestoredServer } from './pitr-fixture.js';
import { buildShimWithRealBackend } from './real-backend.js';

/** The oldest (recovery.conf, pg_start_backup) and the newest supported major. */
const MAJORS = (process.env.PITR_BACULA_MAJORS ? process.env.PITR_BACULA_MAJORS.split(",").map(Number) : [10, 18]) as readonly TestMajor[];

function between(a: CommittedRow, b: CommittedRow): string {
  return new Date((a.commitTime.getTime() + b.commitTime.getTime()) / 2).toISOString();
}

function spoolSegments(spool: string, sysid: string): string[] {
  const dir = join(spool, sysid, '00000001');
  return existsSync(dir) ? readdirSync(dir).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort() : [];
}

describe.each(MAJORS)('mode pitr of PostgreSQL %i through real Bacula daemons (issue 5, acceptance 3 and 4)', (MAJOR) => {
  const install = findBaculaInstall();
  let work: string;
  let site: BaculaSite;
  let c: Cluster;
  let spool: string;
  let sysid: string;
  const jobs: Record<string, JobResult> = {};
  const rows: CommittedRow[] = [];
  const restored: string[] = [];

  /** Commit rows a second apart, then close the segment so the spool has them. */
  const commit = async (n: number): Promise<CommittedRow[]> => {
    const r = await commitRows(c, n, 1100);
    rows.push(...r);
    return r;
  };
  const ids = async (at: { host: string; port: number }) =>
    (await queryAt<{ id: string }>(at, 'SELECT id::text AS id FROM workload_rows ORDER BY workload_rows.id')).map((r) => Number(r.id));

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), `pitr-bacula-${MAJOR}-`));
    const shim = buildShimWithRealBackend(work, install);
    spool = ownedDir(`pitr-bacula-spool-${MAJOR}`);
    c = await startCluster({ major: MAJOR, name: `pitr-bacula-${MAJOR}`, settings: { archive_mode: 'on', archive_command: archiveCommandLine({ spool }) } });
    sysid = (await c.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
    await createStaticTables(c, 2000);
    await commit(2);
    site = await startPitrSite({ install, shimSo: shim.so, work, major: MAJOR, spool, params: { host: c.socketDir, port: c.port, parallel_jobs: 2 } });
  }, 240_000);

  afterAll(async () => {
    for (const t of restored) stopRestoredServer(MAJOR, t);
    await site?.stop();
    await c?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('estimate lists the base backup paths of a Full (nothing is backed up)', async () => {
    const e = await site.estimate('pitr', 'Full');
    const text = e.listing.join('\n');
    expect(text, e.raw).toMatch(new RegExp(`/@pgbacula/${sysid}/pitr/\\d{8}-\\d{6}F/pgdata/PG_VERSION`));
    expect(text, e.raw).toMatch(new RegExp(`/@pgbacula/${sysid}/pitr/\\d{8}-\\d{6}F/pgdata/global/pg_control`));
    expect(text).not.toContain('postmaster.pid');
    expect(e.bytes).toBeGreaterThan(10_000_000);
    expect(existsSync(join(spool, '.bacula-chain'))).toBe(false);
  });

  it('Full stores the base backup and the spool WAL; Incremental and Differential store the WAL since their reference', async () => {
    const full = await site.runJob('pitr', 'Full');
    jobs.full = full;
    expect(full.status, full.log).toBe('T');
    expect(full.log).toMatch(new RegExp(`pgbacula: starting pitr backup \\(PG ${MAJOR}\\.\\d+ on `));
    expect(full.log).toContain(`pgbacula: backup start label='bacula_${full.jobId}' lsn=`);
    expect(full.log).toMatch(/pgbacula: PGDATA walk: [\d,]+ files, [\d.]+ MiB/);
    expect(full.log).toMatch(/pgbacula: page checksums verified: [\d,]+ pages, 0 failures/);
    expect(full.log).toMatch(/pgbacula: backup stop lsn=[0-9A-F]+\/[0-9A-F]+/);
    expect(full.log).toMatch(/pgbacula: WAL shipped from the spool: 00000001[0-9A-F]{16}\.\.00000001[0-9A-F]{16} \(\d+ segments?\)/);
    const fullFiles = await site.listFiles(full.jobId);
    const manifest = fullFiles.find((f) => /\/pitr\/\d{8}-\d{6}F\/manifest\.json$/.test(f));
    expect(manifest, fullFiles.slice(0, 20).join('\n')).toBeDefined();
    expect(manifest!.startsWith(`/@pgbacula/${sysid}/pitr/`)).toBe(true);
    expect(fullFiles.some((f) => f.endsWith('/pgdata/global/pg_control'))).toBe(true);
    expect(fullFiles.some((f) => f.startsWith(`/@pgbacula/${sysid}/wal/00000001/`))).toBe(true);

    await commit(3);
    // an Incremental's estimate lists the WAL it would ship (a closed segment here)
    const [{ f: closed }] = (await c.sql<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')) as [{ f: string }];
    await c.sql('SELECT pg_switch_wal()');
    await until(`segment ${closed} in the spool`, () => spoolSegments(spool, sysid).includes(closed));
    const est = await site.estimate('pitr', 'Incremental');
    expect(est.listing.join('\n'), est.raw).toContain(`/@pgbacula/${sysid}/wal/00000001/${closed}`);
    expect(est.listing.join('\n')).not.toContain('/pitr/');
    const incr = await site.runJob('pitr', 'Incremental');
    jobs.incr1 = incr;
    expect(incr.status, incr.log).toBe('T');
    expect(incr.log).toMatch(new RegExp(`pgbacula: Incremental: WAL since JobId ${full.jobId} \\(base backup \\d{8}-\\d{6}F, through 00000001[0-9A-F]{16}\\); chain checked`));
    expect(incr.log).toMatch(/pgbacula: WAL shipped: 00000001[0-9A-F]{16}\.\.00000001[0-9A-F]{16} \(\d+ segments?\)/);
    const incrFiles = await site.listFiles(incr.jobId);
    expect(incrFiles.length).toBeGreaterThan(0);
    expect(incrFiles.every((f) => f.startsWith(`/@pgbacula/${sysid}/wal/00000001/`)), incrFiles.join('\n')).toBe(true);
    // nothing shipped twice: the Incremental starts after what the Full shipped
    expect(incrFiles.filter((f) => fullFiles.includes(f))).toEqual([]);

    await commit(3);
    const diff = await site.runJob('pitr', 'Differential');
    jobs.diff = diff;
    expect(diff.status, diff.log).toBe('T');
    expect(diff.log).toMatch(new RegExp(`pgbacula: Differential: WAL since JobId ${full.jobId} `));
    const diffFiles = await site.listFiles(diff.jobId);
    // a Differential holds everything since the Full: the Incremental's WAL too
    for (const f of incrFiles) expect(diffFiles).toContain(f);

    await commit(3);
    const incr2 = await site.runJob('pitr', 'Incremental');
    jobs.incr2 = incr2;
    expect(incr2.status, incr2.log).toBe('T');
    // each job found its switched segment in the spool at once (no 60 s wait, no warning)
    for (const j of [full, incr, diff, incr2]) expect(j.log).not.toMatch(/has not reached the spool|waiting for WAL segment/);
    expect(incr2.log).toMatch(new RegExp(`pgbacula: Incremental: WAL since JobId ${diff.jobId} \\(WAL, through`));
  }, 400_000);

  it('a restore of Full + Differential + Incremental with target_time recovers exactly the rows of that second into a new pgdata_dir', async () => {
    expect(jobs.incr2, 'the backup test ran').toBeDefined();
    // rows: 2 before the Full, 3 before the Incremental, 3 before the Differential, 3 before the last Incremental
    const k = 9; // rows[0..9] committed up to the target, rows[10] after it
    const target = join(testRoot(), `pitr-bacula-${MAJOR}-restored`);
    registerForCleanup({ pgdata: target, dir: target });
    restored.push(target);
    const port = await freePort();
    const res = await site.restore({
      jobId: [jobs.full!.jobId, jobs.diff!.jobId, jobs.incr2!.jobId],
      where: '',
      pluginOptions: { target_time: between(rows[k]!, rows[k + 1]!), pgdata_dir: target, restore_port: port },
      timeoutMs: 600_000,
    });
    expect(res.status, res.log).toBe('T');
    expect(res.log).toMatch(/pgbacula: received [\d,]+ files \([\d.]+ MiB\): base backup \d{8}-\d{6}F; WAL 00000001[0-9A-F]{16}\.\.00000001[0-9A-F]{16} \(\d+ segments\)/);
    expect(res.log).toMatch(/pgbacula: RESTORE PHASE 1\/6 pre-check: /);
    expect(res.log).toMatch(/pgbacula: RESTORE PHASE 4\/6 start: .*recovery stopping before commit of transaction/);
    expect(res.log).toMatch(/pgbacula: restore complete: .*PostgreSQL is promoted on port \d+/);
    const at = { host: c.socketDir, port };
    const got = await ids(at);
    expect(got).toEqual(rows.slice(0, k + 1).map((r) => r.id));
    expect(await digestAt(at, 'static_a')).toBe(await digestAt({ host: c.socketDir, port: c.port }, 'static_a'));
    expect(await amcheckAllIndexes(at)).toBeGreaterThan(2);
    // the staging repository is gone after a promoted restore
    expect(existsSync(`${target}.pgbacula-restore-${res.jobId}`)).toBe(false);
  });

  it('target_xid with recovery_target_action=pause stops read-only after that transaction; the staged WAL stays for the paused server', async () => {
    expect(jobs.incr2, 'the backup test ran').toBeDefined();
    const k = 6;
    const target = join(testRoot(), `pitr-bacula-${MAJOR}-paused`);
    registerForCleanup({ pgdata: target, dir: target });
    restored.push(target);
    const port = await freePort();
    const res = await site.restore({
      jobId: [jobs.full!.jobId, jobs.incr1!.jobId, jobs.diff!.jobId, jobs.incr2!.jobId],
      where: '',
      pluginOptions: { target_xid: rows[k]!.xid, recovery_target_action: 'pause', pgdata_dir: target, restore_port: port },
      timeoutMs: 600_000,
    });
    expect(res.status, res.log).toBe('T');
    expect(res.log).toContain(`recovery stopping after commit of transaction ${rows[k]!.xid}`);
    expect(res.log).toMatch(/PostgreSQL is paused on port \d+/);
    const staging = `${target}.pgbacula-restore-${res.jobId}`;
    expect(res.log).toContain(`the staged WAL stays in ${staging}`);
    expect(readdirSync(staging).sort()).toEqual(['pgbacula-repo.json', 'wal']);
    const at = { host: c.socketDir, port };
    const [state] = await queryAt<{ rec: boolean }>(at, 'SELECT pg_is_in_recovery() AS rec');
    expect(state!.rec).toBe(true);
    expect(await ids(at)).toEqual(rows.slice(0, k + 1).map((r) => r.id));
  });

  it('a non-empty pgdata_dir is refused before anything is received', async () => {
    const target = join(work, 'occupied');
    mkdirSync(target);
    writeFileSync(join(target, 'precious.txt'), 'keep me');
    const res = await site.restore({ jobId: [jobs.full!.jobId], where: '', pluginOptions: { pgdata_dir: target } });
    expect(res.status, res.log).toBe('E');
    expect(res.log).toContain(`restore target ${target} is not empty (precious.txt)`);
    expect(readdirSync(target)).toEqual(['precious.txt']);
    expect(existsSync(`${target}.pgbacula-restore-${res.jobId}`)).toBe(false);
  });

  it('a segment missing from the spool breaks the chain: the next Incremental stores a base backup, says why, and the spool is pruned once Bacula confirmed it', async () => {
    expect(jobs.incr2, 'the backup test ran').toBeDefined();
    await commit(1);
    const [{ f }] = (await c.sql<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')) as [{ f: string }];
    await c.sql('SELECT pg_switch_wal()');
    await until(`segment ${f} in the spool`, () => spoolSegments(spool, sysid).includes(f));
    rmSync(join(spool, sysid, '00000001', f));
    await commit(1);
    const broken = await site.runJob('pitr', 'Incremental');
    expect(broken.status, broken.log).toBe('T');
    expect(broken.log).toContain(`pgbacula: backup chain broken: WAL segment ${f} is missing from the spool`);
    expect(broken.log).toContain('This Incremental job stores a full base backup instead');
    expect((await site.listFiles(broken.jobId)).some((p) => /\/pitr\/\d{8}-\d{6}F\/manifest\.json$/.test(p))).toBe(true);

    // Bacula names the broken-chain job as the reference of the next Incremental; the spool still
    // keeps the WAL since the last Full (a Differential needs it) ...
    await commit(1);
    const next = await site.runJob('pitr', 'Incremental');
    expect(next.status, next.log).toBe('T');
    expect(next.log).toMatch(new RegExp(`pgbacula: Incremental: WAL since JobId ${broken.jobId} \\(base backup`));
    expect(next.log).not.toContain('spool pruned');
    // ... until Bacula has confirmed a newer Full: then what lies before its start (less the
    // overlap) goes, nothing after it.
    const full2 = await site.runJob('pitr', 'Full');
    expect(full2.status, full2.log).toBe('T');
    await commit(1);
    const before = spoolSegments(spool, sysid);
    const after1 = await site.runJob('pitr', 'Incremental');
    expect(after1.status, after1.log).toBe('T');
    expect(after1.log).toMatch(new RegExp(`pgbacula: spool pruned: \\d+ WAL files? before (00000001[0-9A-F]{16}) \\(Bacula confirmed JobId ${full2.jobId}`));
    const firstKept = /spool pruned: \d+ WAL files? before (00000001[0-9A-F]{16})/.exec(after1.log)![1]!;
    const after = spoolSegments(spool, sysid);
    expect(after.length).toBeLessThan(before.length);
    expect(after[0]).toBe(firstKept);
    expect(after.length).toBeGreaterThan(2);
  });

  it('a Full canceled while it waits for WAL leaves no chain record, no work directory and no slot; the next Incremental continues the last confirmed job', async () => {
    expect(jobs.incr2, 'the backup test ran').toBeDefined();
    const chain = join(spool, '.bacula-chain', `${sysid}.json`);
    const recorded = (): number[] => (JSON.parse(readFileSync(chain, 'utf8')) as { records: Array<{ jobId: number }> }).records.map((r) => r.jobId);
    const lastGood = Math.max(...recorded());
    await c.sql("ALTER SYSTEM SET archive_command = '/bin/false'");
    await c.sql('SELECT pg_reload_conf()');
    let jobId = 0;
    try {
      const out = await site.bconsole('run job=pitr level=Full yes');
      jobId = Number(/JobId=(\d+)/.exec(out)![1]);
      // the base backup is done and the job waits for its switched segment, which cannot be archived
      await until('the archiver fails on the switched segment', async () => {
        const [a] = await c.sql<{ n: string; w: string | null }>('SELECT failed_count::text AS n, last_failed_wal AS w FROM pg_stat_archiver');
        const [b] = await c.sql<{ n: string }>("SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name = 'pgbacula pitr'");
        return Number(a!.n) > 0 && b!.n !== '0' && readdirSync(join(work, 'staging')).some((d) => d.startsWith(`pitr-${jobId}-`));
      }, 120_000);
      await site.bconsole(`cancel jobid=${jobId}\nyes`);
      const run = await site.waitJob(jobId);
      // A (canceled), or I (incomplete) when the cancel caught the base backup's data on its way
      expect(['A', 'I'], run.log).toContain(run.status);
      expect(run.log).not.toMatch(/Error closing backend|Backend reported error/);
    } finally {
      await c.sql('ALTER SYSTEM RESET archive_command');
      await c.sql('SELECT pg_reload_conf()');
    }
    expect(recorded()).not.toContain(jobId);
    await until('the work directory is gone', () => !readdirSync(join(work, 'staging')).some((d) => d.startsWith(`pitr-${jobId}-`)), 15_000);
    await until('the temporary slot is gone', async () => (await c.sql<{ n: string }>('SELECT count(*)::text AS n FROM pg_replication_slots'))[0]!.n === '0', 15_000);
    await until('no pgbacula session is left on the server', async () => (await c.sql<{ n: string }>("SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name LIKE 'pgbacula%'"))[0]!.n === '0', 15_000);

    await commit(1);
    const next = await site.runJob('pitr', 'Incremental');
    expect(next.status, next.log).toBe('T');
    expect(next.log).toMatch(new RegExp(`pgbacula: Incremental: WAL since JobId ${lastGood} `));
  });
});
