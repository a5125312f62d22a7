import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adoptNewerWal, holdsWalBeyond, newestWal } from '../../src/archive/adopt-wal.js';
import { receiveDir, systemDir, timelineDir } from '../../src/archive/layout.js';
import { pushWalFile } from '../../src/archive/push.js';
import { recordSegments, SYNTH_SEG } from './wal-synth.js';
import { scratchDirs } from '../harness/scratch-dirs.js';

/** A Bacula restore adopting the spool's newer WAL into its staged archive (src/archive/adopt-wal.ts). */
const SYS = 7311887020705307463n;
const ID = SYS.toString();
const segs = recordSegments({ systemId: SYS, timeline: 1 }, 1n, 4);
const NAME = (n: number): string => `00000001000000000000000${n}`;
/** A receiver's open segment: whole-size, its first `pages` pages received, the rest zero. */
function openSegment(pages: number): Uint8Array {
  const b = Buffer.alloc(SYNTH_SEG);
  b.set(segs[3]!.subarray(0, 8192 * pages));
  return b;
}
const { tmp, file } = scratchDirs('adopt');
async function archiveOf(complete: number[]): Promise<string> {
  const root = tmp();
  for (const n of complete) await pushWalFile({ root, sourcePath: file(tmp(), NAME(n), segs[n - 1]!), summarize: false });
  return root;
}
/** Every file under a directory with its size and mtime: what "only read" must leave as it was. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, n.name);
      if (n.isDirectory()) walk(p);
      else out.push(`${p} ${statSync(p).size} ${statSync(p).mtimeMs}`);
    }
  };
  walk(dir);
  return out.sort();
}

describe('adopting the WAL a spool holds beyond a restore\'s staged archive', () => {
  it('takes the complete segments it lacks and the receiver\'s open segment, and leaves the spool as it was', async () => {
    const staged = await archiveOf([1, 2]);
    const spool = await archiveOf([1, 2, 3]);
    file(receiveDir(spool, ID), `${NAME(4)}.partial`, openSegment(3));
    const before = snapshot(spool);
    const warnings: string[] = [];
    const a = await adoptNewerWal({ from: spool, into: staged, systemId: ID, warn: (t) => warnings.push(t) });
    expect(a).toMatchObject({ none: false, segments: 1, first: NAME(3), last: NAME(3), partial: { name: `${NAME(4)}.partial`, source: join(receiveDir(spool, ID), `${NAME(4)}.partial`) }, refused: [] });
    expect(warnings).toEqual([]);
    expect(readFileSync(join(timelineDir(staged, ID, 1), NAME(3))).equals(Buffer.from(segs[2]!))).toBe(true);
    expect(readFileSync(join(timelineDir(staged, ID, 1), `${NAME(4)}.partial`)).subarray(0, 8192 * 3).equals(Buffer.from(segs[3]!.subarray(0, 8192 * 3)))).toBe(true);
    expect(snapshot(spool)).toEqual(before);
    // A second pass finds nothing more to take.
    expect(await adoptNewerWal({ from: spool, into: staged, systemId: ID, warn: (t) => warnings.push(t) })).toMatchObject({ segments: 0, refused: [] });
    expect(warnings).toEqual([]);
  });

  it('of two copies of the open segment keeps the one holding more WAL, and never adds a partial over a complete segment', async () => {
    // The last job shipped the open segment at one page; the receiver went on to three.
    const staged = await archiveOf([1, 2, 3]);
    file(timelineDir(staged, ID, 1), `${NAME(4)}.partial`, openSegment(1));
    const spool = await archiveOf([1, 2, 3]);
    file(receiveDir(spool, ID), `${NAME(4)}.partial`, openSegment(3));
    const a = await adoptNewerWal({ from: spool, into: staged, systemId: ID, warn: () => undefined });
    expect(a.partial?.name).toBe(`${NAME(4)}.partial`);
    expect(readFileSync(join(timelineDir(staged, ID, 1), `${NAME(4)}.partial`)).subarray(0, 8192 * 3).equals(Buffer.from(segs[3]!.subarray(0, 8192 * 3)))).toBe(true);
    expect(readdirSync(systemDir(staged, ID))).not.toContain('aside');

    // The other way round (the spool's copy is the older one): the staged copy stays.
    const staged2 = await archiveOf([1, 2, 3]);
    file(timelineDir(staged2, ID, 1), `${NAME(4)}.partial`, openSegment(3));
    const spool2 = await archiveOf([1, 2, 3]);
    file(receiveDir(spool2, ID), `${NAME(4)}.partial`, openSegment(1));
    expect((await adoptNewerWal({ from: spool2, into: staged2, systemId: ID, warn: () => undefined })).partial).toBeUndefined();
    expect(readFileSync(join(timelineDir(staged2, ID, 1), `${NAME(4)}.partial`)).subarray(0, 8192 * 3).equals(Buffer.from(segs[3]!.subarray(0, 8192 * 3)))).toBe(true);

    // The media hold the complete segment: the spool's partial of it is not added.
    const staged3 = await archiveOf([1, 2, 3, 4]);
    const b = await adoptNewerWal({ from: spool, into: staged3, systemId: ID, warn: () => undefined });
    expect(b.partial).toBeUndefined();
    expect(readdirSync(timelineDir(staged3, ID, 1))).not.toContain(`${NAME(4)}.partial`);
  });

  it('leaves out a damaged spool segment with a warning, and takes nothing of another system', async () => {
    const staged = await archiveOf([1]);
    const spool = await archiveOf([1, 2]);
    const bad = Buffer.from(segs[2]!);
    bad.writeUInt32LE(0xdead, 8192 + 8); // the second page's address
    file(timelineDir(spool, ID, 1), NAME(3), bad);
    const warnings: string[] = [];
    const a = await adoptNewerWal({ from: spool, into: staged, systemId: ID, warn: (t) => warnings.push(t) });
    expect(a.segments).toBe(1);
    expect(a.refused).toHaveLength(1);
    expect(a.refused[0]).toMatch(new RegExp(`^${NAME(3)}: `));
    expect(warnings.join('\n')).toMatch(new RegExp(`${NAME(3)} was not taken from the spool: `));
    expect(readdirSync(timelineDir(staged, ID, 1))).not.toContain(NAME(3));

    expect(await adoptNewerWal({ from: spool, into: staged, systemId: '6000000000000000001', warn: () => undefined })).toMatchObject({ none: true, segments: 0 });
  });

  it('says whether a spool holds WAL beyond the staged archive', async () => {
    const staged = await archiveOf([1, 2, 3]);
    const spool = await archiveOf([1, 2, 3]);
    expect(await holdsWalBeyond((await newestWal(spool, ID))!, await newestWal(staged, ID))).toBe(false);
    file(timelineDir(staged, ID, 1), `${NAME(4)}.partial`, openSegment(1));
    file(receiveDir(spool, ID), `${NAME(4)}.partial`, openSegment(1));
    expect(await holdsWalBeyond((await newestWal(spool, ID))!, await newestWal(staged, ID))).toBe(false);
    file(receiveDir(spool, ID), `${NAME(4)}.partial`, openSegment(2));
    expect((await newestWal(spool, ID))?.name).toBe(`${NAME(4)}.partial`);
    expect(await holdsWalBeyond((await newestWal(spool, ID))!, await newestWal(staged, ID))).toBe(true);
    expect(await holdsWalBeyond((await newestWal(spool, ID))!, undefined)).toBe(true);
  });
});
