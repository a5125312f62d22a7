/**
 * What each file of a block-level backup becomes (docs/block-incremental.md, "The incremental
 * file"): whole, or an incremental file holding the blocks changed since the reference. Pure:
 * the walked plan, the changed blocks and the reference's file list in; the plan to emit out.
 *
 * The block lists are made only when the emitter reaches their file, so a cluster with 10^8
 * changed blocks never holds them all at once: the plan keeps one small decision per file.
 */
import { encodeIncrementalHeader, incrementalFileSize, incrementalPathOf } from '../../format/incremental-file.js';
import { parseRelationFileName } from '../../format/relation-file.js';
import type { PlanEntry, PlanEntryList } from '../../pipeline/cluster-walk.js';

/** PostgreSQL's tablespace OIDs of base/ and global/. */
const DEFAULTTABLESPACE_OID = 1663;
const GLOBALTABLESPACE_OID = 1664;
export const FORK_NUMBER = { main: 0, fsm: 1, vm: 2, init: 3 } as const;
/** A block reference table's limit block when the range holds no truncation or creation. */
export const NO_LIMIT = 0xffffffff;
/** More changed than this share of its blocks: a file is cheaper stored whole. */
const WHOLE_ABOVE = 0.9;

/** What the plan needs of a block reference table (src/format/block-ref-table.ts). */
export interface ChangedBlockLookup {
  entry(rf: { spcOid: number; dbOid: number; relNumber: number; fork: number }): { readonly limitBlock: number; blocksIn(start: number, end: number): Uint32Array } | undefined;
  databaseChanged(spcOid: number, dbOid: number): boolean;
}

export interface BlockPlanStats {
  wholeFiles: number;
  incrementalFiles: number;
  unchangedFiles: number;
  changedBlocks: number;
  /** Bytes of relation files read for incremental files, and bytes of them left unread. */
  bytesRead: number;
  bytesSkipped: number;
}

export interface BlockPlan {
  /** In plan order; incremental entries are made as they are reached. */
  readonly entries: Iterable<PlanEntry>;
  /** Bytes the backup reads and stores before compression (whole files + incremental files). */
  readonly totalBytes: number;
  readonly stats: BlockPlanStats;
}

export interface RelationOf {
  readonly spcOid: number;
  readonly dbOid: number;
  readonly relNumber: number;
  readonly fork: number;
  readonly segment: number;
}

/** The relation fork segment a backup path stands for, or undefined for any other file. */
export function relationOf(path: string): RelationOf | undefined {
  const parts = path.split('/');
  const name = parts[parts.length - 1]!;
  let spcOid: number;
  let dbOid: number;
  if (parts.length === 3 && parts[0] === 'pgdata' && parts[1] === 'global') {
    spcOid = GLOBALTABLESPACE_OID;
    dbOid = 0;
  } else if (parts.length === 4 && parts[0] === 'pgdata' && parts[1] === 'base' && /^\d+$/.test(parts[2]!)) {
    spcOid = DEFAULTTABLESPACE_OID;
    dbOid = Number(parts[2]);
  } else if (parts.length === 5 && parts[0] === 'tablespaces' && /^\d+$/.test(parts[1]!) && /^PG_\d+_\d+$/.test(parts[2]!) && /^\d+$/.test(parts[3]!)) {
    spcOid = Number(parts[1]);
    dbOid = Number(parts[3]);
  } else {
    return undefined;
  }
  const r = parseRelationFileName(name);
  if (!r || r.temporary) return undefined;
  return { spcOid, dbOid, relNumber: r.relfilenode, fork: FORK_NUMBER[r.fork], segment: r.segment };
}

/** Per file, the relation it is (parsed once) and what it becomes. */
type Decision = { readonly kind: 'whole'; readonly rel?: RelationOf } | { readonly kind: 'incremental'; readonly rel: RelationOf; readonly blocks: number; readonly truncationBlocks: number };

export interface BlockPlanRequest {
  readonly entries: PlanEntryList;
  readonly changed: ChangedBlockLookup;
  /** Does the reference hold this file (whole or incremental)? Paths as wholePathOf (src/format/incremental-file.ts) gives them. */
  readonly inReference: (path: string) => boolean;
  readonly blockSize: number;
  readonly blocksPerSegment: number;
}

export function planBlocks(r: BlockPlanRequest): BlockPlan {
  const { blockSize, blocksPerSegment, changed } = r;
  const stats: BlockPlanStats = { wholeFiles: 0, incrementalFiles: 0, unchangedFiles: 0, changedBlocks: 0, bytesRead: 0, bytesSkipped: 0 };
  const blocksOf = (rel: RelationOf, start: number, end: number) => changed.entry(rel)!.blocksIn(start, end);

  const decide = (e: PlanEntry): Decision => {
    if (e.type !== 'file') return { kind: 'whole' };
    const rel = relationOf(e.path);
    if (!rel) return { kind: 'whole' };
    const whole = { kind: 'whole', rel } as const;
    // Not whole blocks, or longer than a segment: not a file the block rules describe.
    if (e.size % blockSize !== 0 || e.size / blockSize > blocksPerSegment) return whole;
    // The free-space map is not WAL-logged.
    if (rel.fork === FORK_NUMBER.fsm) return whole;
    if (!r.inReference(e.path)) return whole;
    if (changed.databaseChanged(rel.spcOid, rel.dbOid)) return whole;
    const sizeBlocks = e.size / blockSize;
    const segStart = rel.segment * blocksPerSegment;
    const entry = changed.entry(rel);
    if (!entry) return sizeBlocks === 0 ? whole : { kind: 'incremental', rel, blocks: 0, truncationBlocks: sizeBlocks };
    // Created, dropped or truncated in the range within (or before) this segment, or longer in
    // the range than the file is now: stored whole. A truncated and re-extended segment may
    // hold pages no WAL record describes, so the older copies are not trusted for any of it.
    if (entry.limitBlock !== NO_LIMIT && (entry.limitBlock < segStart + blocksPerSegment || Math.min(entry.limitBlock - segStart, blocksPerSegment) > sizeBlocks)) return whole;
    const count = entry.blocksIn(segStart, segStart + sizeBlocks).length;
    if (count * blockSize > WHOLE_ABOVE * e.size) return whole;
    return { kind: 'incremental', rel, blocks: count, truncationBlocks: sizeBlocks };
  };

  const decisions: Decision[] = [];
  let totalBytes = 0;
  for (const e of r.entries) {
    const d = decide(e);
    decisions.push(d);
    if (e.type !== 'file') continue;
    if (d.kind === 'whole') {
      totalBytes += e.size;
      if (d.rel) stats.wholeFiles++;
      continue;
    }
    totalBytes += incrementalFileSize(d.blocks, blockSize);
    if (d.blocks === 0) stats.unchangedFiles++;
    else stats.incrementalFiles++;
    stats.changedBlocks += d.blocks;
    stats.bytesRead += d.blocks * blockSize;
    stats.bytesSkipped += e.size - d.blocks * blockSize;
  }

  function* entries(): Generator<PlanEntry> {
    for (let i = 0; i < r.entries.length; i++) {
      const e = r.entries.at(i)!;
      const d = decisions[i]!;
      if (d.kind === 'whole') {
        yield e;
        continue;
      }
      const rel = d.rel;
      const segStart = rel.segment * blocksPerSegment;
      const blocks = d.blocks === 0 ? new Uint32Array(0) : blocksOf(rel, segStart, segStart + d.truncationBlocks).map((b) => b - segStart);
      yield {
        path: incrementalPathOf(e.path),
        absPath: e.absPath,
        type: 'file',
        mode: e.mode,
        mtimeMs: e.mtimeMs,
        size: incrementalFileSize(blocks.length, blockSize),
        verifyPages: e.verifyPages,
        firstBlock: e.firstBlock,
        incremental: { header: encodeIncrementalHeader(blocks, d.truncationBlocks, blockSize, blocksPerSegment), blocks, truncationBlocks: d.truncationBlocks, fileSize: e.size },
      };
    }
  }
  return { entries: { [Symbol.iterator]: entries }, totalBytes, stats };
}
