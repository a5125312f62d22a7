/**
 * Disaster recovery of a primary with its standbys through real Bacula daemons (bconsole), on 14
 * and 18: a Full job of mode pitr with track_replication_state=true captures the topology (see
 * test/integration/topology-fixture.ts); the primary and both standbys are destroyed; a bconsole
 * restore brings the primary back (slots recreated, subscriptions staged as .DISABLED), two more
 * restores of the same job rebuild the standbys with restore_as_standby=yes and standby_name, and
 * both stream from the restored primary under their captured names and slots. No job log shows
 * the subscription's password.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type Cluster } from '../harness/cluster.js';
import { clientBin, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { queryAt } from '../harness/verify-cluster.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, until } from '../integration/wal-helpers.js';
import { BOTH_STREAMING_SQL, REBUILT_STANDBYS_SQL, SECRET, startTopology } from '../integration/topology-fixture.js';
import { findBaculaInstall, type BaculaSite } from './bacula-site.js';
import { startPitrSite, stopRestoredServer } from './pitr-fixture.js';
import { buildShimWithRealBackend } from './real-backend.js';

const MAJORS: readonly TestMajor[] = [14, 18];

describe.each(MAJORS)('DR rebuild of a primary and its standbys through bconsole, PostgreSQL %i', (major) => {
  const install = findBaculaInstall();
  let work: string;
  let site: BaculaSite;
  let primary: Cluster;
  let other: Cluster;
  let slotStandby: Cluster;
  let syncStandby: Cluster;
  const targets: string[] = [];
  const logs: string[] = [];

  const target = (name: string): string => {
    const t = join(testRoot(), `topo-bacula-${major}-${name}`);
    targets.push(t);
    registerForCleanup({ pgdata: t, dir: t });
    return t;
  };

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), `topo-bacula-${major}-`));
    const shim = buildShimWithRealBackend(work, install);
    const spool = ownedDir(`topo-bacula-spool-${major}`);
    ({ primary, other, slotStandby, syncStandby } = await startTopology(major, `topob${major}`, { archive_mode: 'on', archive_command: archiveCommandLine({ spool }) }));
    site = await startPitrSite({ install, shimSo: shim.so, work, major, spool, params: { host: primary.socketDir, port: primary.port, track_replication_state: true } });
  }, 300_000);

  afterAll(async () => {
    for (const t of targets) stopRestoredServer(major, t);
    await site?.stop();
    for (const c of [slotStandby, syncStandby, primary, other]) await c?.destroy();
    for (const t of targets) rmSync(t, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('one Full job brings back the primary, its slots and both standbys, streaming as captured', async () => {
    const full = await site.runJob('pitr', 'Full');
    logs.push(full.log);
    expect(full.status, full.log).toBe('T');
    expect(full.log).toContain('pgbacula: captured 2 replication slots, 1 subscription, 2 standbys');

    // Disaster: the primary and both standbys are gone (their socket directories stay, where the
    // captured conninfo points).
    for (const c of [slotStandby, syncStandby, primary]) {
      await c.stop('immediate');
      rmSync(c.pgdata, { recursive: true, force: true });
    }

    const pgdata = target('primary');
    const res = await site.restore({ jobId: full.jobId, where: '', pluginOptions: { pgdata_dir: pgdata, restore_port: primary.port }, timeoutMs: 600_000 });
    logs.push(res.log);
    expect(res.status, res.log).toBe('T');
    expect(res.log).toContain('RESTORE PHASE 5/6 topology: 2 slots recreated; subscriptions staged as .DISABLED');
    const at = { host: primary.socketDir, port: primary.port };
    expect(await queryAt(at, 'SELECT slot_name::text, slot_type FROM pg_replication_slots ORDER BY 1')).toEqual([
      { slot_name: 'sb_slot_1', slot_type: 'physical' },
      { slot_name: 'sub_on_other', slot_type: 'logical' },
    ]);
    expect(await queryAt(at, 'SELECT subname::text, subenabled FROM pg_subscription')).toEqual([{ subname: 'sub_from_other', subenabled: false }]);

    for (const name of ['sb_slot', 'sb_sync']) {
      const r = await site.restore({
        jobId: full.jobId,
        where: '',
        pluginOptions: { pgdata_dir: target(name), restore_port: await freePort(), restore_as_standby: true, standby_name: name },
        timeoutMs: 600_000,
      });
      logs.push(r.log);
      expect(r.status, r.log).toBe('T');
      expect(r.log).toContain(`captured standby ${name}`);
    }
    await until('both rebuilt standbys stream from the restored primary, sb_sync synchronously', async () => (await queryAt(at, BOTH_STREAMING_SQL)).length === 2, 120_000);
    expect(await queryAt(at, REBUILT_STANDBYS_SQL)).toEqual([
      { application_name: 'sb_slot', sync_state: 'async', slot: 'sb_slot_1' },
      { application_name: 'sb_sync', sync_state: 'sync', slot: null },
    ]);

    // The staged subscription SQL, run by hand where the subscription is missing, creates it disabled.
    await queryAt(at, 'ALTER SUBSCRIPTION sub_from_other SET (slot_name = NONE)');
    await queryAt(at, 'DROP SUBSCRIPTION sub_from_other');
    const staged = join(pgdata, 'pgbacula_restore', 'topology', 'recreate_subscriptions.sql.DISABLED');
    expect(existsSync(staged)).toBe(true);
    execFileSync(clientBin('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', at.host, '-p', String(at.port), '-U', 'postgres', '-d', 'postgres', '-f', staged], { stdio: 'ignore' });
    expect(await queryAt(at, 'SELECT subname::text, subenabled FROM pg_subscription')).toEqual([{ subname: 'sub_from_other', subenabled: false }]);

    for (const l of logs) expect(l).not.toContain(SECRET);
  }, 900_000);
});
