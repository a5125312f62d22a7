/**
 * Replication topology, standalone (track_replication_state=true), on 10, 14 and 18: a primary
 * with two physical standbys (one through a slot, one synchronous), a subscription of its own to
 * another cluster and a logical subscriber there. One backup captures it all; the primary and its
 * standbys are destroyed; the primary is restored (slots recreated, subscriptions staged and
 * disabled), then both standbys are rebuilt from the same backup with the captured settings and
 * stream from it under their captured names and slots. The staged subscription SQL, run by hand,
 * creates the subscription disabled. No password reaches any output. A backup of a standby
 * records its own settings and upstream.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, stopServerIn, type Cluster } from '../harness/cluster.js';
import { clientBin, embeddedPgDir, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { queryAt } from '../harness/verify-cluster.js';
import { ownedDir, until } from './wal-helpers.js';
import { versionFacts } from '../../src/pg/versions.js';
import { BOTH_STREAMING_SQL, REBUILT_STANDBYS_SQL, SECRET, startTopology } from './topology-fixture.js';

const MAJORS: readonly TestMajor[] = [10, 14, 18];
const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };

describe.each(MAJORS)('replication topology of PostgreSQL %i', (major) => {
  let primary: Cluster;
  let other: Cluster;
  let slotStandby: Cluster;
  let syncStandby: Cluster;
  let repo: string;
  let standbyRepo: string;
  const outputs: string[] = [];
  const targets: string[] = [];
  let restoredPrimary: { port: number; host: string; pgdata: string };
  const bin = join(embeddedPgDir(major), 'bin');

  const cli = async (args: string[]) => {
    const r = await runCli(args, quiet);
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const target = (name: string): string => {
    const t = join(testRoot(), `topo-${major}-${name}`);
    targets.push(t);
    registerForCleanup({ pgdata: t, dir: t });
    return t;
  };

  beforeAll(async () => {
    repo = ownedDir(`topo-repo-${major}`);
    standbyRepo = ownedDir(`topo-sb-repo-${major}`);
    ({ primary, other, slotStandby, syncStandby } = await startTopology(major, `topo${major}`));
  });

  afterAll(async () => {
    for (const t of targets) stopServerIn(major, t);
    for (const c of [slotStandby, syncStandby, primary, other]) await c?.destroy();
    for (const t of targets) rmSync(t, { recursive: true, force: true });
  });

  it('pgbacula check says what capture needs of the role', async () => {
    await primary.sql('CREATE ROLE topo_reader LOGIN REPLICATION');
    const weak = await cli(['check', '--host', primary.socketDir, '--port', String(primary.port), '--user', 'topo_reader', '--dbname', 'postgres']);
    expect(weak.stdout).toContain('Replication topology capture (track_replication_state=true');
    expect(weak.stdout).toContain('may not read pg_subscription.subconninfo');
    expect(weak.stdout).toContain('GRANT SELECT (subconninfo) ON pg_subscription TO topo_reader;');
    expect(weak.stdout).toContain('GRANT pg_read_all_stats TO topo_reader;');
    const su = await cli(['check', '--host', primary.socketDir, '--port', String(primary.port), '--user', 'postgres', `--standby-hosts=${slotStandby.socketDir}:${slotStandby.port},/nonexistent-dir:5999`]);
    expect(su.stdout).toContain('everything it captures is readable');
    expect(su.stdout).not.toContain('GRANT SELECT (subconninfo)');
    expect(su.stdout).toContain(`standby_hosts: ${slotStandby.socketDir}:${slotStandby.port} reached: standby sb_slot`);
    expect(su.stdout).toContain('standby_hosts: /nonexistent-dir:5999 cannot be reached as postgres');
  });

  it('a backup of the primary captures its slots, subscription and standbys', async () => {
    const standbyHosts = [slotStandby, syncStandby].map((c) => `${c.socketDir}:${c.port}`).join(',');
    const b = await cli(['backup', '--repo', repo, '--host', primary.socketDir, '--port', String(primary.port), '--user', 'postgres', '--track-replication-state=true', `--standby-hosts=${standbyHosts}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toContain('captured 2 replication slots, 1 subscription, 2 standbys (own settings read from 2)');
    // Each standby reached over standby_hosts: its own settings (12+) or its WAL receiver's slot.
    const json = JSON.parse((await cli(['info', '--repo', repo, '--json'])).stdout);
    const sb = json.backups[0].topology.standbys.find((s: { name: string }) => s.name === 'sb_slot');
    expect(sb.settings.primarySlotName).toBe('sb_slot_1');
    if (versionFacts(major).recoveryConfig === 'signal-files') {
      expect(sb.settings.source).toBe('settings');
      expect(sb.settings.primaryConninfo).toContain(`host=${primary.socketDir}`);
      expect(sb.settings.primaryConninfo).toContain('application_name=sb_slot');
    } else {
      expect(sb.settings.source).toBe('wal-receiver');
    }
    const info = await cli(['info', '--repo', repo]);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/slot sb_slot_1: physical/);
    expect(info.stdout).toMatch(/slot sub_on_other: logical \(pgoutput, database postgres/);
    expect(info.stdout).toMatch(/standby sb_sync: sync, no slot/);
    expect(info.stdout).toMatch(/standby sb_slot: \w+, slot sb_slot_1/);
    expect(info.stdout).toMatch(/subscription sub_from_other in postgres: publications pub_other, enabled, slot sub_from_other, connection .*password=\*{8}/);
    // Block-level backups go through the same engine: they capture it too.
    const blockRepo = ownedDir(`topo-block-repo-${major}`);
    const block = await cli(['backup', '--repo', blockRepo, '--mode=pitr_block', '--host', primary.socketDir, '--port', String(primary.port), '--user', 'postgres', '--track-replication-state=true']);
    expect(block.code, block.stderr).toBe(0);
    expect(block.stderr).toContain('captured 2 replication slots, 1 subscription, 2 standbys, 1 publication');
    expect((await cli(['info', '--repo', blockRepo])).stdout).toMatch(/pitr_block full[\s\S]*topology: primary, timeline 1/);
  });

  it('a backup of a standby records its own settings and its upstream', async () => {
    const b = await cli(['backup', '--repo', standbyRepo, '--host', slotStandby.socketDir, '--port', String(slotStandby.port), '--user', 'postgres', '--backup-from-standby=true', '--track-replication-state=true']);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/captured 0 replication slots, 1 subscription, 0 standbys, 1 publication, this standby's own settings \(upstream .*slot sb_slot_1\)/);
    const info = await cli(['info', '--repo', standbyRepo, '--json']);
    const t = JSON.parse(info.stdout).backups[0].topology;
    expect(t.role).toBe('standby');
    expect(t.standbySettings.primarySlotName).toBe('sb_slot_1');
    expect(t.standbySettings.primaryConninfo).toContain('application_name=sb_slot');
    expect(t.standbySettings.standbySignal).toBe(true);
    expect(t.standbySettings.upstream.slot).toBe('sb_slot_1');

    // A restore drill of it next to the running originals, promoted: its subscription never
    // connects to the publisher (whose slot the live primary keeps using), and it recreates no slot.
    const drill = target('drill');
    const port = await freePort();
    const r = await cli(['restore', '--repo', standbyRepo, '--pgdata-dir', drill, '--restore-port', String(port), '--pg-bin-dir', bin, '--recreate-replication-slots=false', '--recreate-subscriptions=true']);
    expect(r.code === 0 || r.code === 4, r.stderr).toBe(true);
    expect(r.stderr).toMatch(/RESTORE PHASE 5\/6 topology: no slots captured; 1 subscription\(s\) present, disabled \(recreate_subscriptions=true: missing ones created disabled, connect = false\); .*restarted with logical replication workers back/);
    expect(await queryAt({ host: slotStandby.socketDir, port }, 'SELECT subname::text, subenabled FROM pg_subscription')).toEqual([{ subname: 'sub_from_other', subenabled: false }]);
    expect(readFileSync(join(drill, 'pgbacula_restore', 'server.log'), 'utf8')).not.toMatch(/apply worker for subscription "sub_from_other" has started/);
    stopServerIn(major, drill);
    await other.sql("INSERT INTO b_items VALUES (2, 'dos')");
    await until('the live primary still applies from the publisher', async () => (await primary.sql('SELECT 1 FROM b_items WHERE id = 2')).length === 1);
  });

  it('the primary comes back with its slots; its subscription is staged and disabled', async () => {
    // Disaster: the primary and both standbys are gone (their sockets' directories stay: the
    // restored primary listens where the captured conninfo points).
    for (const c of [slotStandby, syncStandby, primary]) {
      await c.stop('immediate');
      rmSync(c.pgdata, { recursive: true, force: true });
    }
    const pgdata = target('primary');
    const r = await cli(['restore', '--repo', repo, '--pgdata-dir', pgdata, '--restore-port', String(primary.port), '--pg-bin-dir', bin]);
    expect(r.code === 0 || r.code === 4, r.stderr).toBe(true);
    expect(r.stderr).toContain('RESTORE PHASE 5/6 topology: 2 slots recreated; subscriptions staged as .DISABLED');
    expect(r.stderr).toMatch(/logical slot sub_on_other recreated at the current WAL position.*must resynchronise/);
    restoredPrimary = { port: primary.port, host: primary.socketDir, pgdata };
    const slots = await queryAt<{ slot_name: string; slot_type: string }>(restoredPrimary, 'SELECT slot_name::text, slot_type FROM pg_replication_slots ORDER BY 1');
    expect(slots).toEqual([{ slot_name: 'sb_slot_1', slot_type: 'physical' }, { slot_name: 'sub_on_other', slot_type: 'logical' }]);
    const subs = await queryAt<{ subname: string; subenabled: boolean }>(restoredPrimary, 'SELECT subname::text, subenabled FROM pg_subscription');
    expect(subs).toEqual([{ subname: 'sub_from_other', subenabled: false }]);
    // Its apply worker never ran before it was disabled: workers were held off until then, and are back.
    expect(r.stderr).toMatch(/RESTORE PHASE 5\/6 topology: .*; restarted with logical replication workers back/);
    expect(await queryAt(restoredPrimary, 'SHOW max_logical_replication_workers')).toEqual([{ max_logical_replication_workers: '4' }]);
    expect(readFileSync(join(pgdata, 'pgbacula_restore', 'server.log'), 'utf8')).not.toMatch(/logical replication apply worker for subscription "sub_from_other" has started/);
    const dir = join(pgdata, 'pgbacula_restore', 'topology');
    for (const f of ['recreate_slots.sql', 'recreate_subscriptions.sql.DISABLED', 'standby-sb_slot/standby.conf', 'standby-sb_slot/rebuild.txt', 'standby-sb_sync/rebuild.txt']) {
      expect(existsSync(join(dir, f)), f).toBe(true);
    }
    const staged = join(dir, 'recreate_subscriptions.sql.DISABLED');
    // The staged SQL keeps the connection as the catalog held it, readable by its owner only.
    expect(readFileSync(staged, 'utf8')).toContain(SECRET);
    expect(statSync(staged).mode & 0o077).toBe(0);
    expect(readFileSync(join(dir, 'standby-sb_slot', 'rebuild.txt'), 'utf8')).toContain('--standby-name=sb_slot');
  });

  it('both standbys are rebuilt from the same backup and stream with their captured names and slots', async () => {
    for (const name of ['sb_slot', 'sb_sync']) {
      const pgdata = target(name);
      const r = await cli(['restore', '--repo', repo, '--pgdata-dir', pgdata, '--restore-port', String(await freePort()), '--pg-bin-dir', bin, '--restore-as-standby=true', `--standby-name=${name}`]);
      expect(r.code === 0 || r.code === 4, r.stderr).toBe(true);
      expect(r.stderr).toContain(`captured standby ${name}`);
      expect(r.stderr).toMatch(/RESTORE PHASE 4\/6 start: .*running as a standby/);
    }
    await until('both rebuilt standbys stream from the restored primary, sb_sync synchronously', async () => (await queryAt(restoredPrimary, BOTH_STREAMING_SQL)).length === 2, 120_000);
    const rows = await queryAt<{ application_name: string; sync_state: string; slot: string | null }>(restoredPrimary, REBUILT_STANDBYS_SQL);
    expect(rows).toEqual([
      { application_name: 'sb_slot', sync_state: 'async', slot: 'sb_slot_1' },
      { application_name: 'sb_sync', sync_state: 'sync', slot: null },
    ]);
    // A commit on the restored primary returns: its synchronous standby is back.
    await queryAt(restoredPrimary, "INSERT INTO a_items VALUES (2, 'two')");
  });

  it('the staged subscription SQL, run by hand, creates the subscription disabled', async () => {
    // The catalog brought the subscription back; dropped (keeping the publisher's slot) it is what the file recreates.
    await queryAt(restoredPrimary, 'ALTER SUBSCRIPTION sub_from_other SET (slot_name = NONE)');
    await queryAt(restoredPrimary, 'DROP SUBSCRIPTION sub_from_other');
    const file = join(restoredPrimary.pgdata, 'pgbacula_restore', 'topology', 'recreate_subscriptions.sql.DISABLED');
    const out = execFileSync(clientBin('psql'), ['-X', '-v', 'ON_ERROR_STOP=1', '-h', restoredPrimary.host, '-p', String(restoredPrimary.port), '-U', 'postgres', '-d', 'postgres', '-f', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).not.toContain(SECRET);
    const subs = await queryAt<{ subname: string; subenabled: boolean; subslotname: string; pubs: string }>(restoredPrimary, "SELECT subname::text, subenabled, subslotname::text, array_to_string(subpublications, ',') AS pubs FROM pg_subscription");
    expect(subs).toEqual([{ subname: 'sub_from_other', subenabled: false, subslotname: 'sub_from_other', pubs: 'pub_other' }]);
    // Nothing touched the publisher: its slot for the subscription is still there.
    expect((await other.sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'sub_from_other'")).length).toBe(1);
  });

  it('no password reached any output', () => {
    expect(outputs.join('\n').length).toBeGreaterThan(1000);
    for (const o of outputs) expect(o).not.toContain(SECRET);
    for (const t of targets) {
      const audit = join(t, 'pgbacula_restore', 'audit.log');
      if (existsSync(audit)) expect(readFileSync(audit, 'utf8')).not.toContain(SECRET);
    }
  });
});
