/**
 * Memory of a block-level backup plan over an XL change set (docs/block-incremental.md): 10^8
 * changed blocks — every other block of a 1.5 TiB relation — are held as a block reference table
 * of bitmaps, and the plan makes each file's block list only when the emitter reaches it, so
 * walking the whole plan never holds more than one list.
 */
import { describe, expect, it } from 'vitest';
import { BlockRefTable } from '../../src/format/block-ref-table.js';
import type { PlanEntry } from '../../src/pipeline/cluster-walk.js';
import { planBlocks } from '../../src/modes/pitr_block/block-plan.js';

const BS = 8192;
const SEG = 131072;
const CHANGED = 100_000_000;

describe('a plan over 10^8 changed blocks', () => {
  it('stays far below the 256 MiB process-tree bar while every incremental file is planned', () => {
    const before = process.memoryUsage();
    const rf = { spcOid: 1663, dbOid: 5, relNumber: 16384, fork: 0 };
    const t = new BlockRefTable();
    for (let b = 0; b < 2 * CHANGED; b += 2) t.markBlock(rf, b);
    expect(t.blockCount).toBe(CHANGED);
    const segments = Math.ceil((2 * CHANGED) / SEG);
    const entries: PlanEntry[] = Array.from({ length: segments }, (_, s) => ({
      path: `pgdata/base/5/16384${s === 0 ? '' : `.${s}`}`,
      absPath: `/nowhere/16384.${s}`,
      type: 'file',
      mode: 0o600,
      mtimeMs: 0,
      size: Math.min(SEG, 2 * CHANGED - s * SEG) * BS,
      verifyPages: true,
      firstBlock: s * SEG,
    }));
    const plan = planBlocks({ entries, changed: t, inReference: () => true, blockSize: BS, blocksPerSegment: SEG });
    expect(plan.stats.changedBlocks).toBe(CHANGED);
    expect(plan.stats.incrementalFiles).toBe(segments);
    let peak = 0;
    let blocks = 0;
    let n = 0;
    for (const e of plan.entries) {
      blocks += e.incremental!.blocks.length;
      if (++n % 100 === 0) {
        const m = process.memoryUsage();
        peak = Math.max(peak, m.heapUsed + m.arrayBuffers - before.heapUsed - before.arrayBuffers);
      }
    }
    expect(blocks).toBe(CHANGED);
    // The table is ~24 MiB of bitmaps; lists are made one file at a time (garbage is collected
    // lazily, so the bound is loose, but nowhere near the 800 MB a list per file would take).
    expect(t.approximateBytes).toBeLessThan(40 * 1024 * 1024);
    expect(peak).toBeLessThan(256 * 1024 * 1024);
  }, 120_000);
});
