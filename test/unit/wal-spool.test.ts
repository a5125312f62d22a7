import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { archiveCommandLine, restoreCommandLine, nativeWalFetchPath } from '../../src/archive/archive-command.js';
import { dataDirectorySystemId } from '../../src/archive/data-directory.js';
import { fetchWalFile } from '../../src/archive/fetch.js';
import { listWalArchive } from '../../src/archive/listing.js';
import { pushWalFile } from '../../src/archive/push.js';
import { readArchiveMeta } from '../../src/archive/archive-meta.js';
import { storeHistoryFile } from '../../src/archive/history-files.js';
import { walArchiveRoot } from '../../src/archive/layout.js';
import { runCli } from '../harness/run-cli.js';
import { NATIVE_WAL_PUSH, WAL_PUSHERS } from '../harness/wal-pushers.js';
import { pgbaculaArchiver } from '../../src/server/archive-command-kind.js';
import { headerOnlySegment, recordSegments, SYNTH_SEG } from './wal-synth.js';
import { scratchDirs } from '../harness/scratch-dirs.js';

const SYS_A = 7311887020705307463n;
const SYS_B = 7311887020705307999n;
const { tmp } = scratchDirs('spool');

/** A fake data directory: global/pg_control with a system identifier and pg_control_version 1800. */
function fakeDataDir(systemId: bigint): string {
  const d = tmp();
  mkdirSync(join(d, 'global'));
  mkdirSync(join(d, 'pg_wal'));
  const ctl = Buffer.alloc(8192);
  ctl.writeBigUInt64LE(systemId, 0);
  ctl.writeUInt32LE(1800, 8);
  writeFileSync(join(d, 'global', 'pg_control'), ctl);
  return d;
}

function writeSeg(dir: string, name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

async function refusal(p: Promise<unknown>): Promise<PgbaculaError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(PgbaculaError);
  return e as PgbaculaError;
}

function noTempFiles(dir: string): void {
  const all = readdirSync(dir, { recursive: true }) as string[];
  expect(all.filter((n) => n.includes('.tmp-'))).toEqual([]);
}

describe.each(WAL_PUSHERS)('WAL archive layout and wal-push rules: $name', ({ push }) => {
  const A1 = { systemId: SYS_A, timeline: 1 };

  it('stores a validated segment under <sysid>/<TLI hex>/, fsynced, 0640, and records the archive facts', async () => {
    const root = join(tmp(), 'spool');
    const src = tmp();
    const path = writeSeg(src, '000000010000000000000003', headerOnlySegment(A1, 3n));
    const r = await push({ root, sourcePath: path, expectedSystemId: SYS_A.toString() });
    expect(r).toMatchObject({ status: 'stored', kind: 'segment', systemId: SYS_A.toString(), timeline: 1, bytes: SYNTH_SEG });
    const dest = join(root, SYS_A.toString(), '00000001', '000000010000000000000003');
    expect(r.path).toBe(dest);
    expect(readFileSync(dest).equals(readFileSync(path))).toBe(true);
    expect(statSync(dest).mode & 0o777).toBe(0o640);
    expect(await readArchiveMeta(root, SYS_A.toString())).toMatchObject({ systemIdentifier: SYS_A.toString(), walSegmentSize: SYNTH_SEG, xlogPageMagic: 0xd118, pgMajor: 18 });
    noTempFiles(root);
  });

  it('identical re-push is success; different bytes under an existing name are refused and the archived copy kept', async () => {
    const root = tmp();
    const src = tmp();
    const original = headerOnlySegment(A1, 4n, 1);
    const path = writeSeg(src, '000000010000000000000004', original);
    expect((await push({ root, sourcePath: path })).status).toBe('stored');
    expect((await push({ root, sourcePath: path })).status).toBe('identical');
    const other = tmp();
    const changed = writeSeg(other, '000000010000000000000004', headerOnlySegment(A1, 4n, 2));
    const e = await refusal(push({ root, sourcePath: changed }));
    expect(e.code).toBe('WAL_CONFLICT');
    expect(e.message).toMatch(/000000010000000000000004 is already archived .* with different content/);
    expect(e.message).toContain(changed);
    expect(e.hint).toMatch(/same system identifier/);
    expect(readFileSync(join(root, SYS_A.toString(), '00000001', '000000010000000000000004')).equals(Buffer.from(original))).toBe(true);
    noTempFiles(root);
  });

  it('concurrent pushes of one segment: one stores it, the others find it identical', async () => {
    const root = tmp();
    const path = writeSeg(tmp(), '000000010000000000000007', headerOnlySegment(A1, 7n));
    const results = await Promise.all(Array.from({ length: 8 }, () => push({ root, sourcePath: path })));
    expect(results.filter((r) => r.status === 'stored').length).toBeGreaterThanOrEqual(1);
    expect(results.every((r) => r.status === 'stored' || r.status === 'identical')).toBe(true);
    noTempFiles(root);
  });

  it('refuses a segment of another system than the data directory that pushes it', async () => {
    const root = tmp();
    const pgdata = fakeDataDir(SYS_A);
    expect(await dataDirectorySystemId(pgdata)).toBe(SYS_A.toString());
    const foreign = writeSeg(tmp(), '000000010000000000000005', headerOnlySegment({ systemId: SYS_B, timeline: 1 }, 5n));
    const e = await refusal(push({ root, sourcePath: foreign, expectedSystemId: SYS_A.toString(), pgdata }));
    expect(e.code).toBe('WAL_CONFLICT');
    expect(e.message).toContain(`belongs to database system ${SYS_B}, not to system ${SYS_A}`);
    expect(existsSync(join(root, SYS_B.toString()))).toBe(false);
    expect(existsSync(join(root, SYS_A.toString(), '00000001', '000000010000000000000005'))).toBe(false);
  });

  it('a repository holds one system: a second one is refused even without a data directory', async () => {
    const root = walArchiveRoot({ repo: tmp() });
    await push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000001', headerOnlySegment(A1, 1n)), singleSystem: true });
    const e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000001', headerOnlySegment({ systemId: SYS_B, timeline: 1 }, 1n)), singleSystem: true }));
    expect(e.code).toBe('WAL_CONFLICT');
    expect(e.message).toContain(`holds WAL of system ${SYS_A}`);
    // A spool keeps one directory per system instead.
    const spool = tmp();
    await push({ root: spool, sourcePath: writeSeg(tmp(), '000000010000000000000001', headerOnlySegment(A1, 1n)) });
    await push({ root: spool, sourcePath: writeSeg(tmp(), '000000010000000000000001', headerOnlySegment({ systemId: SYS_B, timeline: 1 }, 1n)) });
    expect(readdirSync(spool).sort()).toEqual([SYS_A.toString(), SYS_B.toString()].sort());
  });

  it('refuses damaged WAL, WAL of another major than the archive holds, and files that are not WAL', async () => {
    const root = tmp();
    await push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000001', headerOnlySegment(A1, 1n)) });
    const bad = headerOnlySegment(A1, 2n);
    new DataView(bad.buffer).setBigUint64(8192 * 5 + 8, 123n, true); // page 5 claims another address
    let e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000002', bad) }));
    expect(e.code).toBe('WAL_CONFLICT');
    expect(e.message).toMatch(/claims address/);
    e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000002', headerOnlySegment({ ...A1, magic: 0xd116 }, 2n)) }));
    expect(e.message).toMatch(/written by PostgreSQL 17 but the archive .* holds WAL of PostgreSQL 18/);
    e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000002', headerOnlySegment(A1, 3n)) }));
    expect(e.message).toMatch(/claims address/); // a segment under another segment's name
    e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000002', headerOnlySegment({ ...A1, segSize: SYNTH_SEG * 2 }, 1n)) }));
    expect(e.message).toMatch(new RegExp(`uses ${SYNTH_SEG * 2}-byte segments but the archive of system ${SYS_A} in .* holds ${SYNTH_SEG}-byte segments`));
    const oddSize = headerOnlySegment(A1, 2n);
    new DataView(oddSize.buffer).setUint32(32, SYNTH_SEG + 8192, true); // not a power of two
    e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000002', oddSize) }));
    expect(e.message).toMatch(new RegExp(`claims a WAL segment size of ${SYNTH_SEG + 8192} bytes`));
    const timelineAhead = headerOnlySegment(A1, 2n);
    new DataView(timelineAhead.buffer).setUint32(8192 * 3 + 4, 2, true); // page 3 on a newer timeline than its file
    e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000002', timelineAhead) }));
    expect(e.message).toMatch(/is on timeline 2, newer than timeline 1 of its file/);
    e = await refusal(push({ root, sourcePath: writeSeg(tmp(), 'postmaster.pid', Buffer.from('1')) }));
    expect(e.code).toBe('PARAM_INVALID');
    e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000002', Buffer.alloc(100)) }));
    expect(e.message).toMatch(/not a WAL segment/);
    const short = headerOnlySegment(A1, 2n).subarray(0, SYNTH_SEG / 2);
    e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000002', short) }));
    expect(e.message).toMatch(/bytes, expected/);
    expect(existsSync(join(root, SYS_A.toString(), '00000001', '000000010000000000000002'))).toBe(false);
  });

  it('archives the history file before any WAL of its timeline: refused without it, taken from pg_wal when there', async () => {
    const root = tmp();
    const A2 = { systemId: SYS_A, timeline: 2 };
    const seg = writeSeg(tmp(), '00000002000000000000000A', headerOnlySegment(A2, 10n));
    const e = await refusal(push({ root, sourcePath: seg, expectedSystemId: SYS_A.toString() }));
    expect(e.code).toBe('WAL_GAP');
    expect(e.message).toContain('00000002.history is not archived');
    expect(e.hint).toMatch(/Archive 00000002.history first/);
    expect(existsSync(join(root, SYS_A.toString(), '00000002'))).toBe(false);

    // Timeline 3 forked from 2, which forked from 1: both files wait in the data directory's pg_wal.
    const pgdata = fakeDataDir(SYS_A);
    writeFileSync(join(pgdata, 'pg_wal', '00000002.history'), '1\t0/9000110\tno recovery target specified\n');
    writeFileSync(join(pgdata, 'pg_wal', '00000003.history'), '1\t0/9000110\tno recovery target specified\n\n2\t0/B000060\tno recovery target specified\n');
    const A3 = { systemId: SYS_A, timeline: 3 };
    const seg3 = writeSeg(tmp(), '00000003000000000000000B', headerOnlySegment(A3, 11n));
    const r = await push({ root, sourcePath: seg3, expectedSystemId: SYS_A.toString(), pgdata });
    expect(r.status).toBe('stored');
    expect(r.historiesArchived).toEqual(['00000002.history', '00000003.history']);
    const sys = join(root, SYS_A.toString());
    expect(readFileSync(join(sys, '00000003.history'), 'utf8')).toContain('2\t0/B000060');
    expect(statSync(join(sys, '00000003.history')).mtimeMs <= statSync(join(sys, '00000003', '00000003000000000000000B')).mtimeMs).toBe(true);
    // A timeline-1 file never needs one; a garbage history file is refused.
    const bad = writeSeg(tmp(), '00000004.history', Buffer.from('this is not a history\n'));
    expect((await refusal(push({ root, sourcePath: bad, expectedSystemId: SYS_A.toString() }))).code).toBe('WAL_CONFLICT');
  });

  it('a different .partial under an existing name is kept aside (recovery never reads it), not refused', async () => {
    const root = tmp();
    const warnings: string[] = [];
    const p1 = writeSeg(tmp(), '000000010000000000000009.partial', headerOnlySegment(A1, 9n, 1));
    expect((await push({ root, sourcePath: p1 })).status).toBe('stored');
    const p2 = writeSeg(tmp(), '000000010000000000000009.partial', headerOnlySegment(A1, 9n, 2));
    const r = await push({ root, sourcePath: p2, warn: (t) => warnings.push(t) });
    expect(r.status).toBe('kept-aside');
    expect(r.path).toMatch(new RegExp(`${SYS_A}/aside/000000010000000000000009\\.partial\\.[0-9a-f]{16}$`));
    expect(warnings.join()).toMatch(/kept as/);
    const listing = await listWalArchive(root, SYS_A.toString());
    expect(listing.partials.map((s) => s.name)).toEqual(['000000010000000000000009.partial']);
    expect(listing.segments).toEqual([]);
    expect(listing.aside.length).toBe(1);
  });

  it('a backup history file: stored under its timeline, a different one kept aside, one without START WAL LOCATION refused', async () => {
    const root = tmp();
    await push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000001', headerOnlySegment(A1, 1n)) });
    const name = '000000010000000000000001.00000028.backup';
    const text = (label: string) => Buffer.from(`START WAL LOCATION: 0/1000028 (file 000000010000000000000001)\nSTOP WAL LOCATION: 0/1000100 (file 000000010000000000000001)\nLABEL: ${label}\n`);
    const first = await push({ root, sourcePath: writeSeg(tmp(), name, text('one')), expectedSystemId: SYS_A.toString() });
    expect(first).toMatchObject({ status: 'stored', kind: 'backup', path: join(root, SYS_A.toString(), '00000001', name) });
    const warnings: string[] = [];
    const second = await push({ root, sourcePath: writeSeg(tmp(), name, text('two')), expectedSystemId: SYS_A.toString(), warn: (t) => warnings.push(t) });
    expect(second.status).toBe('kept-aside');
    expect(second.path).toMatch(new RegExp(`${SYS_A}/aside/${name.replace(/\./g, '\\.')}\\.[0-9a-f]{16}$`));
    expect(warnings.join()).toMatch(/recovery never reads \.backup files/);
    expect(readFileSync(first.path, 'utf8')).toContain('LABEL: one');
    const e = await refusal(push({ root, sourcePath: writeSeg(tmp(), '000000010000000000000001.00000030.backup', Buffer.from('LABEL: no start\n')), expectedSystemId: SYS_A.toString() }));
    expect(e.code).toBe('WAL_CONFLICT');
    expect(e.message).toContain('is not a backup history file (no START WAL LOCATION line)');
    noTempFiles(root);
  });
});

describe('wal-fetch rules', () => {
  const A1 = { systemId: SYS_A, timeline: 1 };
  const segs = recordSegments(A1, 1n, 3);
  async function archiveWith(): Promise<string> {
    const root = tmp();
    for (let n = 1n; n <= 3n; n++) await pushWalFile({ root, sourcePath: writeSeg(tmp(), `00000001000000000000000${n}`, segs[Number(n) - 1]!) });
    await storeHistoryFile(root, SYS_A.toString(), 2, Buffer.from('1\t0/3000100\tno recovery target specified\n'), 'test');
    await pushWalFile({ root, sourcePath: writeSeg(tmp(), '000000010000000000000004.partial', headerOnlySegment(A1, 4n)) });
    return root;
  }

  it('serves segments and history files byte for byte, says "absent" for what is not archived', async () => {
    const root = await archiveWith();
    const out = tmp();
    const r = await fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '000000010000000000000002', destPath: join(out, 'RECOVERYXLOG') });
    expect(r).toMatchObject({ status: 'fetched', bytes: SYNTH_SEG, fromPartial: false });
    expect(readFileSync(join(out, 'RECOVERYXLOG')).equals(Buffer.from(segs[1]!))).toBe(true);
    expect(await fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '00000002.history', destPath: join(out, 'RECOVERYHISTORY') })).toMatchObject({ status: 'fetched' });
    expect(readFileSync(join(out, 'RECOVERYHISTORY'), 'utf8')).toContain('0/3000100');
    expect(await fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '00000003.history', destPath: join(out, 'x') })).toEqual({ status: 'absent' });
    expect(await fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '000000010000000000000009', destPath: join(out, 'x') })).toEqual({ status: 'absent' });
    expect(existsSync(join(out, 'x'))).toBe(false);
  });

  it('never serves a .partial as a complete segment (unless a restore asks for it explicitly)', async () => {
    const root = await archiveWith();
    const out = tmp();
    const r = await fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '000000010000000000000004', destPath: join(out, 'RECOVERYXLOG') });
    expect(r.status).toBe('absent');
    expect(r.status === 'absent' && r.partial).toMatch(/000000010000000000000004\.partial$/);
    expect(existsSync(join(out, 'RECOVERYXLOG'))).toBe(false);
    const e = await refusal(fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '000000010000000000000004.partial', destPath: join(out, 'y') }));
    expect(e.message).toMatch(/never serves a \.partial/);
    const staged = await fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '000000010000000000000004', destPath: join(out, 'z'), allowPartial: true });
    expect(staged).toMatchObject({ status: 'fetched', fromPartial: true });
  });

  it('refuses to hand a damaged archived segment to the server', async () => {
    const root = await archiveWith();
    const p = join(root, SYS_A.toString(), '00000001', '000000010000000000000003');
    const b = readFileSync(p);
    b.writeBigUInt64LE(999n, 8192 * 3 + 8);
    writeFileSync(p, b);
    const out = tmp();
    const e = await refusal(fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '000000010000000000000003', destPath: join(out, 'RECOVERYXLOG') }));
    expect(e.code).toBe('WAL_DAMAGED');
    expect(e.message).toMatch(/archived WAL segment 000000010000000000000003 in .* is damaged/);
    expect(readdirSync(out)).toEqual([]);
  });

  it('refuses a segment with one byte flipped in a record, and one whose first record continues a damaged seam', async () => {
    const root = await archiveWith();
    const dir = join(root, SYS_A.toString(), '00000001');
    const p2 = join(dir, '000000010000000000000002');
    const b = readFileSync(p2);
    b[SYNTH_SEG / 2 + 24] = b[SYNTH_SEG / 2 + 24]! ^ 0x01;
    writeFileSync(p2, b);
    const out = tmp();
    const e = await refusal(fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '000000010000000000000002', destPath: join(out, 'RECOVERYXLOG') }));
    expect(e.code).toBe('WAL_DAMAGED');
    expect(e.message).toMatch(/records stop at offset \d+/);
    expect(e.hint).toMatch(/recovery stops here/);
    writeFileSync(p2, segs[1]!);
    // The continuation at the start of segment 3 damaged: segment 3 alone looks sound, the seam does not.
    const p3 = join(dir, '000000010000000000000003');
    const c = readFileSync(p3);
    c[40] = c[40]! ^ 0x01;
    writeFileSync(p3, c);
    const seam = await refusal(fetchWalFile({ root, systemId: SYS_A.toString(), fileName: '000000010000000000000003', destPath: join(out, 'RECOVERYXLOG') }));
    expect(seam.message).toMatch(/after 000000010000000000000002: the record at .* fails its CRC/);
    expect(readdirSync(out)).toEqual([]);
  });

  it('serves the backup\'s staged WAL when the archive lacks a file, checked the same way (its newest segment may end early)', async () => {
    const root = await archiveWith();
    const staged = tmp();
    const more = recordSegments(A1, 5n, 3);
    writeFileSync(join(staged, '000000010000000000000005'), more[0]!);
    writeFileSync(join(staged, '000000010000000000000006'), more[1]!);
    // The backup's last segment, streamed to the stop point: zeros after it.
    const last = Uint8Array.from(more[2]!);
    last.fill(0, SYNTH_SEG / 2);
    writeFileSync(join(staged, '000000010000000000000007'), last);
    const out = tmp();
    const fetch = (name: string) => fetchWalFile({ root, systemId: SYS_A.toString(), fileName: name, destPath: join(out, 'RECOVERYXLOG'), stagedDir: staged });
    expect(await fetch('000000010000000000000002')).toMatchObject({ status: 'fetched', source: expect.stringContaining(root) });
    expect(await fetch('000000010000000000000006')).toMatchObject({ status: 'fetched', source: join(staged, '000000010000000000000006') });
    expect(await fetch('000000010000000000000007')).toMatchObject({ status: 'fetched' });
    expect(await fetch('000000010000000000000009')).toEqual({ status: 'absent' });
    const bad = Uint8Array.from(more[1]!);
    bad[SYNTH_SEG / 4 + 24] = bad[SYNTH_SEG / 4 + 24]! ^ 0x10;
    writeFileSync(join(staged, '000000010000000000000006'), bad);
    const e = await refusal(fetch('000000010000000000000006'));
    expect(e.message).toMatch(/000000010000000000000006 in the backup's own WAL .* is damaged/);
  });

  it('lists what is archived', async () => {
    const root = await archiveWith();
    const l = await listWalArchive(root, SYS_A.toString());
    expect(l.segments.map((s) => [s.name, s.segno])).toEqual([
      ['000000010000000000000001', 1n],
      ['000000010000000000000002', 2n],
      ['000000010000000000000003', 3n],
    ]);
    expect(l.partials.map((s) => s.name)).toEqual(['000000010000000000000004.partial']);
    expect(l.histories.map((h) => [h.name, h.entries?.length])).toEqual([['00000002.history', 1]]);
    expect(l.segmentSize).toBe(SYNTH_SEG);
    expect(l.problems).toEqual([]);
  });
});

describe.each(WAL_PUSHERS)('wal-push as a command: $name', ({ cli }) => {
  const A1 = { systemId: SYS_A, timeline: 1 };

  it('wal-push is silent on success and on an identical re-push; wal-fetch is silent with exit 1 when absent', async () => {
    const repo = tmp();
    const pgdata = fakeDataDir(SYS_A);
    const seg = writeSeg(join(pgdata, 'pg_wal'), '000000010000000000000002', recordSegments(A1, 2n, 1)[0]!);
    for (let i = 0; i < 2; i++) {
      const r = await cli(['--repo', repo, '--pgdata', pgdata, seg]);
      expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    }
    // As archive_command: a path relative to the data directory it runs in.
    expect(await cli(['--repo', repo, 'pg_wal/000000010000000000000002'], pgdata)).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(existsSync(join(repo, 'pgbacula-repo.json'))).toBe(true); // the repository was created
    expect(existsSync(join(repo, 'wal', SYS_A.toString(), '00000001', '000000010000000000000002'))).toBe(true);
    const absent = await runCli(['wal-fetch', '--repo', repo, '--pgdata', pgdata, '00000002.history', join(tmp(), 'RECOVERYHISTORY')]);
    expect(absent).toEqual({ code: 1, stdout: '', stderr: '' });
    const dest = join(tmp(), 'RECOVERYXLOG');
    expect(await runCli(['wal-fetch', '--repo', repo, '--pgdata', pgdata, '000000010000000000000002', dest])).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(readFileSync(dest).equals(readFileSync(seg))).toBe(true);
    const json = await runCli(['wal-fetch', '--repo', repo, '--pgdata', pgdata, '--json', '000000010000000000000003', dest]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: 'absent', fileName: '000000010000000000000003' });
  });

  it('errors name what, where and the fix; usage errors exit 2', async () => {
    const repo = tmp();
    const pgdata = fakeDataDir(SYS_A);
    const foreign = writeSeg(tmp(), '000000010000000000000002', headerOnlySegment({ systemId: SYS_B, timeline: 1 }, 2n));
    const r = await cli(['--repo', repo, '--pgdata', pgdata, foreign]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pgbacula: error: 000000010000000000000002 belongs to database system \d+, not to system \d+ of the data directory that archives it\nhint: /);
    expect(existsSync(join(repo, 'wal', SYS_B.toString()))).toBe(false);
    expect((await cli(['--repo', repo])).code).toBe(2);
    expect((await cli(['--repo', repo, '--pgdata', pgdata, join(tmp(), 'postmaster.pid')])).code).toBe(2);
    const missing = await cli(['--repo', repo, '--pgdata', pgdata, join(tmp(), '000000010000000000000009')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/the file to archive .* does not exist/);
  });
});

describe('the CLI commands (in-process)', () => {
  const A1 = { systemId: SYS_A, timeline: 1 };

  it('wal-fetch exits 200 when restore_command itself is wrong or there is no archive', async () => {
    const repo = tmp();
    expect((await runCli(['wal-fetch', '--repo', repo, 'x'])).code).toBe(200);
    const noArchive = await runCli(['wal-fetch', '--wal-spool', join(tmp(), 'nowhere'), '000000010000000000000002', join(tmp(), 'p')]);
    // Anything but "not archived" stops recovery: above 125, and not 143 (128 + SIGTERM).
    expect(noArchive.code).toBe(200);
    expect(noArchive.stderr).toMatch(/no WAL archive at .*nowhere/);
  });

  it('wal-fetch refuses a damaged segment with exit 200 (PostgreSQL stops recovery on > 125) naming it, the archive and what to do', async () => {
    const repo = tmp();
    const pgdata = fakeDataDir(SYS_A);
    const good = recordSegments(A1, 2n, 1)[0]!;
    const bad = Uint8Array.from(good);
    bad[SYNTH_SEG / 2 + 24] = bad[SYNTH_SEG / 2 + 24]! ^ 0x40; // the first byte after a page header is always record data
    const seg = writeSeg(join(pgdata, 'pg_wal'), '000000010000000000000002', good);
    expect((await runCli(['wal-push', '--repo', repo, '--pgdata', pgdata, seg])).code).toBe(0);
    writeFileSync(join(repo, 'wal', SYS_A.toString(), '00000001', '000000010000000000000002'), bad);
    const dest = join(tmp(), 'RECOVERYXLOG');
    const r = await runCli(['wal-fetch', '--repo', repo, '--pgdata', pgdata, '000000010000000000000002', dest]);
    expect(r.code).toBe(200);
    expect(r.stderr).toMatch(/archived WAL segment 000000010000000000000002 in .*00000001 is damaged: its records stop at offset/);
    expect(r.stderr).toMatch(/hint: It was not handed to PostgreSQL: recovery stops here/);
    expect(existsSync(dest)).toBe(false);
  });

  it('wal-fetch --staged alone serves a backup\'s own WAL without any archive, checked the same way', async () => {
    const pgdata = fakeDataDir(SYS_A);
    const staged = tmp();
    const [s2, s3] = recordSegments(A1, 2n, 2);
    writeSeg(staged, '000000010000000000000002', s2!);
    writeSeg(staged, '000000010000000000000003', s3!);
    const dest = join(tmp(), 'RECOVERYXLOG');
    expect(await runCli(['wal-fetch', '--staged', staged, '--pgdata', pgdata, '000000010000000000000002', dest])).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(readFileSync(dest).equals(Buffer.from(s2!))).toBe(true);
    expect((await runCli(['wal-fetch', '--staged', staged, '--pgdata', pgdata, '00000002.history', join(tmp(), 'h')])).code).toBe(1);
    const bad = Uint8Array.from(s2!);
    bad[SYNTH_SEG / 2 + 24] = bad[SYNTH_SEG / 2 + 24]! ^ 0x08;
    writeSeg(staged, '000000010000000000000002', bad);
    const r = await runCli(['wal-fetch', '--staged', staged, '--pgdata', pgdata, '000000010000000000000002', join(tmp(), 'x')]);
    expect(r.code).toBe(200);
    expect(r.stderr).toMatch(/000000010000000000000002 in the backup's own WAL .* is damaged/);
  });

  it('wal-fetch says so when only a .partial exists', async () => {
    const spool = tmp();
    const pgdata = fakeDataDir(SYS_A);
    const p = writeSeg(tmp(), '000000010000000000000006.partial', headerOnlySegment(A1, 6n));
    expect((await runCli(['wal-push', '--wal-spool', spool, '--pgdata', pgdata, p])).code).toBe(0);
    const r = await runCli(['wal-fetch', '--wal-spool', spool, '--pgdata', pgdata, '000000010000000000000006', join(tmp(), 'RECOVERYXLOG')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/000000010000000000000006 is not archived complete; an incomplete copy exists .*\.partial\) and is never served as a complete segment/);
  });
});

describe('command lines for postgresql.conf', () => {
  it('quote paths for the shell and double % for PostgreSQL', () => {
    const rc = restoreCommandLine({ repo: "/backup/it's 100%" });
    expect(rc).toMatch(/ wal-fetch --repo '\/backup\/it'\\''s 100%%' %f %p$/);
    // The native helper first when it is built (test/unit/wal-fetch-helper.test.ts), then node.
    expect(rc.startsWith(`${nativeWalFetchPath()} ${process.execPath}`)).toBe(true);
    expect(restoreCommandLine({ repo: '/r', helper: undefined }).startsWith(process.execPath)).toBe(true);
    // A restore: the archive, then the backup's staged WAL, in one command (no `|| cp` after a refusal).
    expect(restoreCommandLine({ repo: '/r', staged: '/pg/pgbacula_restore/wal' })).toMatch(/ wal-fetch --repo \/r --staged \/pg\/pgbacula_restore\/wal %f %p$/);
    expect(restoreCommandLine({ staged: '/pg/pgbacula_restore/wal' })).toMatch(/ wal-fetch --staged \/pg\/pgbacula_restore\/wal %f %p$/);
    expect(archiveCommandLine({ spool: '/var/lib/pgbacula/wal-spool' })).toMatch(/ wal-push --wal-spool \/var\/lib\/pgbacula\/wal-spool %p$/);
  });

  it('offer the native helper when asked and installed; the checks recognize both forms as pgbacula archiving', () => {
    const native = archiveCommandLine({ repo: "/backup/it's 100%", native: true });
    expect(native).toBe(`${NATIVE_WAL_PUSH} --repo '/backup/it'\\''s 100%%' %p`);
    const cli = archiveCommandLine({ spool: '/var/lib/pgbacula/wal-spool' });
    expect(pgbaculaArchiver(native)).toBe('native');
    expect(pgbaculaArchiver(cli)).toBe('wal-push');
    expect(pgbaculaArchiver('pgbacula wal-push %p')).toBe('wal-push');
    expect(pgbaculaArchiver("'/usr/bin/pgbacula' 'wal-push' --repo /r %p")).toBe('wal-push');
    expect(pgbaculaArchiver('/usr/lib/pgbacula/pgbacula-wal-push --wal-spool /s %p')).toBe('native');
    expect(pgbaculaArchiver('cp %p /mnt/archive/%f')).toBeUndefined();
    expect(pgbaculaArchiver('pgbacula wal-pushy %p')).toBeUndefined();
  });
});
