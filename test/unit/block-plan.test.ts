/**
 * What each file of a block-level backup becomes (src/modes/pitr_block/block-plan.ts), the
 * choice of its reference (reference.ts) and the chain check (src/repo/chain.ts): pure logic,
 * tested on hand-made plans, tables and manifests.
 */
import { describe, expect, it } from 'vitest';
import { BlockRefTable, NO_LIMIT } from '../../src/format/block-ref-table.js';
import type { BackupManifest } from '../../src/format/backup-manifest.js';
import { incrementalFileSize, parseIncrementalHeader, wholePathOf } from '../../src/format/incremental-file.js';
import type { PlanEntry } from '../../src/pipeline/cluster-walk.js';
import { planBlocks, relationOf } from '../../src/modes/pitr_block/block-plan.js';
import { chooseReference } from '../../src/modes/pitr_block/reference.js';
import { chainOf, ChainError } from '../../src/repo/chain.js';

const BS = 8192;
const SEG = 131072;

function file(path: string, blocks: number, firstBlock = 0): PlanEntry {
  return { path, absPath: `/x/${path}`, type: 'file', mode: 0o600, mtimeMs: 0, size: blocks * BS, verifyPages: true, firstBlock };
}

const rel = (relNumber: number, fork = 0, dbOid = 5, spcOid = 1663) => ({ spcOid, dbOid, relNumber, fork });

function plan(entries: PlanEntry[], table: BlockRefTable, inRef: (p: string) => boolean = () => true) {
  const p = planBlocks({ entries, changed: table, inReference: inRef, blockSize: BS, blocksPerSegment: SEG });
  return { out: [...p.entries], stats: p.stats, totalBytes: p.totalBytes };
}

describe('relationOf', () => {
  it('reads the relation fork segment of every relation directory', () => {
    expect(relationOf('pgdata/base/5/16384')).toEqual({ spcOid: 1663, dbOid: 5, relNumber: 16384, fork: 0, segment: 0 });
    expect(relationOf('pgdata/base/5/16384_vm')).toMatchObject({ fork: 2 });
    expect(relationOf('pgdata/base/5/16384_fsm.3')).toMatchObject({ fork: 1, segment: 3 });
    expect(relationOf('pgdata/global/1262')).toEqual({ spcOid: 1664, dbOid: 0, relNumber: 1262, fork: 0, segment: 0 });
    expect(relationOf('tablespaces/16400/PG_17_202406281/5/16401.2')).toEqual({ spcOid: 16400, dbOid: 5, relNumber: 16401, fork: 0, segment: 2 });
  });
  it('is undefined for every other file', () => {
    for (const p of ['pgdata/base/5/pg_filenode.map', 'pgdata/base/5/PG_VERSION', 'pgdata/pg_xact/0000', 'pgdata/base/5/t3_16384', 'pgdata/global/pg_control', 'tablespaces/1/x/5/16384', 'pgdata/base/x/16384']) {
      expect(relationOf(p), p).toBeUndefined();
    }
  });
});

describe('planBlocks', () => {
  it('stores the changed blocks of a relation as an incremental file, ascending and relative to the segment', () => {
    const t = new BlockRefTable();
    for (const b of [SEG + 7, SEG + 3, 2, SEG + 100]) t.markBlock(rel(16384), b);
    const { out, stats } = plan([file('pgdata/base/5/16384', SEG), file('pgdata/base/5/16384.1', 200, SEG)], t);
    expect(out.map((e) => e.path)).toEqual(['pgdata/base/5/INCREMENTAL.16384', 'pgdata/base/5/INCREMENTAL.16384.1']);
    expect([...out[0]!.incremental!.blocks]).toEqual([2]);
    expect([...out[1]!.incremental!.blocks]).toEqual([3, 7, 100]);
    expect(out[1]!.incremental!.truncationBlocks).toBe(200);
    expect(out[1]!.size).toBe(incrementalFileSize(3, BS));
    expect(out[1]!.firstBlock).toBe(SEG);
    const h = parseIncrementalHeader(out[1]!.incremental!.header, { blockSize: BS, blocksPerSegment: SEG });
    expect([...h.blocks]).toEqual([3, 7, 100]);
    expect(h.headerLength).toBe(out[1]!.incremental!.header.length);
    expect(stats).toMatchObject({ incrementalFiles: 2, changedBlocks: 4, bytesRead: 4 * BS, bytesSkipped: (SEG + 200 - 4) * BS });
  });

  it('keeps an unchanged relation as an empty incremental file with its length', () => {
    const { out, stats } = plan([file('pgdata/base/5/16384', 10)], new BlockRefTable());
    expect(out[0]!.path).toBe('pgdata/base/5/INCREMENTAL.16384');
    expect(out[0]!.size).toBe(12);
    expect(out[0]!.incremental!.truncationBlocks).toBe(10);
    expect(stats.unchangedFiles).toBe(1);
  });

  it('stores whole what the block rules cannot describe', () => {
    const t = new BlockRefTable();
    t.markBlock(rel(1), 0);
    t.setLimit(rel(2), 0); // created in the range
    t.setLimit(rel(3), 5); // truncated inside the segment
    t.markBlock(rel(3), 7);
    for (let b = 0; b < 10; b++) t.markBlock(rel(4), b); // all of it changed
    t.setLimit(rel(0, 0, 6), 0); // database 6 created
    const entries = [
      file('pgdata/base/5/1_fsm', 3),
      file('pgdata/base/5/2', 4),
      file('pgdata/base/5/3', 8),
      file('pgdata/base/5/4', 10),
      file('pgdata/base/6/9', 4),
      file('pgdata/base/5/7', 4), // not in the reference
      file('pgdata/base/5/8', 0), // empty
      { ...file('pgdata/base/5/10', 1), size: 100 }, // not whole blocks
      file('pgdata/base/5/pg_filenode.map', 1),
      file('pgdata/pg_xact/0000', 1),
    ];
    const { out, stats } = plan(entries, t, (p) => !p.endsWith('/7'));
    expect(out.map((e) => e.path)).toEqual(entries.map((e) => e.path));
    expect(out.every((e) => e.incremental === undefined)).toBe(true);
    expect(stats.wholeFiles).toBe(8);
  });

  it('trusts a limit only beyond the end of the segment', () => {
    const t = new BlockRefTable();
    t.setLimit(rel(16384), SEG + 50); // truncated in segment 1
    t.markBlock(rel(16384), 5);
    const { out } = plan([file('pgdata/base/5/16384', SEG), file('pgdata/base/5/16384.1', 60, SEG)], t);
    expect(out[0]!.incremental && [...out[0]!.incremental.blocks]).toEqual([5]);
    expect(out[1]!.incremental).toBeUndefined();
  });

  it('makes block lists only as the emitter reaches them', () => {
    const t = new BlockRefTable();
    t.markBlock(rel(1), 1);
    const p = planBlocks({ entries: [file('pgdata/base/5/1', 4)], changed: t, inReference: () => true, blockSize: BS, blocksPerSegment: SEG });
    // The plan holds decisions only; each walk of the entries makes fresh lists.
    const a = [...p.entries][0]!.incremental!.blocks;
    const b = [...p.entries][0]!.incremental!.blocks;
    expect(a).not.toBe(b);
    expect([...a]).toEqual([...b]);
    expect(p.totalBytes).toBe(incrementalFileSize(1, BS));
    expect(NO_LIMIT).toBe(0xffffffff);
  });
});

function manifest(id: string, level: BackupManifest['level'], extra: Partial<BackupManifest> = {}): BackupManifest {
  return {
    format: 'pgbacula-backup-manifest', version: 1, backupId: id, mode: 'pitr_block', level, label: id, systemIdentifier: '42', pgVersion: '17.0', pgVersionNum: 170000,
    walSegmentSize: 16777216, blockSize: BS, fromStandby: false, dataDirectory: '/d', startLsn: `0/${id.length}000028`, stopLsn: '0/9000000', startTimeline: 1, stopTimeline: 1,
    startTime: new Date().toISOString(), stopTime: new Date().toISOString(), hashAlgorithm: 'xxh3', rangeSize: 8 << 20, pageVerification: 'passed', checksumFailures: 0, tablespaces: [], walSegments: [], files: [],
    ...extra,
  };
}

describe('chooseReference and chainOf', () => {
  const req = { systemId: '42', timeline: 1, blockSize: BS, maxAgeDays: 14, now: new Date() };
  const f = manifest('F1', 'full', { startLsn: '0/1000028' });
  const i1 = manifest('I1', 'incremental', { startLsn: '0/2000028', reference: { backupId: 'F1', startLsn: '0/1000028', timeline: 1 } });

  it('an incremental counts from the newest backup, a differential from the newest full', () => {
    expect(chooseReference([f, i1], { ...req, type: 'incr' })).toMatchObject({ kind: 'reference', level: 'incremental', reference: { backupId: 'I1' } });
    expect(chooseReference([f, i1], { ...req, type: 'diff' })).toMatchObject({ kind: 'reference', level: 'differential', reference: { backupId: 'F1' } });
    expect(chooseReference([f, i1], { ...req, type: 'full' })).toEqual({ kind: 'full' });
  });

  it('falls back to a full backup, saying why', () => {
    expect(chooseReference([], { ...req, type: 'incr' })).toMatchObject({ kind: 'full', because: expect.stringContaining('there is none') });
    expect(chooseReference([f], { ...req, type: 'incr', systemId: '43' })).toMatchObject({ kind: 'full', because: expect.stringContaining('database system 43') });
    expect(chooseReference([f], { ...req, type: 'incr', timeline: 2 })).toMatchObject({ kind: 'full', because: expect.stringContaining('timeline 2') });
    expect(chooseReference([f], { ...req, type: 'incr', now: new Date(Date.now() + 20 * 86_400_000) })).toMatchObject({ kind: 'full', because: expect.stringContaining('pitr_block_summary_days=14') });
    // I1's own reference is gone: nothing can be counted from it.
    expect(chooseReference([i1], { ...req, type: 'incr' })).toMatchObject({ kind: 'full', because: expect.stringContaining('F1, which is not a complete backup') });
  });

  it('checks every link of a chain', () => {
    expect(chainOf(i1, [f, i1]).map((m) => m.backupId)).toEqual(['F1', 'I1']);
    const replaced = manifest('F1', 'full', { startLsn: '0/5000028' });
    expect(() => chainOf(i1, [replaced, i1])).toThrow(ChainError);
    expect(() => chainOf(i1, [replaced, i1])).toThrow(/starts at 0\/5000028/);
    const other = manifest('F1', 'full', { startLsn: '0/1000028', systemIdentifier: '7' });
    expect(() => chainOf(i1, [other, i1])).toThrow(/database system 7/);
  });

  it('names files by what they stand for', () => {
    expect(wholePathOf('pgdata/base/5/INCREMENTAL.16384.1')).toBe('pgdata/base/5/16384.1');
    expect(wholePathOf('pgdata/base/5/16384')).toBe('pgdata/base/5/16384');
  });
});
