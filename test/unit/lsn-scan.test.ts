/**
 * The page LSN scan (src/modes/pitr_block/lsn-scan.ts): which pages count as changed, and the
 * lookup the block plan reads — per segment, whatever order the plan lists segments in, with
 * the forks that are not read page by page stored whole.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { PlanEntry } from '../../src/pipeline/cluster-walk.js';
import { planBlocks } from '../../src/modes/pitr_block/block-plan.js';
import { changedPagesIn, scanChangedBlocks } from '../../src/modes/pitr_block/lsn-scan.js';

const BS = 8192;
const dir = mkdtempSync(join(tmpdir(), 'pgbacula-lsn-scan-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Pages whose pd_lsn are the given LSNs, each holding items (pd_lower past the header) unless `empty`. */
function pages(lsns: readonly bigint[], empty: readonly number[] = []): Buffer {
  const b = Buffer.alloc(lsns.length * BS, 0x11);
  lsns.forEach((lsn, i) => {
    b.writeUInt32LE(Number(lsn >> 32n), i * BS);
    b.writeUInt32LE(Number(lsn & 0xffffffffn), i * BS + 4);
    b.writeUInt16LE(empty.includes(i) ? 24 : 40, i * BS + 12);
  });
  return b;
}

describe('changedPagesIn', () => {
  it('keeps pages with an LSN from the reference start on, and empty pages never WAL-logged; not bootstrap pages with items', () => {
    const from = 0x1_0000_2000n;
    const got: number[] = [];
    const p = pages([0n, from - 1n, from, from + 1n, 0x5_0000_0000n, 0x0_ffff_ffffn, 0n, 0n], [0]);
    p.fill(0, 7 * BS); // an all-zero page
    changedPagesIn(p, BS, from, 100, (b) => got.push(b));
    // 100: LSN 0, no item (initialised, never logged); 106: LSN 0 with items (initdb's); 107: zeros.
    expect(got).toEqual([100, 102, 103, 104, 107]);
  });
});

describe('scanChangedBlocks', () => {
  it('reads main forks of the reference only, answers per segment in any listing order, and stores other forks whole', async () => {
    const db = join(dir, 'base', '5');
    mkdirSync(db, { recursive: true });
    const from = 0x2000n;
    const old = 0x1000n;
    // In the plan's (name) order: segment 10 before segment 2.
    const files: [string, Buffer][] = [
      ['16384', pages([old, from, old, 0n], [3])], // segment 0: blocks 1 and 3 changed
      ['16384.10', pages([from, old])], // segment 10: block 40 (4 blocks a segment here)
      ['16384.2', pages([old, old])], // segment 2: nothing changed
      ['16384_vm', pages([old])], // visibility map: whole
      ['16390', pages([from, from])], // not in the reference: not read
    ];
    const entries: PlanEntry[] = files.map(([name, data]) => {
      writeFileSync(join(db, name), data);
      return { path: `pgdata/base/5/${name}`, absPath: join(db, name), type: 'file', mode: 0o600, mtimeMs: 0, size: data.length, verifyPages: true, firstBlock: 0 };
    });
    const inReference = (p: string) => !p.endsWith('/16390');
    const scan = await scanChangedBlocks({ entries, inReference, fromLsn: from, blockSize: BS, blocksPerSegment: 4 });
    expect(scan.filesScanned).toBe(3);
    expect(scan.changedBlocks).toBe(3);
    expect(scan.bytesScanned).toBe((4 + 2 + 2) * BS);
    const rel = { spcOid: 1663, dbOid: 5, relNumber: 16384 };
    expect(Array.from(scan.lookup.entry({ ...rel, fork: 0 })!.blocksIn(0, 4))).toEqual([1, 3]);
    expect(Array.from(scan.lookup.entry({ ...rel, fork: 0 })!.blocksIn(40, 44))).toEqual([40]);
    expect(Array.from(scan.lookup.entry({ ...rel, fork: 0 })!.blocksIn(8, 12))).toEqual([]);
    expect(scan.lookup.entry({ ...rel, fork: 2 })!.limitBlock).toBe(0);
    // What the plan makes of it: three incremental segments (one unchanged), the map and the new relation whole.
    const plan = planBlocks({ entries, changed: scan.lookup, inReference, blockSize: BS, blocksPerSegment: 4 });
    expect(plan.stats).toMatchObject({ incrementalFiles: 2, unchangedFiles: 1, wholeFiles: 2, changedBlocks: 3 });
    const made = Array.from(plan.entries).map((e) => [e.path, e.incremental ? Array.from(e.incremental.blocks) : 'whole']);
    expect(made).toEqual([
      ['pgdata/base/5/INCREMENTAL.16384', [1, 3]],
      ['pgdata/base/5/INCREMENTAL.16384.10', [0]],
      ['pgdata/base/5/INCREMENTAL.16384.2', []],
      ['pgdata/base/5/16384_vm', 'whole'],
      ['pgdata/base/5/16390', 'whole'],
    ]);
  });
});
