import { describe, expect, it } from 'vitest';
import { judgeSegment, judgeSegmentJoin } from '../../src/wal/integrity.js';
import { crc32c } from '../../src/format/crc32c.js';
import { BLCKSZ, SYNTH_SEG, WalWriter } from './wal-synth.js';

const SYS = 7_000_000_000_000_000_001n;
const S = SYNTH_SEG;
const start = (segno: bigint) => segno * BigInt(S);

/** Segments 1.. full of records; a record of `crossLen` bytes crosses from segment 1 into 2. */
function stream(o: { crossLen?: number; switchAt?: number } = {}) {
  const w = new WalWriter({ systemId: SYS, timeline: 1 }, 1n);
  let xid = 100;
  const end1 = start(2n);
  while (w.pos < end1 - 30_000n) w.blockRecord(xid++, 200 + (xid % 700));
  if (o.crossLen) w.blockRecord(xid++, o.crossLen);
  while (w.pos < start(3n) + 200_000n) w.blockRecord(xid++, 100 + (xid % 300));
  const files = [...w.files().values()];
  return { w, files };
}

function flip(b: Uint8Array, off: number): Uint8Array {
  const c = Uint8Array.from(b);
  c[off] = c[off]! ^ 0x5a;
  return c;
}

describe('judgeSegment (a segment alone)', () => {
  it('a segment of valid records to its end is sound; the unfinished last one is sound only as a .partial', () => {
    const { files } = stream();
    expect(judgeSegment(files[0]!, { segmentStart: start(1n), segmentSize: S })).toMatchObject({ sound: true, problem: undefined });
    expect(judgeSegment(files[1]!, { segmentStart: start(2n), segmentSize: S }).sound).toBe(true);
    expect(judgeSegment(files[2]!, { segmentStart: start(3n), segmentSize: S, partial: true }).sound).toBe(true);
    const asComplete = judgeSegment(files[2]!, { segmentStart: start(3n), segmentSize: S });
    expect(asComplete.sound).toBe(false);
    expect(asComplete.problem).toMatch(/records stop at offset \d+ .* before the segment's end: zeros/);
  });

  it('one byte flipped in a record body in the middle: damaged, where and why named', () => {
    const { files } = stream();
    const v = judgeSegment(flip(files[0]!, S / 2 + 1234), { segmentStart: start(1n), segmentSize: S });
    expect(v.sound).toBe(false);
    expect(v.problem).toMatch(/records stop at offset \d+/);
    expect(v.problem).toMatch(/bad record CRC|invalid record length|xl_prev/);
    expect(v.endLsn).toBeLessThan(start(1n) + BigInt(S / 2 + 1234));
  });

  it('one byte flipped in a page header (its address) or in the first page header: damaged', () => {
    const { files } = stream();
    const page = judgeSegment(flip(files[0]!, 40 * BLCKSZ + 9), { segmentStart: start(1n), segmentSize: S });
    expect(page.sound).toBe(false);
    expect(page.problem).toMatch(/page/);
    const first = judgeSegment(flip(files[1]!, 9), { segmentStart: start(2n), segmentSize: S });
    expect(first.sound).toBe(false);
    expect(first.problem).toMatch(/first page is not a valid WAL page/);
    // A .partial is judged on its first page too.
    expect(judgeSegment(flip(files[2]!, 9), { segmentStart: start(3n), segmentSize: S, partial: true }).sound).toBe(false);
  });

  it('a continuation page whose xlp_rem_len disagrees with the record it continues: damaged (the server checks it too)', () => {
    const { files } = stream();
    const b = Uint8Array.from(files[0]!);
    const v = new DataView(b.buffer);
    let page = S / 2;
    while (v.getUint32(page + 16, true) === 0) page += BLCKSZ;
    v.setUint32(page + 16, v.getUint32(page + 16, true) + 8, true);
    const j = judgeSegment(b, { segmentStart: start(1n), segmentSize: S });
    expect(j.sound).toBe(false);
    expect(j.problem).toMatch(new RegExp(`page inside the record|page at offset ${page}`));
  });

  it('a segment of the wrong size is damaged', () => {
    const { files } = stream();
    expect(judgeSegment(files[0]!.subarray(0, S - BLCKSZ), { segmentStart: start(1n), segmentSize: S }).problem).toMatch(/bytes instead of/);
  });

  it('XLOG_SWITCH: the zero tail after it is not damage; zeros without a switch are', () => {
    const w = new WalWriter({ systemId: SYS, timeline: 1 }, 1n);
    for (let i = 0; i < 200; i++) w.blockRecord(100 + i, 300);
    w.switchSegment();
    w.blockRecord(999, 50);
    const seg = [...w.files().values()][0]!;
    expect(judgeSegment(seg, { segmentStart: start(1n), segmentSize: S }).sound).toBe(true);
    // The switch record itself damaged: its CRC fails, the zeros after the last good record are the end.
    const scanEnd = judgeSegment(seg, { segmentStart: start(1n), segmentSize: S }).endLsn;
    const damaged = judgeSegment(flip(seg, Number(scanEnd - start(1n)) - 10), { segmentStart: start(1n), segmentSize: S });
    expect(damaged.sound).toBe(false);
  });
});

describe('judgeSegmentJoin (the record that crosses two segments)', () => {
  const both = (files: Uint8Array[], a: Uint8Array = files[0]!, b: Uint8Array = files[1]!) => {
    const pa = judgeSegment(a, { segmentStart: start(1n), segmentSize: S });
    const pb = judgeSegment(b, { segmentStart: start(2n), segmentSize: S });
    return { pa, pb, join: judgeSegmentJoin({ bytes: a, scan: pa.scan, segmentStart: start(1n) }, { bytes: b, scan: pb.scan, segmentStart: start(2n) }, S) };
  };

  it('a sound crossing record: both segments and the seam are sound', () => {
    const { files } = stream({ crossLen: 60_000 });
    const { pa, pb, join } = both(files);
    expect(pa.scan.crossesEnd).toBe(true);
    expect(pa.sound && pb.sound).toBe(true);
    expect(join).toBeUndefined();
  });

  it('a byte flipped in the continuation (in N+1) or in the first part (in N): each segment alone looks sound, the seam is not', () => {
    const { files } = stream({ crossLen: 60_000 });
    const inNext = both(files, files[0]!, flip(files[1]!, 40 + 500));
    expect(inNext.pa.sound && inNext.pb.sound).toBe(true);
    expect(inNext.join).toMatch(/fails its CRC/);
    const crossOff = Number(both(files).pa.scan.crossingRecordStart! - start(1n));
    const inPrev = both(files, flip(files[0]!, crossOff + 24 + 3000 + (((crossOff + 3000) % BLCKSZ) < 30 ? 40 : 0)));
    expect(inPrev.pa.sound).toBe(true);
    expect(inPrev.join).toMatch(/fails its CRC/);
  });

  it('a continuation header that does not match (xlp_rem_len) is named', () => {
    const { files } = stream({ crossLen: 60_000 });
    const b = Uint8Array.from(files[1]!);
    new DataView(b.buffer).setUint32(16, new DataView(b.buffer).getUint32(16, true) + 8, true);
    expect(both(files, files[0]!, b).join).toMatch(/bytes to go/);
  });

  it('a record abandoned by a crash (next page flagged XLP_FIRST_IS_OVERWRITE_CONTRECORD) is not damage', () => {
    const { files } = stream({ crossLen: 60_000 });
    const b = Uint8Array.from(files[1]!);
    const v = new DataView(b.buffer);
    v.setUint16(2, (v.getUint16(2, true) & ~0x0001) | 0x0008, true);
    expect(both(files, files[0]!, b).join).toBeUndefined();
  });

  it('a segment that ends exactly on a record end is followed by one whose first record points back into it', () => {
    const { files } = stream();
    const { pa, join } = both(files);
    if (!pa.scan.crossesEnd) expect(join).toBeUndefined();
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });
});

describe('checkWalArchive and verifyRepositoryWal (an archive on disk)', () => {
  it('names a damaged segment, a damaged seam (on the later segment), a foreign .partial and a timeline without history; a sound archive is clean', async () => {
    const { mkdtempSync, writeFileSync: write, readFileSync: read, mkdirSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { pushWalFile } = await import('../../src/archive/push.js');
    const { storeHistoryFile } = await import('../../src/archive/history-files.js');
    const { checkWalArchive, verifyRepositoryWal } = await import('../../src/archive/archive-check.js');
    const repo = mkdtempSync(join(tmpdir(), 'pgbacula-walcheck-'));
    const root = join(repo, 'wal');
    const src = mkdtempSync(join(tmpdir(), 'pgbacula-walsrc-'));
    const { files } = stream({ crossLen: 60_000 });
    const names = ['000000010000000000000001', '000000010000000000000002'];
    for (let i = 0; i < 2; i++) {
      write(join(src, names[i]!), files[i]!);
      await pushWalFile({ root, sourcePath: join(src, names[i]!) });
    }
    write(join(src, '000000010000000000000003.partial'), files[2]!);
    await pushWalFile({ root, sourcePath: join(src, '000000010000000000000003.partial') });
    const sys = SYS.toString();
    const clean = await checkWalArchive(root, sys);
    expect(clean).toMatchObject({ checked: 3, seams: 1, damaged: [] });
    expect((await verifyRepositoryWal(repo, [])).problems).toEqual([]);

    // The continuation in segment 2 damaged: segment 2 alone looks sound; the seam names it.
    const p2 = join(root, sys, '00000001', names[1]!);
    const b = read(p2);
    b[40 + 100] = b[40 + 100]! ^ 0x01;
    write(p2, b);
    const seam = await checkWalArchive(root, sys);
    expect(seam.damaged.map((d) => [d.name, d.problem])).toEqual([[names[1], expect.stringMatching(/^after 000000010000000000000001: the record at .* fails its CRC/)]]);
    // A restore to a point in segment 1 reads no further: segments past the bound are not read.
    const bounded = await checkWalArchive(root, sys, undefined, 0n, undefined, 1n);
    expect(bounded).toMatchObject({ checked: 1, seams: 0, damaged: [] });
    // A timeline 2 segment without 00000002.history (stored by hand: wal-push would refuse it).
    await storeHistoryFile(root, sys, 2, Buffer.from('1\t0/2100000\tno recovery target specified\n'), 'test');
    mkdirSync(join(root, sys, '00000003'));
    write(join(root, sys, '00000003', '000000030000000000000004'), stream().files[0]!);
    const v = await verifyRepositoryWal(repo, []);
    expect(v.problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/00000001\/000000010000000000000002: DAMAGED: after 000000010000000000000001/),
      expect.stringMatching(/WAL of timeline 00000003 without a readable 00000003\.history/),
      expect.stringMatching(/000000030000000000000004: DAMAGED: its first page is not a valid WAL page/),
    ]));
    expect(v.lines.join('\n')).toMatch(/^WAL archive of system \d+: DAMAGED/);
  });
});
