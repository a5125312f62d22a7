/**
 * One flipped byte in archived WAL (issue 9, item 2). A damaged segment must never become a
 * silent early end of recovery: verify --repo and info name it, wal-fetch refuses it with a
 * status that stops recovery, a restore without a target fails naming it, a time target past it
 * is refused before anything is written — and the undamaged archive still restores every row.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster, stopServerIn } from '../harness/cluster.js';
import { embeddedPgDir } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { queryAt } from '../harness/verify-cluster.js';
import { commitRows, type CommittedRow } from '../harness/workload.js';
import { crc32cUpdate } from '../../src/format/crc32c.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { ownedDir, runAsServerUser, SEG, until } from '../integration/wal-helpers.js';

const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };

/**
 * A whole record in the middle of a segment gets resource manager 100 (none on 10–18) and a CRC
 * that matches again; returns a function that puts the original bytes back.
 */
function resealRecordWithUnknownRmgr(path: string): () => void {
  const original = readFileSync(path);
  const b = Buffer.from(original);
  for (let page = SEG / 2; page < SEG; page += 8192) {
    const rem = b.readUInt32LE(page + 16);
    const off = (page + 24 + rem + 7) & ~7;
    if (rem > 4000 || off + 24 > page + 8192) continue;
    const tot = b.readUInt32LE(off);
    if (tot < 24 || off + tot > page + 8192) continue;
    b[off + 17] = 100;
    let crc = crc32cUpdate(0xffffffff, b, off + 24, off + tot);
    crc = (crc32cUpdate(crc, b, off, off + 20) ^ 0xffffffff) >>> 0;
    b.writeUInt32LE(crc, off + 20);
    writeFileSync(path, b);
    return () => writeFileSync(path, original);
  }
  throw new Error(`no whole record on one page in the second half of ${path}`);
}

/** Flip one byte of a file in place; returns a function that puts the original byte back. */
function flipByte(path: string, offset: number): () => void {
  const b = readFileSync(path);
  const original = b[offset]!;
  b[offset] = original ^ 0x5a;
  writeFileSync(path, b);
  return () => {
    const c = readFileSync(path);
    c[offset] = original;
    writeFileSync(path, c);
  };
}

describe.each([10, 17] as const)('a damaged archived WAL segment (PostgreSQL %i)', (major) => {
  let c: Cluster;
  let repo: string;
  let backupId: string;
  /** Rows committed after the backup, each followed by more than a segment of WAL. */
  const rows: CommittedRow[] = [];
  /** Complete segments archived after the backup's stop segment, in order. */
  let after: string[] = [];
  const targets: string[] = [];
  const tliDir = () => join(repo, 'wal', readdirSync(join(repo, 'wal')).find((n) => /^\d+$/.test(n))!, '00000001');

  const restore = async (name: string, extra: string[] = []) => {
    const target = join(testRoot(), `waldamage-${major}-${name}`);
    targets.push(target);
    registerForCleanup({ pgdata: target, dir: target });
    const port = await freePort();
    const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(major), 'bin'), ...extra], quiet);
    return { ...r, target, at: { host: c.socketDir, port } };
  };
  const ids = async (at: { host: string; port: number }) => (await queryAt<{ id: string }>(at, 'SELECT id::text FROM workload_rows ORDER BY id')).map((r) => Number(r.id));

  beforeAll(async () => {
    repo = ownedDir(`waldamage-repo-${major}`);
    c = await startCluster({ major, name: `waldamage${major}`, settings: { archive_mode: 'on', archive_command: archiveCommandLine({ repo }), max_wal_size: '1GB' } });
    await commitRows(c, 1);
    const b = await runCli(['backup', '--repo', repo, '--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'], quiet);
    if (b.code !== 0) throw new Error(`backup failed: ${b.stderr}`);
    backupId = readdirSync(join(repo, 'backups')).sort().at(-1)!;
    // Segments full of records (no switch padding): each row is followed by ~1.5 segments of WAL.
    await c.sql('CREATE TABLE filler (id int, f text)');
    for (let i = 0; i < 4; i++) {
      rows.push(...(await commitRows(c, 1)));
      await c.sql(`INSERT INTO filler SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 90000) g`);
      await new Promise((r) => setTimeout(r, 20));
    }
    rows.push(...(await commitRows(c, 1)));
    const [{ name }] = (await c.sql<{ name: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
    await c.sql('SELECT pg_switch_wal()');
    await until(`segment ${name} is archived`, () => existsSync(join(repo, 'wal')) && execFileSync('find', [join(repo, 'wal'), '-name', name], { encoding: 'utf8' }).trim() !== '', 90_000);
    const m = JSON.parse(readFileSync(join(repo, 'backups', backupId, 'manifest.json'), 'utf8')) as { walSegments: string[] };
    const lastOfBackup = m.walSegments.at(-1)!;
    after = readdirSync(tliDir()).filter((n) => /^[0-9A-F]{24}$/.test(n) && n > lastOfBackup).sort();
    if (after.length < 5) throw new Error(`expected at least 5 segments after the backup, got ${after.join(', ')}`);
  }, 240_000);
  afterAll(async () => {
    for (const t of targets) stopServerIn(major, t);
    await c?.destroy();
  });

  it('undamaged: verify --repo is OK and a restore without a target has every row', async () => {
    const v = await runCli(['verify', '--repo', repo], quiet);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const r = await restore('control');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('promoted, accepting connections');
    const got = await ids(r.at);
    for (const row of rows) expect(got).toContain(row.id);
    stopServerIn(major, r.target);
  });

  it('one byte flipped in the middle of a middle segment: named by verify, info, wal-fetch and restore; nothing promoted as success', async () => {
    const bad = after[2]!;
    // The first byte after a page header is always record data (a continuation or a record's start).
    const undo = flipByte(join(tliDir(), bad), SEG / 2 + 24);
    try {
      const v = await runCli(['verify', '--repo', repo], quiet);
      expect(v.code).not.toBe(0);
      expect(v.stdout + v.stderr).toContain(bad);

      const info = await runCli(['info', '--repo', repo], quiet);
      expect(info.code).toBe(1);
      expect(info.stdout).toContain(bad);
      expect(info.stdout).toMatch(/DAMAGED/);

      const dest = ownedDir(`waldamage-fetch-${major}`);
      const f = await runAsServerUser(['wal-fetch', '--repo', repo, bad, join(dest, 'RECOVERYXLOG')]);
      expect(f.code).toBeGreaterThan(125);
      expect(f.code).not.toBe(143); // 128 + SIGTERM: the server would take it for a shutdown
      expect(f.stderr).toContain(bad);
      expect(existsSync(join(dest, 'RECOVERYXLOG'))).toBe(false);

      const r = await restore('mid');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`stopped recovery: restore_command refused a file: archived WAL segment ${bad} in \\S+ is damaged: its records stop at offset`));
      expect(r.stderr).toMatch(/Put an intact copy of .* Nothing was promoted/);
      expect(r.stderr).not.toContain('promoted, accepting connections');
      stopServerIn(major, r.target);

      // A time target past the damage: refused before anything is written into the target.
      const past = await restore('mid-time', ['--target-time', new Date(rows.at(-1)!.commitTime.getTime() - 1).toISOString()]);
      expect(past.code).not.toBe(0);
      expect(past.stderr).toContain(bad);
      expect(existsSync(past.target)).toBe(false);
    } finally {
      undo();
    }
  });

  it('damage wal-fetch does not judge (a record re-sealed with a valid CRC but an unknown resource manager): replay ends early and the restore fails saying where', async () => {
    const bad = after[2]!;
    // Framing, CRC and xl_prev hold, so wal-fetch serves it; the server takes the record for the end of WAL.
    const undo = resealRecordWithUnknownRmgr(join(tliDir(), bad));
    try {
      const r = await restore('rmgr');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`recovery ended early: replay ended at [0-9A-F]+/[0-9A-F]+, in segment ${bad}; the archive holds WAL to`));
      expect(r.stderr).toMatch(/every transaction after .* is missing/);
      expect(r.stderr).not.toContain('promoted, accepting connections');
      stopServerIn(major, r.target);
      // With a target past it: 13+ stop with FATAL, 10–12 promote without reaching it — both fail.
      const t = await restore('rmgr-time', ['--target-time', new Date(rows.at(-1)!.commitTime.getTime() - 1).toISOString()]);
      expect(t.code).not.toBe(0);
      expect(t.stderr).not.toContain('promoted, accepting connections');
      if (major < 13) expect(t.stderr).toMatch(new RegExp(`did not reach the recovery target .*: the WAL ended first: replay ended at \\S+, in segment ${bad}`));
      stopServerIn(major, t.target);
    } finally {
      undo();
    }
  });

  it('one byte flipped in the last archived segment: the restore fails naming it', async () => {
    const bad = after.at(-1)!;
    // The last segment was switched: its records end early; flip the first byte after the long page header.
    const undo = flipByte(join(tliDir(), bad), 40);
    try {
      const v = await runCli(['verify', '--repo', repo], quiet);
      expect(v.code).not.toBe(0);
      expect(v.stdout + v.stderr).toContain(bad);
      const r = await restore('last');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(bad);
      expect(r.stderr).not.toContain('promoted, accepting connections');
      stopServerIn(major, r.target);
    } finally {
      undo();
    }
  });

  it("one byte flipped in a backup's own stored WAL: verify --repo and restore fail naming it", async () => {
    const walDir = join(repo, 'backups', backupId, 'files', 'wal');
    const stored = readdirSync(walDir).sort()[0]!;
    const undo = flipByte(join(walDir, stored), 4096 + 77);
    try {
      const v = await runCli(['verify', '--repo', repo], quiet);
      expect(v.code).not.toBe(0);
      expect(v.stdout + v.stderr).toContain(stored.replace(/\.lz4$/, ''));
      const r = await restore('own');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(stored.replace(/\.lz4$/, ''));
      expect(r.stderr).not.toContain('promoted, accepting connections');
      stopServerIn(major, r.target);
    } finally {
      undo();
    }
  });
});
