/**
 * Mode pitr through real Bacula daemons against a standby (backup_from_standby=true), so the
 * primary carries no backup load: the standby archives into the spool itself (archive_mode =
 * always), a Full takes the base backup from it, an Incremental ships the WAL it archived since,
 * and a restore to a second between two commits made on the primary recovers exactly those rows.
 */
import { appendFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, startStandby, type Cluster } from '../harness/cluster.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { amcheckAllIndexes, createStaticTables, digestAt, queryAt } from '../harness/verify-cluster.js';
import { commitRows, type CommittedRow } from '../harness/workload.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, until } from '../integration/wal-helpers.js';
import { findBaculaInstall, type BaculaSite } from './bacula-site.js';
import { startPitrSite, stopRestoredServer } from './pitr-fixture.js';
import { buildShimWithRealBackend } from './real-backend.js';

const MAJOR = 16 as const;

describe('mode pitr from a standby through real Bacula daemons', () => {
  const install = findBaculaInstall();
  let work: string;
  let site: BaculaSite;
  let primary: Cluster;
  let standby: Cluster;
  let spool: string;
  let sysid: string;
  const rows: CommittedRow[] = [];
  let restored: string | undefined;

  const archived = (): string[] => {
    const dir = join(spool, sysid, '00000001');
    return existsSync(dir) ? readdirSync(dir).filter((n) => /^[0-9A-F]{24}$/.test(n)) : [];
  };
  /** Close the primary's segment and wait until the standby has archived it. */
  const shipToSpool = async (): Promise<void> => {
    const [{ f }] = (await primary.sql<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')) as [{ f: string }];
    await primary.sql('SELECT pg_switch_wal()');
    await until(`the standby archived ${f}`, () => archived().includes(f), 60_000);
  };

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), 'pitr-standby-'));
    const shim = buildShimWithRealBackend(work, install);
    spool = ownedDir('pitr-standby-spool');
    primary = await startCluster({ major: MAJOR, name: 'pitr-standby-primary' });
    sysid = (await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
    await createStaticTables(primary, 2000);
    standby = await startStandby(primary);
    appendFileSync(join(standby.pgdata, 'postgresql.conf'), `\narchive_mode = always\narchive_command = '${archiveCommandLine({ spool })}'\n`);
    await standby.stop();
    await standby.start();
    rows.push(...(await commitRows(primary, 2)));
    await shipToSpool();
    site = await startPitrSite({ install, shimSo: shim.so, work, major: MAJOR, spool, params: { host: standby.socketDir, port: standby.port, backup_from_standby: true } });
  }, 240_000);

  afterAll(async () => {
    if (restored) stopRestoredServer(MAJOR, restored);
    await site?.stop();
    await standby?.destroy();
    await primary?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('a Full and an Incremental from the standby restore to a second between two commits made on the primary', async () => {
    const full = await site.runJob('pitr', 'Full');
    expect(full.status, full.log).toBe('T');
    expect(full.log).toMatch(/pgbacula: starting pitr backup \(PG 16\.\d+ on \S+, standby\)/);
    expect(full.log).toContain('pgbacula: WAL: the server is a standby (no segment switch): shipping what the spool holds');

    rows.push(...(await commitRows(primary, 4, 1100)));
    await shipToSpool();
    const incr = await site.runJob('pitr', 'Incremental');
    expect(incr.status, incr.log).toBe('T');
    expect(incr.log).toMatch(new RegExp(`pgbacula: Incremental: WAL since JobId ${full.jobId} \\(base backup \\d{8}-\\d{6}F`));
    expect(incr.log).toMatch(/pgbacula: WAL shipped: 00000001[0-9A-F]{16}\.\.00000001[0-9A-F]{16} \(\d+ segments?\)/);

    const k = 3; // rows[0..3] up to the target, rows[4] after it
    const target = join(testRoot(), 'pitr-standby-restored');
    registerForCleanup({ pgdata: target, dir: target });
    restored = target;
    const port = await freePort();
    const at = new Date((rows[k]!.commitTime.getTime() + rows[k + 1]!.commitTime.getTime()) / 2).toISOString();
    const res = await site.restore({ jobId: [full.jobId, incr.jobId], where: '', pluginOptions: { target_time: at, pgdata_dir: target, restore_port: port }, timeoutMs: 600_000 });
    expect(res.status, res.log).toBe('T');
    expect(res.log).toMatch(/pgbacula: restore complete: .*PostgreSQL is promoted on port \d+/);
    // the restored copy keeps the standby's settings: its socket directory among them
    const got = (await queryAt<{ id: string }>({ host: standby.socketDir, port }, 'SELECT id::text AS id FROM workload_rows ORDER BY workload_rows.id')).map((r) => Number(r.id));
    expect(got).toEqual(rows.slice(0, k + 1).map((r) => r.id));
    expect(await digestAt({ host: standby.socketDir, port }, 'static_a')).toBe(await digestAt({ host: primary.socketDir, port: primary.port }, 'static_a'));
    expect(await amcheckAllIndexes({ host: standby.socketDir, port })).toBeGreaterThan(2);
  }, 600_000);
});
