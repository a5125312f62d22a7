/**
 * A restore's reading side on the in-memory storage: which backup of a repository a restore starts
 * from (never an incomplete or damaged one, never one that ends after the target) and the check of
 * that backup's own WAL before anything is laid down. Laying files down into a data directory and
 * starting the server are the user's places (src/os) and run against real servers in
 * test/integration and test/faults.
 */
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { checkBackupWal } from '../../src/archive/archive-check.js';
import { PgbaculaError } from '../../src/errors.js';
import { hashContent } from '../../src/format/content-hash.js';
import { loadKernels } from '../../src/format/kernels.js';
import { serializeManifest, type BackupManifest, type ManifestFile } from '../../src/format/backup-manifest.js';
import { createBackupDir, initRepository, loadBackup } from '../../src/repo/catalog.js';
import { inProgressPath, manifestPath, storedFilePath } from '../../src/repo/layout.js';
import { chooseBaseBackup } from '../../src/restore/repo-restore.js';
import { MemoryStorage } from '../../src/storage/memory.js';
import { SYNTH_SEG, WalWriter } from './wal-synth.js';

const REPO = '/backup/pg';
const SYS = 7311887020705307463n;

function manifest(backupId: string, stop: string, stopLsn: string, extra: Partial<BackupManifest> = {}): BackupManifest {
  return {
    format: 'pgbacula-backup-manifest', version: 1, backupId, mode: 'pitr', level: 'full', label: 'x',
    systemIdentifier: SYS.toString(), pgVersion: '18.1', pgVersionNum: 180001, walSegmentSize: SYNTH_SEG, blockSize: 8192,
    fromStandby: false, dataDirectory: '/var/lib/postgresql/18/main', startLsn: '0/300028', stopLsn, startTimeline: 1, stopTimeline: 1,
    startTime: stop, stopTime: stop, hashAlgorithm: 'xxh3-64', rangeSize: 8388608,
    pageVerification: 'passed', checksumFailures: 0, tablespaces: [], walSegments: [], files: [],
    ...extra,
  };
}

async function repository(): Promise<MemoryStorage> {
  const s = new MemoryStorage();
  await s.makeDirs(REPO);
  await initRepository(REPO, s);
  return s;
}

/** A sealed backup: its directory, its stored files, its manifest, no in-progress marker. */
async function sealed(s: MemoryStorage, m: BackupManifest, stored: ReadonlyMap<string, Uint8Array> = new Map()): Promise<void> {
  expect(await createBackupDir(REPO, m.backupId, s)).toBe(m.backupId);
  for (const [path, bytes] of stored) {
    const at = storedFilePath(REPO, m.backupId, path, 'raw');
    await s.makeDirs(at.slice(0, at.lastIndexOf('/')));
    await s.writeFileDurable(at, bytes);
  }
  await s.writeFileDurable(manifestPath(REPO, m.backupId), serializeManifest(m));
  await s.removeFile(inProgressPath(REPO, m.backupId));
}

async function refusal(p: Promise<unknown>): Promise<PgbaculaError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(PgbaculaError);
  return e as PgbaculaError;
}

describe('choosing the base backup of a restore, on the memory storage', () => {
  async function threeBackups(): Promise<MemoryStorage> {
    const s = await repository();
    await sealed(s, manifest('20261126-100000F', '2026-11-26T10:00:05.000Z', '0/3000100'));
    await sealed(s, manifest('20261126-110000F', '2026-11-26T11:00:05.000Z', '0/5000100'));
    // Later ones that must never be chosen: interrupted (its writer is gone) and damaged.
    expect(await createBackupDir(REPO, '20261126-120000F', s)).toBe('20261126-120000F');
    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    await s.writeFileDurable(inProgressPath(REPO, '20261126-120000F'), JSON.stringify({ pid: gone, host: hostname(), started: 'x' }));
    expect(await createBackupDir(REPO, '20261126-130000F', s)).toBe('20261126-130000F');
    await s.writeFileDurable(manifestPath(REPO, '20261126-130000F'), '{"not": "a manifest"}');
    await s.removeFile(inProgressPath(REPO, '20261126-130000F'));
    return s;
  }

  it('takes the latest complete backup that ends before a time or LSN target, the latest without one', async () => {
    const s = await threeBackups();
    expect((await chooseBaseBackup(REPO, undefined, undefined, s)).backupId).toBe('20261126-110000F');
    expect((await chooseBaseBackup(REPO, { kind: 'time', value: '2026-11-26 10:30:00+00' }, undefined, s)).backupId).toBe('20261126-100000F');
    expect((await chooseBaseBackup(REPO, { kind: 'time', value: '2026-11-26 23:00:00+00' }, undefined, s)).backupId).toBe('20261126-110000F');
    expect((await chooseBaseBackup(REPO, { kind: 'lsn', value: '0/4000000' }, undefined, s)).backupId).toBe('20261126-100000F');
    expect((await chooseBaseBackup(REPO, { kind: 'xid', value: '4711' }, undefined, s)).backupId).toBe('20261126-110000F');
  });

  it('refuses a target before every backup, and a repository with no complete backup, saying what to do', async () => {
    const s = await threeBackups();
    const early = await refusal(chooseBaseBackup(REPO, { kind: 'time', value: '2026-11-26 09:00:00+00' }, undefined, s));
    expect(early.code).toBe('RESTORE_PRECHECK');
    expect(early.message).toContain('the earliest ends at 2026-11-26T10:00:05.000Z');
    expect(early.hint).toMatch(/later target/);

    const empty = await repository();
    const none = await refusal(chooseBaseBackup(REPO, undefined, undefined, empty));
    expect(none.code).toBe('REPOSITORY');
    expect(none.message).toContain(`repository ${REPO} holds no complete backup`);
  });
});

describe("the chosen backup's own WAL, checked before the lay-down, on the memory storage", () => {
  /** A backup carrying three segments of real records (the last one ends at the stop point). */
  async function withWal(): Promise<{ s: MemoryStorage; m: BackupManifest }> {
    const s = await repository();
    const w = new WalWriter({ systemId: SYS, timeline: 1 }, 3n);
    let xid = 1000;
    while (w.pos < 5n * BigInt(SYNTH_SEG) + 4096n) w.blockRecord(xid++, 300);
    const segments = [...w.files()].slice(0, 3);
    const kernels = loadKernels();
    const files: ManifestFile[] = segments.map(([name, bytes]) => ({
      path: `wal/${name}`, type: 'file', size: bytes.length, mode: 0o600, mtime: '2026-11-26T10:00:05.000Z',
      hash: hashContent(bytes, 8388608, (b) => kernels.hash(b)), stored: 'raw', storedSize: bytes.length,
    }));
    const m = manifest('20261126-100000F', '2026-11-26T10:00:05.000Z', '0/5001000', { walSegments: segments.map(([n]) => n), files });
    await sealed(s, m, new Map(segments.map(([name, bytes]) => [`wal/${name}`, bytes])));
    return { s, m: await loadBackup(REPO, m.backupId, s) };
  }

  it('finds nothing wrong with intact WAL', async () => {
    const { s, m } = await withWal();
    expect(m.walSegments).toHaveLength(3);
    expect(await checkBackupWal(REPO, m, s)).toEqual([]);
  });

  it('names a missing segment and an altered one, with where they are stored', async () => {
    const { s, m } = await withWal();
    const [first, second] = m.walSegments;
    await s.removeFile(storedFilePath(REPO, m.backupId, `wal/${first}`, 'raw'));
    const path = storedFilePath(REPO, m.backupId, `wal/${second}`, 'raw');
    const bytes = await s.readFile(path);
    bytes[20000] = bytes[20000]! ^ 0xff;
    await s.writeFileDurable(path, bytes);
    const damaged = await checkBackupWal(REPO, m, s);
    expect(damaged.map((d) => d.name)).toEqual([first, second]);
    expect(damaged[0]!.problem).toMatch(/cannot be read/);
    expect(damaged[1]!.path).toBe(path);
    expect(damaged[1]!.problem).not.toMatch(/cannot be read/);
  });
});
