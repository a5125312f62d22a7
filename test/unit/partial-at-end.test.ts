import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { restoreCommandLine } from '../../src/archive/archive-command.js';
import { fetchWalFile } from '../../src/archive/fetch.js';
import { storeHistoryFile } from '../../src/archive/history-files.js';
import { receiveDir } from '../../src/archive/layout.js';
import { pushWalFile } from '../../src/archive/push.js';
import type { RecoverableRange } from '../../src/archive/window.js';
import { unreachedWal } from '../../src/restore/unreached-wal.js';
import { headerOnlySegment, recordSegments, SYNTH_SEG } from './wal-synth.js';
import { scratchDirs } from '../harness/scratch-dirs.js';

/** wal-fetch --latest: the newest .partial is the end of WAL, and only then (src/archive/partial-at-end.ts). */
const SYS = 7311887020705307463n;
const A1 = { systemId: SYS, timeline: 1 };
const segs = recordSegments(A1, 1n, 4);
const { tmp, file } = scratchDirs('partial');
/** Segments 1..3 complete, and the receiver's open segment 4. */
async function archive(): Promise<string> {
  const root = tmp();
  for (let n = 1; n <= 3; n++) await pushWalFile({ root, sourcePath: file(tmp(), `00000001000000000000000${n}`, segs[n - 1]!) });
  file(receiveDir(root, SYS.toString()), '000000010000000000000004.partial', segs[3]!.subarray(0, 8192 * 3));
  return root;
}
const fetch = (root: string, name: string, extra: Record<string, unknown> = {}) =>
  fetchWalFile({ root, systemId: SYS.toString(), fileName: name, destPath: join(tmp(), 'RECOVERYXLOG'), partialAtEnd: true, ...extra });

describe('a restore to the end of WAL replays the newest .partial', () => {
  it('serves the receiver\'s open segment as its segment, whole-size, when it is the end of WAL', async () => {
    const root = await archive();
    const out = join(tmp(), 'RECOVERYXLOG');
    const r = await fetchWalFile({ root, systemId: SYS.toString(), fileName: '000000010000000000000004', destPath: out, partialAtEnd: true });
    expect(r).toMatchObject({ status: 'fetched', fromPartial: true, bytes: SYNTH_SEG });
    const served = readFileSync(out);
    expect(served.length).toBe(SYNTH_SEG);
    expect(served.subarray(0, 8192 * 3).equals(Buffer.from(segs[3]!.subarray(0, 8192 * 3)))).toBe(true);
    // Without --latest it stays unserved (and said).
    expect(await fetch(root, '000000010000000000000004', { partialAtEnd: false })).toMatchObject({ status: 'absent', partial: expect.stringMatching(/\.receive\/000000010000000000000004\.partial$/) });
  });

  it('never lets a .partial shadow the complete segment', async () => {
    const root = await archive();
    await pushWalFile({ root, sourcePath: file(tmp(), '000000010000000000000004', segs[3]!) });
    const r = await fetch(root, '000000010000000000000004');
    expect(r).toMatchObject({ status: 'fetched', fromPartial: false });
  });

  it('is not the end of WAL when a later segment exists: an old copy stays unserved', async () => {
    const root = await archive();
    file(receiveDir(root, SYS.toString()), '000000010000000000000005.partial', headerOnlySegment(A1, 5n));
    expect(await fetch(root, '000000010000000000000004')).toMatchObject({ status: 'absent' });
    expect(await fetch(root, '000000010000000000000005')).toMatchObject({ status: 'fetched', fromPartial: true });
  });

  it('after a timeline switch the old timeline\'s partial is never served', async () => {
    const root = await archive();
    await storeHistoryFile(root, SYS.toString(), 2, Buffer.from('1\t0/4000100\tno recovery target specified\n'), 'test');
    expect(await fetch(root, '000000010000000000000004')).toMatchObject({ status: 'absent' });
    // The new timeline's own partial is its end.
    file(receiveDir(root, SYS.toString()), '000000020000000000000004.partial', headerOnlySegment({ systemId: SYS, timeline: 2 }, 4n));
    expect(await fetch(root, '000000020000000000000004')).toMatchObject({ status: 'fetched', fromPartial: true });
    expect(await fetch(root, '000000010000000000000004')).toMatchObject({ status: 'absent' });
  });

  it('a restore\'s staged copy reaching further wins over a lagging receiver\'s partial', async () => {
    const root = await archive();
    const staged = tmp();
    file(staged, '000000010000000000000004', segs[3]!);
    const r = await fetch(root, '000000010000000000000004', { stagedDir: staged });
    expect(r).toMatchObject({ status: 'fetched', fromPartial: false, source: join(staged, '000000010000000000000004') });
  });

  it('restore_command asks for it with --latest', () => {
    expect(restoreCommandLine({ repo: '/r', latest: true })).toMatch(/wal-fetch --repo \/r --latest %f %p$/);
    expect(restoreCommandLine({ repo: '/r' })).not.toContain('--latest');
  });

  it('a restore says when the newest .partial lies after a gap (recovery would end before it)', async () => {
    const root = await archive();
    const range = { lastSegment: '000000010000000000000003' } as RecoverableRange;
    const o = { archiveRoot: root, systemId: SYS.toString(), range, stopLsn: '0/1000100', segmentSize: SYNTH_SEG };
    expect(await unreachedWal(o)).toBeUndefined();
    // As a Bacula restore stages a cdp job's open segment: in its timeline directory.
    file(join(root, SYS.toString(), '00000001'), '000000010000000000000006.partial', headerOnlySegment(A1, 6n));
    expect(await unreachedWal(o)).toMatch(/000000010000000000000006\.partial \(the newest WAL received\) lies after a gap: the archive has no segment between 000000010000000000000003 and it/);
    expect(await unreachedWal({ ...o, range: { ...range, endsAtGap: '000000010000000000000004' } as RecoverableRange })).toMatch(/WAL segment 000000010000000000000004 is missing/);
  });

  describe('faults: the partial is untrusted input', () => {
    const ofReceiver = (root: string) => join(receiveDir(root, SYS.toString()), '000000010000000000000004.partial');
    const refusedAndNothingWritten = async (root: string, problem: RegExp) => {
      const dest = join(tmp(), 'RECOVERYXLOG');
      await expect(fetchWalFile({ root, systemId: SYS.toString(), fileName: '000000010000000000000004', destPath: dest, partialAtEnd: true })).rejects.toMatchObject({ code: 'WAL_DAMAGED', message: problem });
      expect(existsSync(dest)).toBe(false);
    };

    it('a receiver killed mid-write (a page cut short): served whole-size up to the cut, the rest zeros (the end of WAL)', async () => {
      const root = await archive();
      const cut = 8192 * 2 + 1000;
      writeFileSync(ofReceiver(root), segs[3]!.subarray(0, cut));
      const dest = join(tmp(), 'RECOVERYXLOG');
      expect(await fetchWalFile({ root, systemId: SYS.toString(), fileName: '000000010000000000000004', destPath: dest, partialAtEnd: true })).toMatchObject({ status: 'fetched', fromPartial: true });
      const served = readFileSync(dest);
      expect(served.length).toBe(SYNTH_SEG);
      expect(served.subarray(0, cut).equals(Buffer.from(segs[3]!.subarray(0, cut)))).toBe(true);
      expect(served.subarray(cut).every((b) => b === 0)).toBe(true);
    });

    it('a partial of another database system is refused, never replayed', async () => {
      const root = await archive();
      writeFileSync(ofReceiver(root), recordSegments({ systemId: 7311887020705300001n, timeline: 1 }, 1n, 4)[3]!.subarray(0, 8192 * 3));
      await refusedAndNothingWritten(root, /000000010000000000000004.*damaged/);
    });

    it('a partial whose first page header is damaged is refused', async () => {
      const root = await archive();
      const bad = Buffer.from(segs[3]!.subarray(0, 8192 * 3));
      bad[0] = bad[0]! ^ 0xff; // the page magic
      writeFileSync(ofReceiver(root), bad);
      await refusedAndNothingWritten(root, /000000010000000000000004.*damaged/);
    });
  });
});
