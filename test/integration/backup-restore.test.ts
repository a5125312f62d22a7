import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { embeddedPgDir, TEST_MAJORS } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { amcheckAllIndexes, createStaticTables, digestAt, queryAt } from '../harness/verify-cluster.js';
import { startWorkload, tableDigest, WORKLOAD_TABLE } from '../harness/workload.js';
import { execFileSync } from 'node:child_process';
import { serverUser } from '../harness/os-user.js';

/** Stop a restored server (it runs as the postgres OS user) — also registered for the teardown. */
function stopRestored(major: number, pgdata: string): void {
  const u = serverUser();
  try {
    execFileSync(join(embeddedPgDir(major), 'bin', 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid, stdio: 'ignore' });
  } catch {
    // not running
  }
}

describe.each(TEST_MAJORS)('full backup and restore of PostgreSQL %i while a workload writes', (major) => {
  let source: Cluster;
  const repo = () => join(testRoot(), `repo-${major}`);
  const target = () => join(testRoot(), `restored-${major}`);

  beforeAll(async () => {
    source = await startCluster({ major, name: `bk${major}` });
    registerForCleanup({ pgdata: target(), dir: target() });
  });
  afterAll(async () => {
    stopRestored(major, target());
    await source?.destroy();
  });

  it('restores to a consistent cluster that passes amcheck, with every static table equal and every row committed before the backup', async () => {
    const tables = await createStaticTables(source);
    const digests = Object.fromEntries(await Promise.all(tables.map(async (t) => [t, await tableDigest(source, t)] as const)));
    const workload = startWorkload(source, 5);
    await new Promise((r) => setTimeout(r, 300));
    const [{ before }] = (await source.sql<{ before: string }>(`SELECT coalesce(max(id), 0)::text AS before FROM ${WORKLOAD_TABLE}`)) as [{ before: string }];
    const backup = await runCli(['backup', '--repo', repo(), '--host', source.socketDir, '--port', String(source.port), '--user', 'postgres', '--compression-level', '1', '--json'], { PGBACULA_PROGRESS_SECONDS: '0' });
    const written = await workload.stop();
    expect(backup.code, backup.stderr).toBe(0);
    expect(written.length).toBeGreaterThan(3);
    const result = JSON.parse(backup.stdout) as { backupId: string; manifest: { pageVerification: string; walSegments: string[]; systemIdentifier: string } };
    expect(result.manifest.pageVerification).toBe('passed');
    expect(result.manifest.walSegments.length).toBeGreaterThan(0);
    expect(backup.stderr).toMatch(/backup start label='pgbacula_\d{8}-\d{6}F' lsn=/);
    expect(backup.stderr).toMatch(/page checksums verified: [\d,]+ pages, 0 failures/);

    const info = await runCli(['info', '--repo', repo(), '--json']);
    expect(JSON.parse(info.stdout).backups[0]).toMatchObject({ id: result.backupId, state: 'complete' });
    const vr = await runCli(['verify', '--repo', repo()]);
    expect(vr.code, vr.stdout + vr.stderr).toBe(0);

    const port = await freePort();
    const restore = await runCli(['restore', '--repo', repo(), '--pgdata-dir', target(), '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(major), 'bin')], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(restore.code, restore.stderr).toBe(0);
    for (let n = 1; n <= 6; n++) expect(restore.stderr).toContain(`RESTORE PHASE ${n}/6`);
    expect(restore.stderr).toMatch(/RESTORE PHASE 6\/6 verify: SELECT 1 answered; page checksums [\d,]+ pages, 0 failures/);
    // Made durable by one syncfs of the target's file system, not an fsync per file.
    expect(restore.stderr).toMatch(/RESTORE PHASE 2\/6 lay-down: .*every hash checked, synced to disk \(one file system\)\)/);
    expect(restore.stderr).toMatch(new RegExp(`RESTORE PHASE 3/6 wal-setup: .*${major >= 12 ? 'recovery.signal \\+ postgresql.auto.conf' : 'recovery.conf'}`));
    expect(restore.stderr).toMatch(/RESTORE PHASE 4\/6 start: .*selected new timeline ID: 2/);

    const at = { host: source.socketDir, port };
    const [state] = await queryAt<{ rec: boolean; sysid: string }>(at, 'SELECT pg_is_in_recovery() AS rec, system_identifier::text AS sysid FROM pg_control_system()');
    expect(state!.rec).toBe(false);
    expect(state!.sysid).toBe(result.manifest.systemIdentifier);
    // The recovery settings did their work and were reset; nothing of the restore is left to run again.
    if (major >= 12) {
      // ALTER SYSTEM RESET took them out of postgresql.auto.conf (restore_command is only reloadable from 14).
      const auto = readFileSync(join(target(), 'postgresql.auto.conf'), 'utf8');
      expect(auto).not.toMatch(/^restore_command/m);
      expect(auto).not.toMatch(/^recovery_target/m);
    } else {
      // Before 12 the server itself renames recovery.conf when recovery ends.
      expect(existsSync(join(target(), 'recovery.done'))).toBe(true);
      expect(existsSync(join(target(), 'recovery.conf'))).toBe(false);
    }
    expect(await amcheckAllIndexes(at)).toBeGreaterThan(3);
    for (const t of tables) expect(await digestAt(at, t), t).toBe(digests[t]);
    const [{ n, missing }] = (await queryAt<{ n: string; missing: string }>(
      at,
      `SELECT count(*)::text AS n, (SELECT count(*) FROM generate_series(1, ${before}) g WHERE g NOT IN (SELECT id FROM ${WORKLOAD_TABLE}))::text AS missing FROM ${WORKLOAD_TABLE}`,
    )) as [{ n: string; missing: string }];
    expect(Number(missing)).toBe(0);
    expect(Number(n)).toBeGreaterThanOrEqual(Number(before));
    // Nothing committed after the backup ended can be there.
    expect(Number(n)).toBeLessThanOrEqual(written.at(-1)!.id);
  });
});
