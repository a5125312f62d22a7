/**
 * The WAL archive (src/archive/) on the in-memory storage: push, fetch, listing, window, and a
 * full disk in the middle of a write — without touching the file system.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { sweepDeadTemporaries } from '../../src/archive/archive-io.js';
import { PgbaculaError } from '../../src/errors.js';
import { readArchiveMeta } from '../../src/archive/archive-meta.js';
import { dataDirectorySystemId } from '../../src/archive/data-directory.js';
import { fetchWalFile } from '../../src/archive/fetch.js';
import { storeHistoryFile } from '../../src/archive/history-files.js';
import { listArchivedSystems, listWalArchive } from '../../src/archive/listing.js';
import { publishReceivedFile } from '../../src/archive/publish-received.js';
import { pushWalFile } from '../../src/archive/push.js';
import { windowReport } from '../../src/archive/window-report.js';
import { MemoryStorage } from '../../src/storage/memory.js';
import { parseLsn } from '../../src/wal/lsn.js';
import { headerOnlySegment, SYNTH_SEG, WalWriter } from './wal-synth.js';

const SYS = 7311887020705307463n;
const ID = SYS.toString();
const A1 = { systemId: SYS, timeline: 1 };
const ROOT = '/spool';

async function store(): Promise<MemoryStorage> {
  const s = new MemoryStorage();
  await s.makeDirs('/src');
  await s.makeDirs('/pgdata/pg_wal');
  await s.makeDirs('/pgdata/global');
  return s;
}

async function put(s: MemoryStorage, name: string, bytes: Uint8Array, dir = '/src'): Promise<string> {
  await s.makeDirs(dir);
  await s.writeFileDurable(`${dir}/${name}`, bytes);
  return `${dir}/${name}`;
}

async function refusal(p: Promise<unknown>): Promise<PgbaculaError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(PgbaculaError);
  return e as PgbaculaError;
}

const temporaries = (s: MemoryStorage): string[] => s.paths().filter((p) => p.includes('.tmp-'));

describe('wal-push on the memory storage', () => {
  it('stores a segment under <sysid>/<TLI>/, records the archive facts; an identical copy is ok, different bytes are refused', async () => {
    const s = await store();
    const seg = headerOnlySegment(A1, 3n, 1);
    const r = await pushWalFile({ root: ROOT, sourcePath: await put(s, '000000010000000000000003', seg), storage: s });
    expect(r).toMatchObject({ status: 'stored', systemId: ID, timeline: 1, bytes: SYNTH_SEG, path: `${ROOT}/${ID}/00000001/000000010000000000000003` });
    expect(Buffer.from(seg).equals(await s.readFile(r.path))).toBe(true);
    expect(await readArchiveMeta(ROOT, ID, s)).toMatchObject({ systemIdentifier: ID, walSegmentSize: SYNTH_SEG, pgMajor: 18 });
    expect((await pushWalFile({ root: ROOT, sourcePath: '/src/000000010000000000000003', storage: s })).status).toBe('identical');

    const other = await put(s, '000000010000000000000003', headerOnlySegment(A1, 3n, 2), '/other');
    const e = await refusal(pushWalFile({ root: ROOT, sourcePath: other, storage: s }));
    expect(e.code).toBe('WAL_CONFLICT');
    expect(e.message).toMatch(/already archived .* with different content/);
    expect(Buffer.from(seg).equals(await s.readFile(r.path))).toBe(true);
    expect(temporaries(s)).toEqual([]);
  });

  it('history files: WAL of timeline 2 is refused without its history, archived after it when pg_wal has it', async () => {
    const s = await store();
    const A2 = { systemId: SYS, timeline: 2 };
    const seg = await put(s, '00000002000000000000000A', headerOnlySegment(A2, 10n));
    const e = await refusal(pushWalFile({ root: ROOT, sourcePath: seg, expectedSystemId: ID, storage: s }));
    expect(e.code).toBe('WAL_GAP');
    await s.writeFileDurable('/pgdata/pg_wal/00000002.history', '1\t0/9000110\tno recovery target specified\n');
    const r = await pushWalFile({ root: ROOT, sourcePath: seg, expectedSystemId: ID, pgdata: '/pgdata', storage: s });
    expect(r.historiesArchived).toEqual(['00000002.history']);
    expect((await s.readFile(`${ROOT}/${ID}/00000002.history`)).toString()).toContain('0/9000110');
    // Stored again from the server (wal-receive): identical is fine, another history is refused.
    expect((await storeHistoryFile(ROOT, ID, 2, Buffer.from('1\t0/9000110\tno recovery target specified\n'), 'test', s)).status).toBe('identical');
    expect((await refusal(storeHistoryFile(ROOT, ID, 2, Buffer.from('1\t0/A000000\tother\n'), 'test', s))).code).toBe('WAL_CONFLICT');
  });

  it('a different .partial under an existing name is kept aside', async () => {
    const s = await store();
    await pushWalFile({ root: ROOT, sourcePath: await put(s, '000000010000000000000009.partial', headerOnlySegment(A1, 9n, 1)), storage: s });
    const r = await pushWalFile({ root: ROOT, sourcePath: await put(s, '000000010000000000000009.partial', headerOnlySegment(A1, 9n, 2), '/b'), storage: s });
    expect(r.status).toBe('kept-aside');
    expect(r.path).toMatch(new RegExp(`^${ROOT}/${ID}/aside/000000010000000000000009\\.partial\\.[0-9a-f]{16}$`));
  });

  it('a full disk in the middle of writing a segment leaves no file under its name and no temporary; the retry stores it', async () => {
    const s = await store();
    await pushWalFile({ root: ROOT, sourcePath: await put(s, '000000010000000000000001', headerOnlySegment(A1, 1n)), storage: s });
    const src = await put(s, '000000010000000000000002', headerOnlySegment(A1, 2n));
    s.failOn({ op: 'write', code: 'ENOSPC', path: '000000010000000000000002' });
    const e = await refusal(pushWalFile({ root: ROOT, sourcePath: src, storage: s }));
    expect(e.code).toBe('IO');
    expect(e.message).toMatch(/cannot store 000000010000000000000002 .*no space left on device/);
    expect(e.hint).toMatch(/file system of the archive is full/);
    expect(await s.exists(`${ROOT}/${ID}/00000001/000000010000000000000002`)).toBe(false);
    expect(temporaries(s)).toEqual([]);
    expect((await pushWalFile({ root: ROOT, sourcePath: src, storage: s })).status).toBe('stored');
  });

  it('a full disk while archive.json is written leaves no archive.json and no temporary', async () => {
    const s = await store();
    s.failOn({ op: 'write', code: 'ENOSPC', path: 'archive.json' });
    const e = await refusal(pushWalFile({ root: ROOT, sourcePath: await put(s, '000000010000000000000001', headerOnlySegment(A1, 1n)), storage: s }));
    expect(e.message).toMatch(/cannot write .*archive\.json/);
    expect(await s.exists(`${ROOT}/${ID}/archive.json`)).toBe(false);
    expect(temporaries(s)).toEqual([]);
  });

  it('publishes a segment wal-receive completed by linking it; the source name goes', async () => {
    const s = await store();
    const rdir = `${ROOT}/${ID}/.receive`;
    const path = await put(s, '000000010000000000000005', headerOnlySegment(A1, 5n), rdir);
    const r = await publishReceivedFile(ROOT, ID, path, { segmentSize: SYNTH_SEG, magic: 0xd118 }, s);
    expect(r).toEqual({ status: 'stored', path: `${ROOT}/${ID}/00000001/000000010000000000000005` });
    expect(await s.exists(path)).toBe(false);
    const again = await put(s, '000000010000000000000005', headerOnlySegment(A1, 5n), rdir);
    expect((await publishReceivedFile(ROOT, ID, again, { segmentSize: SYNTH_SEG, magic: 0xd118 }, s)).status).toBe('identical');
    expect(await s.exists(again)).toBe(false);
  });

  it('reads which system a data directory is from its pg_control', async () => {
    const s = await store();
    const ctl = Buffer.alloc(8192);
    ctl.writeBigUInt64LE(SYS, 0);
    ctl.writeUInt32LE(1800, 8);
    await s.writeFileDurable('/pgdata/global/pg_control', ctl);
    expect(await dataDirectorySystemId('/pgdata', s)).toBe(ID);
    expect(await dataDirectorySystemId('/nothing', s)).toBeUndefined();
    ctl.writeUInt32LE(942, 8);
    await s.writeFileDurable('/pgdata/global/pg_control', ctl);
    expect((await refusal(dataDirectorySystemId('/pgdata', s))).code).toBe('PARAM_INVALID');
  });
});

describe('wal-fetch, listing and window on the memory storage', () => {
  /** Three segments of records with a commit in the last, a backup in the first, a history file and a .partial. */
  async function archive(): Promise<{ s: MemoryStorage; commitAt: Date; names: string[] }> {
    const s = await store();
    const w = new WalWriter(A1, 1n);
    const commitAt = new Date('2026-11-26T12:00:05.000Z');
    let xid = 1000;
    while (w.pos < 3n * BigInt(SYNTH_SEG) + 4096n) w.blockRecord(xid++, 300);
    w.commit(xid++, commitAt);
    while (w.pos < 4n * BigInt(SYNTH_SEG) + 1000n) w.blockRecord(xid++, 300);
    const files = [...w.files()].slice(0, 3);
    for (const [name, bytes] of files) await pushWalFile({ root: ROOT, sourcePath: await put(s, name, bytes), storage: s });
    await storeHistoryFile(ROOT, ID, 2, Buffer.from('1\t0/3800000\tno recovery target specified\n'), 'test', s);
    await pushWalFile({ root: ROOT, sourcePath: await put(s, '000000010000000000000004.partial', headerOnlySegment(A1, 4n)), storage: s });
    return { s, commitAt, names: files.map(([n]) => n) };
  }

  it('fetches a segment and a history file whole; an absent one is "absent"; a .partial is never served as a segment', async () => {
    const { s, names } = await archive();
    await s.makeDirs('/restore/pg_wal');
    const got = await fetchWalFile({ root: ROOT, systemId: ID, fileName: names[1]!, destPath: '/restore/pg_wal/RECOVERYXLOG', storage: s });
    expect(got).toMatchObject({ status: 'fetched', bytes: SYNTH_SEG, fromPartial: false });
    expect((await s.readFile('/restore/pg_wal/RECOVERYXLOG')).equals(await s.readFile(`${ROOT}/${ID}/00000001/${names[1]}`))).toBe(true);
    expect((await fetchWalFile({ root: ROOT, systemId: ID, fileName: '00000002.history', destPath: '/restore/pg_wal/RECOVERYHISTORY', storage: s })).status).toBe('fetched');
    expect(await fetchWalFile({ root: ROOT, systemId: ID, fileName: '000000010000000000000009', destPath: '/restore/pg_wal/RECOVERYXLOG', storage: s })).toEqual({ status: 'absent' });
    const partial = await fetchWalFile({ root: ROOT, systemId: ID, fileName: '000000010000000000000004', destPath: '/restore/pg_wal/RECOVERYXLOG', storage: s });
    expect(partial).toEqual({ status: 'absent', partial: `${ROOT}/${ID}/00000001/000000010000000000000004.partial` });
    expect(s.paths().filter((p) => p.includes('.pgbacula-'))).toEqual([]);
  });

  it('a damaged archived segment is refused (WAL_DAMAGED), not served', async () => {
    const { s, names } = await archive();
    const path = `${ROOT}/${ID}/00000001/${names[1]}`;
    const bytes = await s.readFile(path);
    bytes[20000] = bytes[20000]! ^ 0xff;
    await s.writeFileDurable(path, bytes);
    await s.makeDirs('/restore/pg_wal');
    const e = await refusal(fetchWalFile({ root: ROOT, systemId: ID, fileName: names[1]!, destPath: '/restore/pg_wal/RECOVERYXLOG', storage: s }));
    expect(e.code).toBe('WAL_DAMAGED');
    expect(await s.exists('/restore/pg_wal/RECOVERYXLOG')).toBe(false);
  });

  it('lists segments, partials, histories and unexpected entries (names in any order from the storage)', async () => {
    const { s, names } = await archive();
    await s.writeFileDurable(`${ROOT}/${ID}/stray`, 'x');
    expect(await listArchivedSystems(ROOT, s)).toEqual([ID]);
    const l = await listWalArchive(ROOT, ID, s);
    expect(l.segments.map((x) => x.name)).toEqual(names);
    expect(l.partials.map((x) => x.name)).toEqual(['000000010000000000000004.partial']);
    expect(l.histories.map((h) => [h.name, h.entries?.length])).toEqual([['00000002.history', 1]]);
    expect(l.problems).toEqual(['stray: unexpected entry']);
    expect(l.segmentSize).toBe(SYNTH_SEG);
  });

  it('the window runs from the end of a backup to the last archived commit; a missing segment is a gap', async () => {
    const { s, commitAt, names } = await archive();
    const backup = { id: 'B1', startLsn: parseLsn('0/100100', 'start'), stopLsn: parseLsn('0/100800', 'stop'), startTimeline: 1, stopTimeline: 1, stopTime: '2026-11-26T12:00:00.000Z' };
    const r = await windowReport({ root: ROOT, systemId: ID, backups: [backup], timeline: 1, storage: s });
    expect(r.window.earliest?.backupId).toBe('B1');
    expect(r.window.latest?.time?.slice(0, 19)).toBe(commitAt.toISOString().slice(0, 19));
    expect(r.window.gaps).toEqual([]);
    expect(r.damaged).toEqual([]);
    await s.removeFile(`${ROOT}/${ID}/00000001/${names[1]}`);
    const gap = await windowReport({ root: ROOT, systemId: ID, backups: [backup], timeline: 1, storage: s });
    expect(gap.window.gaps.map((g) => g.names)).toEqual([[names[1]]]);
  });
});

describe('temporaries of killed writers', () => {
  it('are swept when their process is gone, never a live writer\'s or a stored file', async () => {
    const s = new MemoryStorage();
    const dir = '/archive/1/00000001';
    await s.makeDirs(dir);
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    await s.writeFileDurable(`${dir}/.000000010000000000000003.summary.tmp-${dead}-0000abcd`, 'x');
    await s.writeFileDurable(`${dir}/.000000010000000000000004.tmp-${process.ppid}-0000abcd`, 'y');
    await s.writeFileDurable(`${dir}/000000010000000000000002`, 'z');
    expect(await sweepDeadTemporaries(s, dir)).toBe(1);
    expect((await s.list(dir)).sort()).toEqual([`.000000010000000000000004.tmp-${process.ppid}-0000abcd`, '000000010000000000000002']);
  });
});
