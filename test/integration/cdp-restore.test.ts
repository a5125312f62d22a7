/**
 * RPO 0 with a synchronous wal-receive (mode cdp's promise on the database host), standalone:
 * the receiver is the server's synchronous standby, so every commit the client saw return is
 * fsynced in the receiver's open `.partial` first. After a base backup, commits are acknowledged
 * and left in the open segment (no segment switch); the primary is killed (immediate stop) and
 * its data directory removed; a restore to "latest" from the repository must replay the open
 * segment: every acknowledged commit is there, and the restore names the last commit recovered.
 * Then a complete copy of the segment wins over the .partial (never shadowed).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, stopServerIn, type Cluster } from '../harness/cluster.js';
import { embeddedPgDir } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { queryAt } from '../harness/verify-cluster.js';
import { listWalArchive } from '../../src/archive/listing.js';
import { CliProcess, connFlags, currentLsn, killReceivers, ownedDir, until } from './wal-helpers.js';

const MAJORS = [12, 18] as const;

describe.each(MAJORS)('restore to latest from a synchronous wal-receive, PostgreSQL %i', (major) => {
  let primary: Cluster;
  let repo: string;
  let receiver: CliProcess;
  let systemId: string;
  const acknowledged: number[] = [];
  const targets: string[] = [];
  const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };

  beforeAll(async () => {
    primary = await startCluster({ major, name: `pg${major}-cdp-restore`, settings: { autovacuum: false } });
    systemId = (await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
    await primary.sql('CREATE TABLE acked (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
    repo = ownedDir(`cdp-restore-${major}`);
    receiver = new CliProcess(['wal-receive', '--repo', repo, ...connFlags(primary), '--slot-name', 'cdp', '--create-slot', '--synchronous-receive', '--status-interval', '10']);
    await receiver.waitFor(/streaming WAL .*, synchronous/);
    await primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'pgbacula_wal_receive'");
    await primary.sql('SELECT pg_reload_conf()');
    await until('the receiver is the synchronous standby', async () => {
      const [r] = await primary.sql<{ s: string }>("SELECT sync_state AS s FROM pg_stat_replication WHERE application_name = 'pgbacula_wal_receive'");
      return r?.s === 'sync';
    });
    const b = await runCli(['backup', '--repo', repo, ...connFlags(primary)], quiet);
    if (b.code !== 0) throw new Error(`backup failed: ${b.stderr}`);
  });
  afterAll(async () => {
    await killReceivers();
    for (const t of targets) stopServerIn(major, t);
    await primary?.destroy();
  });

  it('the primary dies with acknowledged commits in the open segment: all of them are restored', async () => {
    // Each id is recorded only once its COMMIT has returned (synchronous: fsynced by the receiver).
    const client = await primary.client();
    try {
      for (let id = 1; id <= 300; id++) {
        await client.query('INSERT INTO acked (id) VALUES ($1)', [id]);
        acknowledged.push(id);
      }
    } finally {
      await client.end();
    }
    const [{ seg }] = (await primary.sql<{ seg: string }>(`SELECT pg_walfile_name('${await currentLsn(primary)}') AS seg`)) as [{ seg: string }];
    // The last commits are only in the receiver's open segment: nothing complete holds them.
    const before = await listWalArchive(join(repo, 'wal'), systemId);
    expect(before.receiving?.name).toBe(`${seg}.partial`);
    expect(before.segments.map((s) => s.name)).not.toContain(seg);

    // info shows the receiver's state and how fresh the newest WAL is.
    const info = await runCli(['info', '--repo', repo], quiet);
    expect(info.stdout).toMatch(new RegExp(`receiver: wal-receive process ${receiver.child.pid} running`));
    expect(info.stdout).toMatch(/newest WAL written \d+ s ago/);
    expect(info.stdout).toContain(`being received: ${seg}.partial`);

    await primary.stop('immediate');
    rmSync(primary.pgdata, { recursive: true, force: true });

    const target = join(testRoot(), `cdp-restore-${major}`);
    targets.push(target);
    registerForCleanup({ pgdata: target, dir: target });
    const port = await freePort();
    const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(major), 'bin')], quiet);
    expect(r.code, r.stderr).toBe(0);
    const at = { host: primary.socketDir, port };
    const rows = await queryAt<{ id: number; at: Date }>(at, 'SELECT id, at FROM acked ORDER BY id');
    expect(rows.map((x) => x.id)).toEqual(acknowledged);
    // The open segment was served as the end of WAL, and the restore says up to what.
    expect(r.stderr).toContain(`replayed the open segment ${seg}.partial`);
    const last = /last commit recovered at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d)\b/.exec(r.stderr);
    expect(last, r.stderr.split('\n').find((l) => l.includes('PHASE 4'))).not.toBeNull();
    // The reported time is the last commit's (the row's default is taken a moment before its commit).
    expect(Date.parse(last![1]!.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'))).toBeGreaterThanOrEqual(rows.at(-1)!.at.getTime());
  });
});
