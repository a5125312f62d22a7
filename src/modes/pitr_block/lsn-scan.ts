/**
 * The last source of changed blocks (docs/block-incremental.md, "Where the changed blocks come
 * from"): read
 * every page of every relation file the reference holds and keep those written since the
 * reference started — by the LSN each page carries. It reads the whole cluster (a full backup's
 * reading, not its storing), and it is what a block-level job does when neither the server's
 * summaries nor pgbacula's cover the range (a WAL segment lost from the archive, an archive that
 * was not there).
 *
 * Which pages count as changed, and why each rule:
 *   - pd_lsn at or after the reference's start: a WAL record wrote it since (every change of a
 *     WAL-logged page sets its LSN; hint bits with data checksums on go through a full-page image);
 *     a change after this backup's start is replayed from this backup's own WAL anyway;
 *   - pd_lsn 0 and no line pointer (pd_lower at most the header's 24 bytes): a page never
 *     WAL-logged — all zeros, or initialised by an extension whose record never came (an aborted
 *     insert). Such a page may sit where the reference had another one before a truncation, so
 *     the older copy is never taken for it. A page with LSN 0 that holds items was written by
 *     initdb's bootstrap (catalogs), is older than any reference and unchanged since — a change
 *     would have set its LSN;
 *   - only main forks are read page by page: the visibility map's bits are cleared without its
 *     page's LSN moving, the free-space map is not WAL-logged, init forks are tiny — those files
 *     are stored whole (the lookup reports them "truncated to 0", which the plan stores whole).
 * What a scan cannot see: a relation dropped and a new one given the same file number since the
 * reference, by a file-level copy whose pages keep older LSNs (CREATE DATABASE with the file_copy
 * strategy into a database OID used again — an OID wraparound). Summaries see it; the job log
 * says when a scan was used.
 */
import { open } from 'node:fs/promises';
import type { PlanEntryList } from '../../pipeline/cluster-walk.js';
import { PAGE_HEADER_SIZE, PD_LOWER_OFFSET } from '../../format/page.js';
import { FORK_NUMBER, NO_LIMIT, relationOf, type ChangedBlockLookup, type RelationOf } from './block-plan.js';

const MAIN_FORK = FORK_NUMBER.main;
/** Bytes read at a time; each read yields to the event loop (the backup's WAL stream runs on it). */
const READ_BYTES = 1024 * 1024;

export interface LsnScanRequest {
  readonly entries: PlanEntryList;
  readonly inReference: (path: string) => boolean;
  /** The reference backup's start LSN. */
  readonly fromLsn: bigint;
  readonly blockSize: number;
  readonly blocksPerSegment: number;
  readonly signal?: AbortSignal;
}

export interface LsnScan {
  readonly lookup: ChangedBlockLookup;
  readonly changedBlocks: number;
  readonly filesScanned: number;
  readonly bytesScanned: number;
}

/** The blocks of one page buffer whose LSN says they changed: pure, for the scan and its tests. */
export function changedPagesIn(pages: Uint8Array, blockSize: number, fromLsn: bigint, firstBlock: number, out: (block: number) => void): void {
  const view = new DataView(pages.buffer, pages.byteOffset, pages.byteLength);
  const from = Number(fromLsn); // LSNs stay far below 2^53 (8 PiB of WAL)
  for (let off = 0, b = firstBlock; off + blockSize <= pages.length; off += blockSize, b++) {
    // pd_lsn: xlogid (high 32 bits) then xrecoff, each in the machine's (little-endian) order —
    // read in place rather than through readPageHeader (src/format/page.ts): no object per page.
    const lsn = view.getUint32(off, true) * 0x1_0000_0000 + view.getUint32(off + 4, true);
    if (lsn >= from || (lsn === 0 && view.getUint16(off + PD_LOWER_OFFSET, true) <= PAGE_HEADER_SIZE)) out(b);
  }
}

class GrowingList {
  private data = new Uint32Array(64);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Uint32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
  view(): Uint32Array {
    return this.data.subarray(0, this.length);
  }
}

const keyOf = (rf: { spcOid: number; dbOid: number; relNumber: number }): string => `${rf.spcOid}/${rf.dbOid}/${rf.relNumber}`;

export async function scanChangedBlocks(r: LsnScanRequest): Promise<LsnScan> {
  // Per relation, per segment: the plan lists a relation's segments in name order (1, 10, 2, …),
  // and asks for one segment's blocks at a time.
  const found = new Map<string, Map<number, GrowingList>>();
  const buffer = new Uint8Array(READ_BYTES - (READ_BYTES % r.blockSize));
  let changedBlocks = 0;
  let filesScanned = 0;
  let bytesScanned = 0;
  for (let i = 0; i < r.entries.length; i++) {
    const e = r.entries.at(i)!;
    if (e.type !== 'file' || e.size % r.blockSize !== 0) continue;
    const rel: RelationOf | undefined = relationOf(e.path);
    if (!rel || rel.fork !== MAIN_FORK || !r.inReference(e.path)) continue;
    r.signal?.throwIfAborted();
    let fh;
    try {
      fh = await open(e.absPath, 'r');
    } catch (err) {
      // Dropped since the walk: not scanned, so stored whole — and its emission finds it gone.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const list = new GrowingList();
    const first = rel.segment * r.blocksPerSegment;
    try {
      for (let at = 0; at < e.size; ) {
        const { bytesRead } = await fh.read(buffer, 0, Math.min(buffer.length, e.size - at), at);
        if (bytesRead === 0) break; // shorter now: truncated since the walk
        const whole = bytesRead - (bytesRead % r.blockSize);
        changedPagesIn(buffer.subarray(0, whole), r.blockSize, r.fromLsn, first + at / r.blockSize, (b) => list.push(b));
        bytesScanned += bytesRead;
        at += bytesRead;
        if (whole < bytesRead) break;
      }
    } finally {
      await fh.close();
    }
    const segments = found.get(keyOf(rel)) ?? new Map<number, GrowingList>();
    found.set(keyOf(rel), segments);
    segments.set(rel.segment, list);
    changedBlocks += list.length;
    filesScanned++;
  }
  const none = new Uint32Array(0);
  const wholeFile = { limitBlock: 0, blocksIn: () => none };
  const lookup: ChangedBlockLookup = {
    entry(rf) {
      // Not read page by page (another fork, or not scanned): "truncated to nothing", stored whole.
      const segments = rf.fork === MAIN_FORK ? found.get(keyOf(rf)) : undefined;
      if (!segments) return wholeFile;
      return {
        limitBlock: NO_LIMIT,
        blocksIn(start, end) {
          const list = segments.get(Math.floor(start / r.blocksPerSegment));
          if (!list) return none;
          const blocks = list.view();
          let lo = 0;
          while (lo < blocks.length && blocks[lo]! < start) lo++;
          let hi = lo;
          while (hi < blocks.length && blocks[hi]! < end) hi++;
          return blocks.slice(lo, hi);
        },
      };
    },
    databaseChanged: () => false,
  };
  return { lookup, changedBlocks, filesScanned, bytesScanned };
}
