import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, startStandby, type Cluster } from '../harness/cluster.js';
import { TEST_MAJORS } from '../harness/pg-binaries.js';
import { runCli } from '../harness/run-cli.js';

interface CheckJson {
  server: {
    version: string;
    major: number;
    role: string;
    dataChecksums: boolean;
    walLevel: string;
    archiveMode: string;
    summarizeWal: boolean | null;
    maxWalSenders: number;
    maxReplicationSlots: number;
    walSegmentSize: number;
    user: { name: string; superuser: boolean; replication: boolean; readAllData: boolean | null };
    replicationConnection: { ok: boolean; timeline?: number; systemIdentifier?: string };
  };
  modes: { mode: string; ready: boolean; findings: { problem: string; fix: string; severity: string }[] }[];
}

async function check(c: Cluster, extra: string[] = []): Promise<{ code: number; json: CheckJson; stderr: string }> {
  const r = await runCli(['check', '--host', c.socketDir, '--port', String(c.port), '--user', 'postgres', '--json', ...extra]);
  return { code: r.code, json: JSON.parse(r.stdout || '{}') as CheckJson, stderr: r.stderr };
}

describe.each(TEST_MAJORS)('pgbacula check against PostgreSQL %i', (major) => {
  let primary: Cluster;
  let noChecksums: Cluster | undefined;

  beforeAll(async () => {
    primary = await startCluster({ major, summarizeWal: major >= 17, settings: { max_wal_senders: 7, max_replication_slots: 5 } });
  });
  afterAll(async () => {
    await primary?.destroy();
    await noChecksums?.destroy();
  });

  it('reports version, role and settings', async () => {
    const { code, json, stderr } = await check(primary);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const s = json.server;
    expect(s.major).toBe(major);
    expect(s.version.startsWith(`${major}.`)).toBe(true);
    const [row] = await primary.sql<{ v: string }>("SELECT current_setting('server_version') AS v");
    expect(s.version).toBe(row!.v);
    expect(s.role).toBe('primary');
    expect(s.dataChecksums).toBe(true);
    expect(s.walLevel).toBe('replica');
    expect(s.archiveMode).toBe('off');
    expect(s.summarizeWal).toBe(major >= 17 ? true : null);
    expect(s.maxWalSenders).toBe(7);
    expect(s.maxReplicationSlots).toBe(5);
    expect(s.walSegmentSize).toBe(16 * 1024 * 1024);
    expect(s.user).toMatchObject({ name: 'postgres', superuser: true, replication: true, readAllData: major >= 14 ? true : null });
    expect(s.replicationConnection.ok).toBe(true);
    expect(s.replicationConnection.timeline).toBe(1);
    const [sys] = await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    expect(s.replicationConnection.systemIdentifier).toBe(sys!.id);
    // A superuser on a replica-level primary can run every mode this version has; archiving is
    // only a warning.
    for (const m of json.modes) expect(m.ready, m.mode).toBe(true);
    const pitr = json.modes.find((m) => m.mode === 'pitr')!;
    expect(pitr.findings.map((f) => f.fix).join('\n')).toContain("archive_command = 'pgbacula wal-push %p'");
  });

  it('says where pitr_block finds changed blocks on this major, and what cdp needs', async () => {
    const { json } = await check(primary);
    const block = json.modes.find((x) => x.mode === 'pitr_block')!;
    const said = block.findings.map((f) => `${f.severity}: ${f.problem} / ${f.fix}`).join('\n');
    // No archiving to pgbacula here: without server summaries, incrementals would be full backups.
    if (major >= 17) {
      expect(said).toContain("note: summarize_wal is on: incremental jobs read the changed blocks from the server's own WAL summaries");
      expect(said).not.toContain('no source of changed blocks');
    } else {
      expect(said).toContain('warning: no source of changed blocks: WAL is not archived by pgbacula wal-push — incremental and differential jobs will read every page of the cluster to find them (a page LSN scan');
      expect(said).not.toContain('summarize_wal');
    }
    if (major >= 17) {
      await primary.sql('ALTER SYSTEM SET summarize_wal = off');
      await primary.sql('SELECT pg_reload_conf()');
      try {
        const off = (await check(primary)).json.modes.find((x) => x.mode === 'pitr_block')!.findings.map((f) => `${f.severity}: ${f.problem} / ${f.fix}`).join('\n');
        expect(off).toContain("note: summarize_wal is off (optional): incremental jobs find the changed blocks in pgbacula's summaries of the archived WAL / ALTER SYSTEM SET summarize_wal = on;");
        expect(off).toContain('warning: no source of changed blocks: WAL is not archived by pgbacula wal-push and summarize_wal is off');
      } finally {
        await primary.sql('ALTER SYSTEM RESET summarize_wal');
        await primary.sql('SELECT pg_reload_conf()');
      }
    }
    // cdp: ready (WAL comes from wal-receive, so archiving is no concern), the receiver named.
    const cdp = json.modes.find((x) => x.mode === 'cdp')!;
    expect(cdp.ready).toBe(true);
    const cdpSaid = cdp.findings.map((f) => `${f.severity}: ${f.problem} / ${f.fix}`).join('\n');
    expect(cdpSaid).toContain('note: mode cdp streams WAL with pgbacula wal-receive into wal_spool');
    expect(cdpSaid).not.toContain('archive_mode');
    const text = await runCli(['check', '--host', primary.socketDir, '--port', String(primary.port), '--user', 'postgres']);
    expect(text.stdout).toMatch(/pitr_block\s+ready, \d warnings?/);
    expect(text.stdout).not.toMatch(/not available in this version/);
    const one = await runCli(['check', '--host', primary.socketDir, '--port', String(primary.port), '--user', 'postgres', '--mode', 'cdp']);
    expect(one.code, one.stdout).toBe(0);
  });

  it('names the exact fix for a role without privileges', async () => {
    await primary.sql("DROP ROLE IF EXISTS plain_user; CREATE ROLE plain_user LOGIN PASSWORD 'x-unused-1'");
    await primary.sql("CREATE ROLE plain_local LOGIN").catch(() => undefined);
    const r = await runCli(['check', '--host', primary.socketDir, '--port', String(primary.port), '--user', 'plain_local', '--json', '--mode', 'pitr']);
    expect(r.code).toBe(1);
    const json = JSON.parse(r.stdout) as CheckJson;
    expect(json.server.user.superuser).toBe(false);
    const pitr = json.modes.find((m) => m.mode === 'pitr')!;
    expect(pitr.ready).toBe(false);
    const fixes = pitr.findings.map((f) => f.fix).join('\n');
    expect(fixes).toContain('ALTER ROLE plain_local REPLICATION;');
    expect(fixes).toContain(`GRANT EXECUTE ON FUNCTION ${major >= 15 ? 'pg_backup_start' : 'pg_start_backup'}`);
    const dump = json.modes.find((m) => m.mode === 'dump')!;
    expect(dump.ready).toBe(false);
    expect(dump.findings[0]!.fix).toBe(major >= 14 ? 'GRANT pg_read_all_data TO plain_local;' : 'ALTER ROLE plain_local SUPERUSER; (pg_read_all_data exists from PostgreSQL 14)');
  });

  it('reports data checksums off as a warning with the fix', async () => {
    noChecksums = await startCluster({ major, checksums: false, name: `pg${major}-nosum` });
    const { code, json } = await check(noChecksums);
    expect(code).toBe(0);
    expect(json.server.dataChecksums).toBe(false);
    const pitr = json.modes.find((m) => m.mode === 'pitr')!;
    const finding = pitr.findings.find((f) => f.problem.startsWith('data checksums are off'));
    expect(finding?.severity).toBe('warning');
    expect(finding?.fix).toContain(major >= 12 ? 'pg_checksums --enable' : 'initdb --data-checksums');
    await noChecksums.destroy();
    noChecksums = undefined;
  });
});

describe.each([10, 12, 18] as const)('a standby of PostgreSQL %i', (major) => {
  let primary: Cluster;
  let standby: Cluster;
  beforeAll(async () => {
    primary = await startCluster({ major, name: `pg${major}-primary` });
    standby = await startStandby(primary);
  });
  afterAll(async () => {
    await standby?.destroy();
    await primary?.destroy();
  });

  it('is reported as standby, with archive_mode=always as the fix', async () => {
    const { code, json } = await check(standby);
    expect(code).toBe(0);
    expect(json.server.role).toBe('standby');
    expect(json.server.major).toBe(major);
    const pitr = json.modes.find((m) => m.mode === 'pitr')!;
    expect(pitr.findings.map((f) => f.fix).join('\n')).toContain('archive_mode = always');
    const p = await check(primary);
    expect(p.json.server.role).toBe('primary');
    expect(p.json.server.replicationConnection.systemIdentifier).toBe(json.server.replicationConnection.systemIdentifier);
  });
});
