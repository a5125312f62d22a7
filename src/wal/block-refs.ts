/**
 * pgbacula's own WAL summarizer (docs/block-incremental.md, "pgbacula's summaries"): the blocks
 * that WAL records change, decoded from the records of a stretch of WAL and collected into a
 * block reference table, with the same effects as PostgreSQL 17's summarizer so that the result
 * equals the server's summary of the same range. Works for every supported major: the per-major
 * layouts are facts of src/pg/versions.ts, chosen by the page magic of the WAL itself.
 *
 * Records are read as one byte stream over consecutive segments: page headers skipped and
 * checked (magic, address, continuation length), records reassembled across pages and segments,
 * the xl_prev chain and the CRC-32C of each record checked. Valid WAL ends at the first record
 * or page that fails those checks (endOfWal).
 *
 * Pure: bytes in, values out.
 */
import { BlockRefTable, type RelFork } from '../format/block-ref-table.js';
import { DEFAULT_BLOCK_SIZE } from '../format/page.js';
import { versionFacts, type VersionFacts } from '../pg/versions.js';
import { DEFAULT_WAL_BLOCK_SIZE, formatLsn, type Lsn } from './lsn.js';
import { majorOfXlogPageMagic, parseWalPageHeader, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD } from './page-header.js';
import { crc32cUpdate } from '../format/crc32c.js';

export interface WalSummary {
  readonly table: BlockRefTable;
  /** Records whose start LSN is in the range, decoded whole (or, for a crossing tail, their headers). */
  readonly records: number;
  /** Why this range cannot be trusted (wal_level minimal, an unknown special record); undefined when it can. */
  readonly untrusted?: string;
  /**
   * The last record starting in the input continues past its end and its effect could not be
   * fully decoded (a special record whose main data lies further on, or headers cut off): its
   * start LSN. Block references of a crossing ordinary record ARE collected when its headers are complete.
   */
  readonly pendingTail?: Lsn;
  /** Valid WAL ended early (zeros, a recycled page, a bad CRC) at this LSN. */
  readonly endOfWal?: Lsn;
  /** Why valid WAL ended at endOfWal (zeros: undefined). */
  readonly endReason?: string;
  /** The first WAL page holding a counted record whose header names another timeline than o.timeline. */
  readonly foreignTimeline?: { readonly lsn: Lsn; readonly timeline: number };
}

export interface SegmentBytes {
  readonly segno: bigint;
  readonly bytes: Uint8Array;
}

export interface SummarizeOptions {
  readonly timeline: number;
  readonly segmentSize: number;
  readonly blockSize?: number;
}

/** Records that START in the segment (a record continued from the previous segment is skipped). */
export function summarizeSegment(bytes: Uint8Array, o: SummarizeOptions & { readonly segno: bigint }): WalSummary {
  const start = o.segno * BigInt(o.segmentSize);
  return summarizeRange([{ segno: o.segno, bytes }], { ...o, fromLsn: start, toLsn: start + BigInt(o.segmentSize) });
}

/**
 * Consecutive segments decoded as one stream (records crossing boundaries decoded whole); only
 * records whose start LSN is in [fromLsn, toLsn) count. Reading starts at the first record that
 * starts in the first segment, and stops at the first record starting at or after toLsn, at the
 * end of valid WAL, or at the end of the input (a gap in the segment numbers ends the input).
 */
export function summarizeRange(segments: readonly SegmentBytes[], o: SummarizeOptions & { readonly fromLsn: Lsn; readonly toLsn: Lsn }): WalSummary {
  const table = new BlockRefTable();
  const first = segments[0];
  if (!first) return { table, records: 0 };
  const stream = new WalStream(segments, o.segmentSize, o.blockSize ?? DEFAULT_WAL_BLOCK_SIZE);
  const h = parseWalPageHeader(first.bytes, 0);
  const major = h ? majorOfXlogPageMagic(h.magic) : undefined;
  if (!h || major === undefined) return { table, records: 0, endOfWal: stream.start, endReason: 'the first page is not a WAL page of PostgreSQL 10 to 18' };
  const collector = new Collector(table, versionFacts(major));
  const out: { records: number; untrusted?: string; pendingTail?: Lsn; endOfWal?: Lsn; endReason?: string; foreignTimeline?: { lsn: Lsn; timeline: number } } = { records: 0 };
  for (const ev of readRecords(stream, h.magic)) {
    if (ev.kind === 'end') {
      if (ev.lsn < o.toLsn) {
        out.endOfWal = ev.lsn;
        if (ev.reason !== undefined) out.endReason = ev.reason;
      }
      break;
    }
    if (ev.start >= o.toLsn) break;
    if (ev.start < o.fromLsn) continue;
    if (out.foreignTimeline === undefined && ev.timeline !== o.timeline) out.foreignTimeline = { lsn: ev.start, timeline: ev.timeline };
    out.records++;
    if (ev.kind === 'record') {
      collector.record(ev.start, ev.data, ev.data.length);
    } else {
      // Crossing the end of the input: headers only, when they are all there.
      if (!collector.crossing(ev.start, ev.data, ev.totLen)) out.pendingTail = ev.start;
      break;
    }
  }
  if (collector.untrusted !== undefined) out.untrusted = collector.untrusted;
  return { table, ...out };
}

// ---------------------------------------------------------------------------------------------
// The byte stream and its records
// ---------------------------------------------------------------------------------------------

const RECORD_HEADER_SIZE = 24;
/** No WAL record is longer (the server's own limit is just under 1 GiB). */
const MAX_RECORD_SIZE = 1024 * 1024 * 1024;
const SHORT_PHD = 24;
const LONG_PHD = 40;

/**
 * Consecutive segments as one addressable stream; ends at the first gap in segment numbers.
 * Positions inside it are byte offsets from its start (numbers: no bigint arithmetic per
 * record); `lsn(r)` turns one into an LSN.
 */
class WalStream {
  readonly start: Lsn;
  /** Bytes in the stream. */
  readonly length: number;
  private readonly segs: Uint8Array[] = [];

  constructor(
    segments: readonly SegmentBytes[],
    readonly segmentSize: number,
    readonly blockSize: number,
  ) {
    const first = segments[0]!.segno;
    for (const [i, s] of segments.entries()) {
      if (s.segno !== first + BigInt(i)) break;
      this.segs.push(s.bytes);
      if (s.bytes.length < segmentSize) break; // a short (partial) file ends the stream
    }
    this.start = first * BigInt(segmentSize);
    const last = this.segs.length - 1;
    this.length = last * segmentSize + Math.min(this.segs[last]!.length, segmentSize);
  }

  lsn(r: number): Lsn {
    return this.start + BigInt(r);
  }

  seg(r: number): Uint8Array {
    return this.segs[Math.floor(r / this.segmentSize)]!;
  }

  off(r: number): number {
    return r % this.segmentSize;
  }

  headerSize(pageRel: number): number {
    return pageRel % this.segmentSize === 0 ? LONG_PHD : SHORT_PHD;
  }
}

type RecordEvent =
  | { readonly kind: 'record'; readonly start: Lsn; readonly timeline: number; readonly data: Uint8Array }
  | { readonly kind: 'crossing'; readonly start: Lsn; readonly timeline: number; readonly data: Uint8Array; readonly totLen: number }
  | { readonly kind: 'end'; readonly lsn: Lsn; readonly reason: string | undefined };

/** The page header at pageRel when it belongs to this stream (magic and address), else undefined. */
function pageAt(stream: WalStream, pageRel: number, magic: number): { readonly info: number; readonly timeline: number; readonly remLen: number } | undefined {
  const h = parseWalPageHeader(stream.seg(pageRel), stream.off(pageRel));
  if (!h || h.magic !== magic || h.pageAddr !== stream.lsn(pageRel)) return undefined;
  return { info: h.info, timeline: h.timeline, remLen: h.remLen };
}

function isZero(stream: WalStream, r: number, n: number): boolean {
  const buf = stream.seg(r);
  const off = stream.off(r);
  for (let i = off; i < off + n && i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

function align8(n: number): number {
  return n + ((8 - (n % 8)) % 8);
}

function u32At(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/**
 * The records of the stream in order, as the server's reader sees them. A record cut off by the
 * end of the input is yielded once as 'crossing' with the bytes available; reading then stops.
 */
function* readRecords(stream: WalStream, magic: number): Generator<RecordEvent> {
  const bs = stream.blockSize;
  let pos = 0;
  const firstPage = pageAt(stream, 0, magic);
  if (!firstPage) {
    yield { kind: 'end', lsn: stream.start, reason: 'the first page is not a valid WAL page' };
    return;
  }
  let timeline = firstPage.timeline;
  pos = LONG_PHD;
  // A record continued from before the stream: skip its xlp_rem_len bytes (over following pages).
  if (firstPage.info & XLP_FIRST_IS_CONTRECORD) {
    let remaining = firstPage.remLen;
    for (;;) {
      const pageEnd = (Math.floor(pos / bs) + 1) * bs;
      const take = Math.min(remaining, pageEnd - pos);
      pos += take;
      remaining -= take;
      if (remaining === 0) break;
      if (pageEnd >= stream.length) return; // the input holds nothing but that continuation
      const p = pageAt(stream, pageEnd, magic);
      if (!p || (p.info & XLP_FIRST_IS_CONTRECORD) === 0 || p.remLen !== remaining) {
        yield { kind: 'end', lsn: stream.lsn(pageEnd), reason: `the WAL page at ${formatLsn(stream.lsn(pageEnd))} is not valid` };
        return;
      }
      pos = pageEnd + stream.headerSize(pageEnd);
    }
    pos = align8(pos);
  }

  let prev: Lsn | undefined;
  for (;;) {
    if (pos % bs === 0) {
      if (pos >= stream.length) return;
      const p = pageAt(stream, pos, magic);
      if (!p) {
        yield { kind: 'end', lsn: stream.lsn(pos), reason: isZero(stream, pos, SHORT_PHD) ? undefined : `the WAL page at ${formatLsn(stream.lsn(pos))} is not valid` };
        return;
      }
      timeline = p.timeline;
      pos += stream.headerSize(pos);
    }
    if (pos >= stream.length) return;
    const startRel = pos;
    const start = stream.lsn(pos);
    // Records start MAXALIGNed, so xl_tot_len never straddles a page.
    const totLen = u32At(stream.seg(pos), stream.off(pos));
    if (totLen === 0) {
      yield { kind: 'end', lsn: start, reason: undefined };
      return;
    }
    if (totLen < RECORD_HEADER_SIZE || totLen > MAX_RECORD_SIZE) {
      yield { kind: 'end', lsn: start, reason: `invalid record length ${totLen} at ${formatLsn(start)}` };
      return;
    }
    const got = reassemble(stream, startRel, totLen, magic);
    if (got.kind === 'overwritten') {
      // An incomplete record abandoned by a crash: WAL goes on at the page that says so.
      pos = got.resumeAt;
      prev = undefined;
      continue;
    }
    if (got.kind === 'bad-page') {
      yield { kind: 'end', lsn: start, reason: `a WAL page inside the record at ${formatLsn(start)} is not valid` };
      return;
    }
    if (got.kind === 'cut') {
      yield { kind: 'crossing', start, timeline, data: got.data, totLen };
      return;
    }
    const rec = got.data;
    if (prev !== undefined && (u32At(rec, 8) !== Number(prev & 0xffffffffn) || u32At(rec, 12) !== Number(prev >> 32n))) {
      yield { kind: 'end', lsn: start, reason: `broken xl_prev chain at ${formatLsn(start)}` };
      return;
    }
    let crc = crc32cUpdate(0xffffffff, rec, RECORD_HEADER_SIZE, totLen);
    crc = (crc32cUpdate(crc, rec, 0, 20) ^ 0xffffffff) >>> 0;
    if (crc !== u32At(rec, 20)) {
      yield { kind: 'end', lsn: start, reason: `bad record CRC at ${formatLsn(start)}` };
      return;
    }
    yield { kind: 'record', start, timeline, data: rec };
    prev = start;
    if (rec[17] === RM_XLOG_ID && (rec[16]! & 0xf0) === XLOG_SWITCH) {
      // The rest of the segment the switch record ends in is unused.
      pos = (Math.floor((got.end - 1) / stream.segmentSize) + 1) * stream.segmentSize;
      continue;
    }
    pos = align8(got.end);
  }
}

type Reassembled =
  | { readonly kind: 'whole'; readonly data: Uint8Array; readonly end: number }
  | { readonly kind: 'cut'; readonly data: Uint8Array }
  | { readonly kind: 'bad-page' }
  | { readonly kind: 'overwritten'; readonly resumeAt: number };

function reassemble(stream: WalStream, start: number, totLen: number, magic: number): Reassembled {
  const bs = stream.blockSize;
  const pageEnd0 = (Math.floor(start / bs) + 1) * bs;
  if (start + totLen <= pageEnd0 && start + totLen <= stream.length) {
    const off0 = stream.off(start);
    return { kind: 'whole', data: stream.seg(start).subarray(off0, off0 + totLen), end: start + totLen };
  }
  // Never more than the stream holds: a damaged length must not allocate gigabytes.
  const out = new Uint8Array(Math.min(totLen, stream.length - start));
  let got = 0;
  let p = start;
  for (;;) {
    const pageEnd = (Math.floor(p / bs) + 1) * bs;
    const take = Math.min(totLen - got, pageEnd - p, stream.length - p);
    const off = stream.off(p);
    out.set(stream.seg(p).subarray(off, off + take), got);
    got += take;
    p += take;
    if (got === totLen) return { kind: 'whole', data: out, end: p };
    if (pageEnd >= stream.length || got >= out.length) return { kind: 'cut', data: out.subarray(0, got) };
    const h = pageAt(stream, pageEnd, magic);
    if (!h) return { kind: 'bad-page' };
    if ((h.info & XLP_FIRST_IS_CONTRECORD) === 0 && (h.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD) !== 0) {
      return { kind: 'overwritten', resumeAt: pageEnd + stream.headerSize(pageEnd) };
    }
    // As the server reads it: a continuation page says how much of the record is still to come.
    if ((h.info & XLP_FIRST_IS_CONTRECORD) === 0 || h.remLen !== totLen - got) return { kind: 'bad-page' };
    p = pageEnd + stream.headerSize(pageEnd);
  }
}

// ---------------------------------------------------------------------------------------------
// What a record changes
// ---------------------------------------------------------------------------------------------

const RM_XLOG_ID = 0;
const RM_XACT_ID = 1;
const RM_SMGR_ID = 2;
const RM_DBASE_ID = 4;
const XLR_SPECIAL_REL_UPDATE = 0x01;
const XLOG_CHECKPOINT_SHUTDOWN = 0x00;
const XLOG_SWITCH = 0x40;
const XLOG_PARAMETER_CHANGE = 0x60;
const XLOG_END_OF_RECOVERY = 0x90;
const XLOG_SMGR_CREATE = 0x10;
const XLOG_SMGR_TRUNCATE = 0x20;
const SMGR_TRUNCATE_HEAP = 0x1;
const SMGR_TRUNCATE_VM = 0x2;
const XLOG_XACT_OPMASK = 0x70;
const XLOG_XACT_HAS_INFO = 0x80;
const XACT_COMMIT = 0x00;
const XACT_ABORT = 0x20;
const XACT_COMMIT_PREPARED = 0x30;
const XACT_ABORT_PREPARED = 0x40;
const XACT_XINFO_HAS_DBINFO = 1 << 0;
const XACT_XINFO_HAS_SUBXACTS = 1 << 1;
const XACT_XINFO_HAS_RELFILENODES = 1 << 2;
const MAIN_FORK = 0;
const FSM_FORK = 1;
const VM_FORK = 2;
const INIT_FORK = 3;
const MAX_FORK = 3;
const XLR_MAX_BLOCK_ID = 32;
const BLOCK_ID_DATA_SHORT = 255;
const BLOCK_ID_DATA_LONG = 254;
const BLOCK_ID_ORIGIN = 253;
const BLOCK_ID_TOPLEVEL_XID = 252;
const BKPBLOCK_FORK_MASK = 0x0f;
const BKPBLOCK_HAS_IMAGE = 0x10;
const BKPBLOCK_HAS_DATA = 0x20;
const BKPBLOCK_SAME_REL = 0x80;
const BKPIMAGE_HAS_HOLE = 0x01;
const WAL_LEVEL_MINIMAL = 0;
const HEAP_BLOCKS_PER_VM_PAGE = (DEFAULT_BLOCK_SIZE - 24) * 4;

/** Block references as flat quintuples: tablespace, database, relfilenode, fork, block. */
type BlockList = number[];

interface Decoded {
  readonly blocks: BlockList;
  /** Main data, when the whole record was at hand. */
  readonly main: Uint8Array | undefined;
}

/**
 * The fragment headers of a record (block references, main data length), as DecodeXLogRecord
 * walks them. `rec` holds the first rec.length bytes of the record's totLen (fewer for a record
 * cut off by the end of the input: then main is undefined). A string is why the headers do not
 * parse; 'cut' means the headers themselves run past the bytes at hand. Written without helper
 * closures: it runs once per record.
 */
function decodeRecord(rec: Uint8Array, totLen: number, facts: VersionFacts): Decoded | string {
  const have = rec.length;
  let off = RECORD_HEADER_SIZE;
  let remaining = totLen - RECORD_HEADER_SIZE;
  let datatotal = 0;
  let mainLen = 0;
  let maxId = -1;
  let spc = 0;
  let db = 0;
  let relNumber = 0;
  let haveRel = false;
  const blocks: BlockList = [];
  // Room for n more header bytes: 'short' (the record is malformed), 'cut' (input ended), or ok.
  const room = (n: number): string | undefined => (remaining < n ? 'truncated fragment header' : off + n > have ? CUT : undefined);
  while (remaining > datatotal) {
    let why = room(1);
    if (why) return why;
    remaining -= 1;
    const id = rec[off++]!;
    if (id === BLOCK_ID_DATA_SHORT) {
      if ((why = room(1))) return why;
      remaining -= 1;
      mainLen = rec[off++]!;
      datatotal += mainLen;
      break;
    } else if (id === BLOCK_ID_DATA_LONG) {
      if ((why = room(4))) return why;
      remaining -= 4;
      mainLen = u32At(rec, off);
      off += 4;
      datatotal += mainLen;
      break;
    } else if (id === BLOCK_ID_ORIGIN) {
      if ((why = room(2))) return why;
      remaining -= 2;
      off += 2;
    } else if (id === BLOCK_ID_TOPLEVEL_XID && facts.walTopLevelXidBlock) {
      if ((why = room(4))) return why;
      remaining -= 4;
      off += 4;
    } else if (id <= XLR_MAX_BLOCK_ID) {
      if (id <= maxId) return `out-of-order block_id ${id}`;
      maxId = id;
      if ((why = room(3))) return why;
      remaining -= 3;
      const forkFlags = rec[off]!;
      const dataLen = rec[off + 1]! | (rec[off + 2]! << 8);
      off += 3;
      if ((forkFlags & BKPBLOCK_HAS_DATA) !== 0 ? dataLen === 0 : dataLen !== 0) return `BKPBLOCK_HAS_DATA disagrees with data length ${dataLen}`;
      datatotal += dataLen;
      if (forkFlags & BKPBLOCK_HAS_IMAGE) {
        if ((why = room(5))) return why;
        remaining -= 5;
        const imgLen = rec[off]! | (rec[off + 1]! << 8);
        const bimgInfo = rec[off + 4]!;
        off += 5;
        datatotal += imgLen;
        if ((bimgInfo & facts.walImageCompressedMask) !== 0 && (bimgInfo & BKPIMAGE_HAS_HOLE) !== 0) {
          if ((why = room(2))) return why;
          remaining -= 2;
          off += 2;
        }
      }
      if (!(forkFlags & BKPBLOCK_SAME_REL)) {
        if ((why = room(12))) return why;
        remaining -= 12;
        spc = u32At(rec, off);
        db = u32At(rec, off + 4);
        relNumber = u32At(rec, off + 8);
        haveRel = true;
        off += 12;
      } else if (!haveRel) {
        return 'BKPBLOCK_SAME_REL on the first block reference';
      }
      if ((why = room(4))) return why;
      remaining -= 4;
      blocks.push(spc, db, relNumber, forkFlags & BKPBLOCK_FORK_MASK, u32At(rec, off));
      off += 4;
    } else {
      return `invalid block_id ${id}`;
    }
  }
  if (remaining !== datatotal) return 'fragment lengths do not add up to the record length';
  const main = have === totLen ? rec.subarray(totLen - mainLen, totLen) : undefined;
  return { blocks, main };
}

const CUT = 'cut';

class Collector {
  untrusted: string | undefined;

  constructor(
    private readonly table: BlockRefTable,
    private readonly facts: VersionFacts,
  ) {}

  private distrust(why: string): void {
    this.untrusted ??= why;
  }

  /** A whole record (CRC checked). */
  record(start: Lsn, rec: Uint8Array, totLen: number): void {
    const d = decodeRecord(rec, totLen, this.facts);
    if (typeof d === 'string') {
      // A whole record is never 'cut'.
      this.distrust(`the WAL record at ${formatLsn(start)} does not decode (${d})`);
      return;
    }
    this.special(start, rec, d.main!);
    this.mark(d.blocks);
  }

  /** A record cut off by the end of the input: true when its whole effect is known from its headers. */
  crossing(start: Lsn, rec: Uint8Array, totLen: number): boolean {
    if (rec.length < RECORD_HEADER_SIZE) return false;
    if (isSpecial(rec[17]!, rec[16]!, this.facts)) return false;
    const d = decodeRecord(rec, totLen, this.facts);
    if (d === CUT) return false;
    if (typeof d === 'string') {
      this.distrust(`the WAL record at ${formatLsn(start)} does not decode (${d})`);
      return true;
    }
    this.mark(d.blocks);
    return true;
  }

  private mark(blocks: BlockList): void {
    for (let i = 0; i < blocks.length; i += 5) {
      const fork = blocks[i + 3]!;
      if (fork !== FSM_FORK) this.table.markBlock({ spcOid: blocks[i]!, dbOid: blocks[i + 1]!, relNumber: blocks[i + 2]!, fork }, blocks[i + 4]!);
    }
  }

  private special(start: Lsn, rec: Uint8Array, main: Uint8Array): void {
    const xlInfo = rec[16]!;
    const rmid = rec[17]!;
    if (!isSpecial(rmid, xlInfo, this.facts)) return;
    const info = xlInfo & 0xf0;
    const at = formatLsn(start);
    const v = new DataView(main.buffer, main.byteOffset, main.byteLength);
    const short = (n: number): boolean => {
      if (main.length >= n) return false;
      this.distrust(`the WAL record at ${at} (resource manager ${rmid}, type 0x${info.toString(16)}) is too short`);
      return true;
    };
    const rel = (o: number): Omit<RelFork, 'fork'> => ({ spcOid: v.getUint32(o, true), dbOid: v.getUint32(o + 4, true), relNumber: v.getUint32(o + 8, true) });
    if (rmid === RM_SMGR_ID && info === XLOG_SMGR_CREATE) {
      if (short(16)) return;
      const fork = v.getInt32(12, true);
      if (fork !== FSM_FORK) this.table.setLimit({ ...rel(0), fork }, 0);
      return;
    }
    if (rmid === RM_SMGR_ID && info === XLOG_SMGR_TRUNCATE) {
      if (short(20)) return;
      const blkno = v.getUint32(0, true);
      const r = rel(4);
      const flags = v.getInt32(16, true);
      if (flags & SMGR_TRUNCATE_HEAP) this.table.setLimit({ ...r, fork: MAIN_FORK }, blkno);
      if (flags & SMGR_TRUNCATE_VM) this.table.setLimit({ ...r, fork: VM_FORK }, vmBlocksFor(blkno));
      return;
    }
    if (rmid === RM_XACT_ID) {
      const op = info & XLOG_XACT_OPMASK;
      if (op === XACT_COMMIT || op === XACT_COMMIT_PREPARED || op === XACT_ABORT || op === XACT_ABORT_PREPARED) {
        const dropped = droppedRelations(main, info, op === XACT_COMMIT || op === XACT_COMMIT_PREPARED || this.facts.walXactAbortDbInfo);
        if (dropped === undefined) {
          this.distrust(`the transaction record at ${at} is too short`);
          return;
        }
        for (const r of dropped) for (let fork = 0; fork <= MAX_FORK; fork++) if (fork !== FSM_FORK) this.table.setLimit({ ...r, fork }, 0);
        return;
      }
    }
    if (rmid === RM_DBASE_ID) {
      const db = this.facts.walDbaseInfo;
      if (info === db.createFileCopy || (db.createWalLog !== undefined && info === db.createWalLog)) {
        if (short(8)) return;
        this.table.setLimit({ spcOid: v.getUint32(4, true), dbOid: v.getUint32(0, true), relNumber: 0, fork: MAIN_FORK }, 0);
        return;
      }
      if (info === db.drop) {
        if (short(8)) return;
        const dbOid = v.getUint32(0, true);
        if (!this.facts.walDbaseDropTablespaceList) {
          this.table.setLimit({ spcOid: v.getUint32(4, true), dbOid, relNumber: 0, fork: MAIN_FORK }, 0);
          return;
        }
        const n = v.getInt32(4, true);
        if (n < 0 || short(8 + 4 * n)) return;
        for (let i = 0; i < n; i++) this.table.setLimit({ spcOid: v.getUint32(8 + 4 * i, true), dbOid, relNumber: 0, fork: MAIN_FORK }, 0);
        return;
      }
    }
    if (rmid === RM_XLOG_ID) {
      const walLevelAt = walLevelOffset(info, this.facts);
      if (walLevelAt !== undefined) {
        if (short(walLevelAt + 4)) return;
        if (v.getInt32(walLevelAt, true) === WAL_LEVEL_MINIMAL) this.distrust(`the WAL from ${at} on was written with wal_level=minimal (changes to new relations are not in the WAL)`);
        return;
      }
    }
    if (xlInfo & XLR_SPECIAL_REL_UPDATE) {
      this.distrust(`the WAL record at ${at} (resource manager ${rmid}, type 0x${info.toString(16)}) changes relation files in a way pgbacula does not decode`);
    }
  }
}

/**
 * Length in blocks of the visibility map of a heap of nheapblocks blocks: two bits per heap
 * block on the page after its 24-byte header (BLCKSZ 8192). The summarizer of current
 * PostgreSQL releases limits the vm fork to this, not to the heap's length: a vm block beyond
 * it that is later re-extended without WAL must not be taken from an older backup.
 */
function vmBlocksFor(nheapblocks: number): number {
  return Math.ceil(nheapblocks / HEAP_BLOCKS_PER_VM_PAGE);
}

/** Where the record's wal_level is, for the XLOG records that carry one (undefined: none). */
function walLevelOffset(info: number, facts: VersionFacts): number | undefined {
  if (info === XLOG_PARAMETER_CHANGE) return facts.walParameterChangeWalLevelOffset;
  const ck = facts.walLevelInCheckpointRecords;
  if (!ck) return undefined;
  if (info === XLOG_CHECKPOINT_SHUTDOWN) return ck.checkpointShutdown;
  if (info === ck.checkpointRedoInfo) return 0;
  if (info === XLOG_END_OF_RECOVERY) return ck.endOfRecovery;
  return undefined;
}

/**
 * Records whose effect lies in their main data (so one cut off before it is pending): the ones
 * handled below, and any other flagged XLR_SPECIAL_REL_UPDATE. Full-page images (XLOG rmgr too)
 * and every other record act through their block references only.
 */
function isSpecial(rmid: number, xlInfo: number, facts: VersionFacts): boolean {
  if (xlInfo & XLR_SPECIAL_REL_UPDATE) return true;
  const info = xlInfo & 0xf0;
  if (rmid === RM_XLOG_ID) return walLevelOffset(info, facts) !== undefined;
  if (rmid === RM_XACT_ID) {
    const op = info & XLOG_XACT_OPMASK;
    return op === XACT_COMMIT || op === XACT_ABORT || op === XACT_COMMIT_PREPARED || op === XACT_ABORT_PREPARED;
  }
  return rmid === RM_SMGR_ID || rmid === RM_DBASE_ID;
}

/**
 * Relations a commit or abort record drops: i64 xact_time, then (with XLOG_XACT_HAS_INFO) u32
 * xinfo and, each only when its bit is set, DBINFO (8 bytes; abort records from 11 only),
 * SUBXACTS (i32 n, n × u32), RELFILENODES (i32 n, n × 12-byte locator). undefined: too short.
 */
function droppedRelations(main: Uint8Array, info: number, mayHaveDbInfo: boolean): Omit<RelFork, 'fork'>[] | undefined {
  if (main.length < 8) return undefined;
  if ((info & XLOG_XACT_HAS_INFO) === 0) return [];
  const v = new DataView(main.buffer, main.byteOffset, main.byteLength);
  let off = 8;
  if (main.length < off + 4) return undefined;
  const xinfo = v.getUint32(off, true);
  off += 4;
  if (mayHaveDbInfo && xinfo & XACT_XINFO_HAS_DBINFO) off += 8;
  if (xinfo & XACT_XINFO_HAS_SUBXACTS) {
    if (main.length < off + 4) return undefined;
    const n = v.getInt32(off, true);
    off += 4 + 4 * Math.max(0, n);
  }
  if ((xinfo & XACT_XINFO_HAS_RELFILENODES) === 0) return [];
  if (main.length < off + 4) return undefined;
  const n = v.getInt32(off, true);
  off += 4;
  if (n < 0 || main.length < off + 12 * n) return undefined;
  const out: Omit<RelFork, 'fork'>[] = [];
  for (let i = 0; i < n; i++, off += 12) out.push({ spcOid: v.getUint32(off, true), dbOid: v.getUint32(off + 4, true), relNumber: v.getUint32(off + 8, true) });
  return out;
}

export { INIT_FORK, MAIN_FORK, VM_FORK, FSM_FORK };
