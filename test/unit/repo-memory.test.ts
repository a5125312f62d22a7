/**
 * The local repository (src/repo/) on the in-memory storage: init, backup directories, the
 * states of a backup, removal of interrupted ones, the lock, and RepoSink writing a backup —
 * with a full disk in the middle.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { decodeFrame, encodeFrame } from '../../src/format/lz4-frame.js';
import { loadKernels } from '../../src/format/kernels.js';
import { serializeManifest, type BackupManifest, type ManifestHead } from '../../src/format/backup-manifest.js';
import type { ItemHeader, ItemPlacement } from '../../src/item/item.js';
import { ManifestWriter } from '../../src/pipeline/manifest-writer.js';
import { assertRepository, createBackupDir, initRepository, listBackups, loadBackup, newestCompleteWithChain, removeInterruptedBackups } from '../../src/repo/catalog.js';
import { bundlePath, inProgressPath, manifestPath, REPO_MARKER, storedFilePath, storedLocation } from '../../src/repo/layout.js';
import { acquireRepoLock } from '../../src/repo/lock.js';
import { BUNDLE_FILE_MAX, BUNDLE_TARGET_BYTES, RepoSink } from '../../src/repo/repo-sink.js';
import { MemoryStorage } from '../../src/storage/memory.js';

const REPO = '/backup/pg';
const scratch: string[] = [];
afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

/** A pid that no process has any more. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid!;
}

async function refusal(p: Promise<unknown>): Promise<PgbaculaError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(PgbaculaError);
  return e as PgbaculaError;
}

function head(backupId: string): ManifestHead {
  return {
    format: 'pgbacula-backup-manifest', version: 1, backupId, mode: 'pitr', level: 'full', label: 'x',
    systemIdentifier: '7712450010997394938', pgVersion: '18.1', pgVersionNum: 180001, walSegmentSize: 16777216, blockSize: 8192,
    fromStandby: false, dataDirectory: '/var/lib/postgresql/18/main', startLsn: '0/2000028', stopLsn: '0/2000100', startTimeline: 1, stopTimeline: 1,
    startTime: '2026-11-26T12:00:00.000Z', stopTime: '2026-11-26T12:00:01.000Z', hashAlgorithm: 'xxh3-64', rangeSize: 8388608,
    pageVerification: 'passed', checksumFailures: 0, tablespaces: [], walSegments: [],
  };
}

function manifestOf(backupId: string): BackupManifest {
  return { ...head(backupId), files: [] };
}

async function repository(): Promise<MemoryStorage> {
  const s = new MemoryStorage();
  await s.makeDirs(REPO);
  await initRepository(REPO, s);
  return s;
}

/** A backup directory left in a given state. */
async function backupIn(s: MemoryStorage, id: string, state: 'complete' | 'marker' | 'bare' | 'bad-manifest', marker?: object): Promise<void> {
  const got = await createBackupDir(REPO, id, s);
  expect(got).toBe(id);
  if (state === 'complete') {
    await s.writeFileDurable(manifestPath(REPO, id), serializeManifest(manifestOf(id)));
    await s.removeFile(inProgressPath(REPO, id));
  } else if (state === 'bare') {
    // Files, no manifest, no marker: not something an interrupted pgbacula leaves.
    await s.removeFile(inProgressPath(REPO, id));
    await s.makeDirs(`${REPO}/backups/${id}/files`);
  } else if (state === 'bad-manifest') {
    await s.writeFileDurable(manifestPath(REPO, id), '{"not": "a manifest"}');
  }
  if (marker) await s.writeFileDurable(inProgressPath(REPO, id), JSON.stringify(marker));
}

describe('repository catalog on the memory storage', () => {
  it('init creates the marker and backups/; again is a no-op; concurrent inits make one marker; a directory of something else is refused', async () => {
    const s = new MemoryStorage();
    await s.makeDirs(REPO);
    await Promise.all([initRepository(REPO, s), initRepository(REPO, s), initRepository(REPO, s)]);
    expect((await s.list(REPO)).sort()).toEqual(['backups', REPO_MARKER]);
    const marker = (await s.readFile(`${REPO}/${REPO_MARKER}`)).toString();
    await initRepository(REPO, s);
    expect((await s.readFile(`${REPO}/${REPO_MARKER}`)).toString()).toBe(marker);
    await assertRepository(REPO, s);

    await s.makeDirs('/other');
    await s.writeFileDurable('/other/data.txt', 'x');
    const e = await refusal(initRepository('/other', s));
    expect(e.code).toBe('REPOSITORY');
    expect(e.message).toContain('is not a pgbacula repository and is not empty (data.txt…)');
    expect((await refusal(assertRepository('/other', s))).message).toContain(`no ${REPO_MARKER}`);
    expect((await refusal(initRepository('relative/path', s))).code).toBe('PARAM_INVALID');
  });

  it("a marker's temporary file left by a dead process neither blocks init nor stays", async () => {
    const s = new MemoryStorage();
    await s.makeDirs(REPO);
    const stale = `.${REPO_MARKER}.tmp-${deadPid()}-0000abcd`;
    const older = `${REPO_MARKER}.tmp-${deadPid()}-0000abce`;
    await s.writeFileDurable(`${REPO}/${stale}`, '{');
    await s.writeFileDurable(`${REPO}/${older}`, '{');
    await initRepository(REPO, s);
    expect((await s.list(REPO)).sort()).toEqual(['backups', REPO_MARKER]);
  });

  it('a full disk while the marker is written leaves no marker and no temporary', async () => {
    const s = new MemoryStorage();
    await s.makeDirs(REPO);
    s.failOn({ op: 'write', code: 'ENOSPC', path: REPO_MARKER });
    const e = await refusal(initRepository(REPO, s));
    expect(e.code).toBe('IO');
    expect(e.hint).toMatch(/file system of the repository is full/);
    expect(await s.list(REPO)).toEqual(['backups']);
    await initRepository(REPO, s);
    await assertRepository(REPO, s);
  });

  it('backup directories are claimed exclusively: the same second gives …F, …F-2, …F-10 in time order', async () => {
    const s = await repository();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await createBackupDir(REPO, '20261126-120000F', s));
    expect(ids.slice(0, 3)).toEqual(['20261126-120000F', '20261126-120000F-2', '20261126-120000F-3']);
    expect(new Set(ids).size).toBe(10);
    const marker = JSON.parse((await s.readFile(inProgressPath(REPO, ids[0]!))).toString()) as { pid: number; host: string };
    expect(marker).toMatchObject({ pid: process.pid, host: hostname() });
    expect((await listBackups(REPO, false, s)).map((b) => b.id).at(-1)).toBe('20261126-120000F-10');
  });

  it('states: complete, incomplete (dead writer), running (live writer, other host), damaged (no marker, bad manifest); only incomplete ones are removed', async () => {
    const s = await repository();
    await backupIn(s, '20261126-100000F', 'complete');
    await backupIn(s, '20261126-110000I', 'marker', { pid: deadPid(), host: hostname(), started: 'x' });
    await backupIn(s, '20261126-120000I', 'marker', { pid: process.ppid, host: hostname(), started: 'x' });
    await backupIn(s, '20261126-130000I', 'marker', { pid: deadPid(), host: 'elsewhere', started: 'x' });
    await backupIn(s, '20261126-140000I', 'bare');
    await backupIn(s, '20261126-150000I', 'bad-manifest');
    await s.makeDir(`${REPO}/backups/not-a-backup-id`);
    const states = await listBackups(REPO, true, s);
    expect(states.map((b) => [b.id, b.state])).toEqual([
      ['20261126-100000F', 'complete'],
      ['20261126-110000I', 'incomplete'],
      ['20261126-120000I', 'running'],
      ['20261126-130000I', 'running'],
      ['20261126-140000I', 'damaged'],
      ['20261126-150000I', 'damaged'],
    ]);
    const byId = new Map(states.map((b) => [b.id, b]));
    expect(byId.get('20261126-130000I')).toMatchObject({ reason: expect.stringContaining('on host elsewhere') });
    expect(byId.get('20261126-150000I')).toMatchObject({ reason: expect.stringContaining('manifest.json is damaged') });
    const complete = byId.get('20261126-100000F');
    expect(complete?.state === 'complete' && complete.storedBytes).toBe((await s.readFile(manifestPath(REPO, '20261126-100000F'))).length);

    expect(await removeInterruptedBackups(REPO, s)).toEqual(['20261126-110000I']);
    expect(await s.exists(`${REPO}/backups/20261126-110000I`)).toBe(false);
    expect((await listBackups(REPO, false, s)).length).toBe(5);

    expect((await loadBackup(REPO, undefined, s)).backupId).toBe('20261126-100000F');
    expect((await refusal(loadBackup(REPO, '20261126-150000I', s))).message).toMatch(/is damaged/);
    expect((await refusal(loadBackup(REPO, '20990101-000000F', s))).message).toMatch(/no backup 20990101-000000F/);
  });

  it('newestCompleteWithChain reads the newest accepted backup, its chain and what is newer — no other manifest', async () => {
    const s = await repository();
    const put = async (id: string, m: Partial<BackupManifest>) => {
      await createBackupDir(REPO, id, s);
      await s.writeFileDurable(manifestPath(REPO, id), serializeManifest({ ...manifestOf(id), ...m }));
      await s.removeFile(inProgressPath(REPO, id));
    };
    const ref = (backupId: string) => ({ reference: { backupId, startLsn: '0/2000028', timeline: 1 } });
    await put('20261126-080000F', { mode: 'pitr_block' });
    await put('20261126-090000F', { mode: 'pitr_block' });
    await put('20261126-100000I', { mode: 'pitr_block', level: 'incremental', ...ref('20261126-090000F') });
    await put('20261126-110000I', { mode: 'pitr_block', level: 'incremental', ...ref('20261126-100000I') });
    await backupIn(s, '20261126-113000I', 'bad-manifest');
    await put('20261126-120000F', { mode: 'dump' });
    const read = vi.spyOn(s, 'readFile');
    const physical = (m: BackupManifest) => m.mode === 'pitr_block';
    const got = await newestCompleteWithChain(REPO, physical, s);
    expect(got.map((m) => m.backupId)).toEqual(['20261126-090000F', '20261126-100000I', '20261126-110000I', '20261126-120000F']);
    const manifestsRead = read.mock.calls.map(([p]) => String(p)).filter((p) => p.endsWith('manifest.json'));
    expect(manifestsRead.some((p) => p.includes('20261126-080000F'))).toBe(false);
    // A differential counts from the newest full one: the incrementals are read on the way, not its chain.
    const fulls = await newestCompleteWithChain(REPO, (m) => physical(m) && m.level === 'full', s);
    expect(fulls.map((m) => m.backupId)).toEqual(['20261126-090000F', '20261126-100000I', '20261126-110000I', '20261126-120000F']);
    // A chain with a link missing is given as far as it goes (the chain check then refuses it).
    await s.removeFile(manifestPath(REPO, '20261126-100000I'));
    expect((await newestCompleteWithChain(REPO, physical, s)).map((m) => m.backupId)).toEqual(['20261126-110000I', '20261126-120000F']);
    // None accepted: every complete backup, so the caller's choice says there is none.
    expect(await newestCompleteWithChain(REPO, () => false, s)).toHaveLength(4);
    read.mockRestore();
  });

  it('a backup directory killed while its marker was being written: running while the writer lives, then incomplete and removed', async () => {
    const s = new MemoryStorage();
    await initRepository(REPO, s);
    const tmp = (id: string, pid: number) => `${REPO}/backups/${id}/.backup.in-progress.tmp-${pid}-0000beef`;
    await s.makeDir(`${REPO}/backups/20261203-170000F`, { mode: 0o750 }); // killed right after mkdir
    await s.makeDir(`${REPO}/backups/20261203-170001F`, { mode: 0o750 });
    await s.writeFileDurable(tmp('20261203-170001F', deadPid()), '{}', { mode: 0o640 }); // killed before the rename
    await s.makeDir(`${REPO}/backups/20261203-170002F`, { mode: 0o750 });
    await s.writeFileDurable(tmp('20261203-170002F', process.ppid), '{}', { mode: 0o640 }); // still being written
    await s.makeDir(`${REPO}/backups/20261203-170003F`, { mode: 0o750 });
    await s.writeFileDurable(`${REPO}/backups/20261203-170003F/something-else`, 'x', { mode: 0o640 }); // not ours: damaged
    const states = Object.fromEntries((await listBackups(REPO, false, s)).map((b) => [b.id, b.state]));
    expect(states).toEqual({ '20261203-170000F': 'incomplete', '20261203-170001F': 'incomplete', '20261203-170002F': 'running', '20261203-170003F': 'damaged' });
    expect(await removeInterruptedBackups(REPO, s)).toEqual(['20261203-170000F', '20261203-170001F']);
    expect(await s.exists(`${REPO}/backups/20261203-170003F/something-else`)).toBe(true);
    // A removal killed half-way left its renamed directory: never listed, deleted by the next run.
    await s.makeDirs(`${REPO}/backups/.removing-20261203-170000F-4242/files/pgdata`);
    expect((await listBackups(REPO, false, s)).map((b) => b.id)).not.toContain('.removing-20261203-170000F-4242');
    await removeInterruptedBackups(REPO, s);
    expect(await s.exists(`${REPO}/backups/.removing-20261203-170000F-4242`)).toBe(false);
  });

  it('the lock: one holder; a live holder refuses; a dead holder is taken over; release removes only our own', async () => {
    const s = await repository();
    await s.writeFileDurable(`${REPO}/lock`, `${process.ppid}\n`);
    expect((await refusal(acquireRepoLock(REPO, s))).message).toContain(`in use by process ${process.ppid}`);
    await s.writeFileDurable(`${REPO}/lock`, `${deadPid()}\n`);
    const release = await acquireRepoLock(REPO, s);
    expect((await s.readFile(`${REPO}/lock`)).toString()).toBe(`${process.pid}\n`);
    await release();
    expect(await s.exists(`${REPO}/lock`)).toBe(false);
  });
});

describe('RepoSink on the memory storage', () => {
  const dir: ItemHeader = { path: 'pgdata/base', type: 'dir', mode: 0o700, mtimeMs: 0, size: 0, encoding: 'raw' };
  const raw: ItemHeader = { path: 'pgdata/PG_VERSION', type: 'file', mode: 0o600, mtimeMs: 0, size: 3, encoding: 'raw' };
  const lz4: ItemHeader = { path: 'pgdata/base/1259', type: 'file', mode: 0o600, mtimeMs: 0, size: 16384, encoding: 'lz4' };
  const link: ItemHeader = { path: 'pgdata/pg_tblspc/16384', type: 'symlink', mode: 0o777, mtimeMs: 0, size: 0, linkTarget: '/ts', encoding: 'raw' };
  const trailer = { hash: 'h', rawSize: 0, storedSize: 0 };

  async function writeItems(sink: RepoSink, page: Uint8Array): Promise<void> {
    await sink.open();
    await sink.begin(dir);
    await sink.end(trailer);
    await sink.begin(raw);
    await sink.write(Buffer.from('18\n'));
    await sink.end(trailer);
    await sink.begin(lz4);
    // The frame header and end come from the sink; blocks in between are the encoder's output.
    const frame = encodeFrame(page, loadKernels());
    await sink.write(frame.subarray(7, frame.length - 4));
    await sink.end(trailer);
    await sink.begin(link);
    await sink.end(trailer);
  }

  it('writes a backup whose manifest seals it: complete, files readable, marker gone', async () => {
    const s = await repository();
    const id = await createBackupDir(REPO, '20261126-120000F', s);
    const sink = new RepoSink(REPO, id, s);
    const page = new Uint8Array(16384).fill(7);
    await writeItems(sink, page);
    const spool = mkdtempSync(join(tmpdir(), 'pgbacula-repo-mem-'));
    scratch.push(spool);
    const writer = new ManifestWriter(join(spool, 'entries'), s);
    writer.add({ path: 'pgdata/PG_VERSION', type: 'file', size: 3, mode: 0o600, mtime: '2026-11-26T12:00:00.000Z', hash: 'h', stored: 'raw', storedSize: 3 });
    await writer.finish(head(id), sink.manifestTempPath);
    expect((await listBackups(REPO, false, s))[0]!.state).toBe('incomplete');
    await sink.commit();

    const [b] = await listBackups(REPO, false, s);
    expect(b).toMatchObject({ id, state: 'complete' });
    expect(b!.state === 'complete' && b!.manifest.files.map((f) => f.path)).toEqual(['pgdata/PG_VERSION']);
    expect(await s.exists(inProgressPath(REPO, id))).toBe(false);
    expect((await s.readFile(storedFilePath(REPO, id, raw.path, 'raw'))).toString()).toBe('18\n');
    expect(decodeFrame(await s.readFile(storedFilePath(REPO, id, lz4.path, 'lz4')), loadKernels())).toEqual(page);
    expect(await s.stat(storedFilePath(REPO, id, dir.path, 'raw'))).toMatchObject({ kind: 'directory' });
    expect(await s.exists(storedFilePath(REPO, id, link.path, 'raw'))).toBe(false); // links live in the manifest only
    expect(s.paths().filter((p) => p.includes('.tmp-'))).toEqual([]);
    expect(sink.storedBytes).toBe(3 + (await s.readFile(storedFilePath(REPO, id, lz4.path, 'lz4'))).length);
  });

  it('a full disk in the middle of a file: an I/O error naming the file and the fix; the backup stays incomplete and the next run removes it', async () => {
    const s = await repository();
    const id = await createBackupDir(REPO, '20261126-120000F', s);
    const sink = new RepoSink(REPO, id, s);
    s.failOn({ op: 'write', nth: 2, code: 'ENOSPC', path: 'PG_VERSION' });
    await sink.open();
    await sink.begin(raw);
    await sink.write(Buffer.from('1'));
    const e = await refusal(sink.write(Buffer.from('8\n')));
    expect(e.code).toBe('IO');
    expect(e.message).toContain(`cannot write ${storedFilePath(REPO, id, raw.path, 'raw')}: no space left on device (ENOSPC)`);
    expect(e.hint).toMatch(/is full: free space there/);
    await sink.abort();
    expect(await s.exists(manifestPath(REPO, id))).toBe(false);
    expect((await listBackups(REPO, false, s))[0]).toMatchObject({ id, state: 'incomplete' });
    expect(await removeInterruptedBackups(REPO, s)).toEqual([id]);
  });

  it('a full disk while the manifest is written: the backup is never complete', async () => {
    const s = await repository();
    const id = await createBackupDir(REPO, '20261126-120000F', s);
    const sink = new RepoSink(REPO, id, s);
    await writeItems(sink, new Uint8Array(16384));
    const spool = mkdtempSync(join(tmpdir(), 'pgbacula-repo-mem-'));
    scratch.push(spool);
    const writer = new ManifestWriter(join(spool, 'entries'), s);
    s.failOn({ op: 'write', code: 'ENOSPC', path: 'manifest.json' });
    await expect(writer.finish(head(id), sink.manifestTempPath)).rejects.toMatchObject({ code: 'ENOSPC' });
    // The job stops there (no commit): the backup stays incomplete, for the next run to remove.
    await sink.abort();
    expect(await s.exists(manifestPath(REPO, id))).toBe(false);
    expect((await listBackups(REPO, false, s))[0]).toMatchObject({ state: 'incomplete' });
    // Even sealed by mistake, the half-written manifest would never pass for complete.
    await sink.commit();
    expect((await listBackups(REPO, false, s))[0]).toMatchObject({ state: 'damaged' });
  });
});

describe('RepoSink with bundles', () => {
  const file = (path: string, size: number, encoding: 'raw' | 'lz4' = 'raw'): ItemHeader => ({ path, type: 'file', mode: 0o600, mtimeMs: 0, size, encoding });
  const trailer = { hash: 'h', rawSize: 0, storedSize: 0 };

  it('stores the small files of the cluster one after another, says where, and keeps WAL, labels and larger files under their names', async () => {
    const s = await repository();
    const id = await createBackupDir(REPO, '20261126-120000F', s);
    const sink = new RepoSink(REPO, id, s, { bundle: true });
    await sink.open();
    const page = new Uint8Array(8192).fill(3);
    const frame = encodeFrame(page, loadKernels());
    const items: [ItemHeader, Uint8Array][] = [
      [file('pgdata/PG_VERSION', 3), Buffer.from('18\n')],
      [file('pgdata/base/5/1259', 8192, 'lz4'), frame.subarray(7, frame.length - 4)],
      [file('pgdata/base/5/empty', 0), new Uint8Array(0)],
      [file('tablespaces/16384/PG_18_202406281/5/16385', 5), Buffer.from('hello')],
      [file('pgdata/base/5/big', BUNDLE_FILE_MAX + 1), new Uint8Array(BUNDLE_FILE_MAX + 1).fill(1)],
      [file('wal/000000010000000000000002', 4), Buffer.from('wal!')],
      [file('backup_label', 6), Buffer.from('label\n')],
    ];
    const placed: (ItemPlacement | void)[] = [];
    for (const [h, data] of items) {
      await sink.begin(h);
      if (data.length) await sink.write(data);
      placed.push(await sink.end(trailer));
    }
    expect(placed.map((p) => p?.bundle)).toEqual([
      { id: 0, offset: 0, length: 3 },
      { id: 0, offset: 3, length: frame.length },
      { id: 0, offset: 3 + frame.length, length: 0 },
      { id: 0, offset: 3 + frame.length, length: 5 },
      undefined,
      undefined,
      undefined,
    ]);
    expect(sink.bundledFiles).toBe(4);
    const spool = mkdtempSync(join(tmpdir(), 'pgbacula-repo-mem-'));
    scratch.push(spool);
    const writer = new ManifestWriter(join(spool, 'entries'), s);
    await writer.finish(head(id), sink.manifestTempPath);
    await sink.commit();
    const b = await s.readFile(bundlePath(REPO, id, 0));
    expect(b.length).toBe(3 + frame.length + 5);
    const at = (i: number) => storedLocation(REPO, id, { path: items[i]![0].path, type: 'file', size: 0, mode: 0, mtime: '', stored: items[i]![0].encoding, ...(placed[i]?.bundle ? { bundle: placed[i]!.bundle } : {}) });
    const region = (i: number) => { const r = at(i).region!; return b.subarray(r.offset, r.offset + r.length); };
    expect(region(0).toString()).toBe('18\n');
    expect(decodeFrame(region(1), loadKernels())).toEqual(page);
    expect(region(3).toString()).toBe('hello');
    expect(at(4)).toEqual({ storedPath: storedFilePath(REPO, id, 'pgdata/base/5/big', 'raw') });
    expect((await s.readFile(storedFilePath(REPO, id, 'wal/000000010000000000000002', 'raw'))).toString()).toBe('wal!');
    expect(await s.exists(storedFilePath(REPO, id, 'pgdata/PG_VERSION', 'raw'))).toBe(false);
    expect(sink.storedBytes).toBe(b.length + BUNDLE_FILE_MAX + 1 + 4 + 6);
  });

  it('begins the next bundle once one holds the target size', async () => {
    const s = await repository();
    const id = await createBackupDir(REPO, '20261126-120000F', s);
    const sink = new RepoSink(REPO, id, s, { bundle: true });
    await sink.open();
    const chunk = new Uint8Array(BUNDLE_FILE_MAX);
    const perBundle = BUNDLE_TARGET_BYTES / BUNDLE_FILE_MAX;
    const ids: number[] = [];
    for (let i = 0; i < perBundle + 2; i++) {
      await sink.begin(file(`pgdata/base/5/${16384 + i}`, chunk.length));
      await sink.write(chunk);
      ids.push((await sink.end(trailer))!.bundle!.id);
    }
    expect(ids.filter((x) => x === 0).length).toBe(perBundle);
    expect(ids.slice(perBundle)).toEqual([1, 1]);
    await sink.commit().catch(() => undefined);
    expect((await s.readFile(bundlePath(REPO, id, 0))).length).toBe(BUNDLE_TARGET_BYTES);
  });

  it('a full disk in the middle of a bundle: an I/O error naming the bundle, when its buffered bytes go out; the backup stays incomplete', async () => {
    const s = await repository();
    const id = await createBackupDir(REPO, '20261126-120000F', s);
    const sink = new RepoSink(REPO, id, s, { bundle: true });
    await sink.open();
    s.failOn({ op: 'write', code: 'ENOSPC', path: '/bundles/0' });
    await sink.begin(file('pgdata/PG_VERSION', 3));
    await sink.write(Buffer.from('18\n'));
    await sink.end(trailer);
    // Small files are gathered in memory: the write that fails is the one that flushes them.
    const e = await refusal(sink.commit());
    expect(e.code).toBe('IO');
    expect(e.message).toContain(`cannot write ${bundlePath(REPO, id, 0)}: no space left on device (ENOSPC)`);
    await sink.abort();
    expect(await s.exists(manifestPath(REPO, id))).toBe(false);
    expect((await listBackups(REPO, false, s))[0]).toMatchObject({ id, state: 'incomplete' });
  });

  it('a bundle larger than its write buffer goes out in order, byte for byte', async () => {
    const s = await repository();
    const id = await createBackupDir(REPO, '20261126-120000F', s);
    const sink = new RepoSink(REPO, id, s, { bundle: true });
    await sink.open();
    const parts: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const data = Buffer.alloc(100_000 + i * 1000, i + 1);
      parts.push(data);
      await sink.begin(file(`pgdata/base/5/${16384 + i}`, data.length));
      await sink.write(data.subarray(0, 10));
      await sink.write(data.subarray(10));
      await sink.end(trailer);
    }
    await sink.commit().catch(() => undefined);
    expect(Buffer.compare(await s.readFile(bundlePath(REPO, id, 0)), Buffer.concat(parts))).toBe(0);
  });
});
