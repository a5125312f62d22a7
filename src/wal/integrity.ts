/**
 * Is an archived WAL segment sound? The judgement recovery itself would make, made before
 * recovery runs: its records are walked (src/wal/record-scan.ts: length, xl_prev chain, CRC-32C,
 * page headers), and a complete segment is sound only if valid records reach its end. Recovery
 * treats the first invalid record as the end of WAL — a damaged segment in the middle of an
 * archive silently cuts every later transaction — so anything short of the end is damage:
 *
 * - sound: a record ends exactly at the segment end, or one continues into the next segment, or
 *   an XLOG_SWITCH record ends the segment's WAL (the rest is zeros from 11 on, empty pages on 10);
 * - a `.partial` (a promotion's last old-timeline segment, wal-receive's open segment, a backup's
 *   last segment, streamed to its stop point) may end anywhere: only its first page is judged;
 * - a record that crosses from segment N into N+1 is read by neither segment alone: joined, its
 *   CRC and xl_prev are checked when both segments are at hand (judgeSegmentJoin).
 *
 * The first segment of a new timeline is a copy of the old one up to the switch point, then the
 * new timeline's records: one continuous chain, judged like any other. A record the server
 * abandoned in a crash (a continuation that never got written) is followed by a page flagged
 * XLP_FIRST_IS_OVERWRITE_CONTRECORD: that join is sound.
 *
 * Pure: bytes in, verdict out.
 */
import { crc32cUpdate } from '../format/crc32c.js';
import { scanSegmentRecords, type SegmentScan } from './record-scan.js';
import { DEFAULT_WAL_BLOCK_SIZE as BLOCK, formatLsn, type Lsn } from './lsn.js';
import { parseWalPageHeader, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD } from './page-header.js';

const SHORT_PHD = 24;
const LONG_PHD = 40;
const RECORD_HEADER_SIZE = 24;

export interface SegmentJudgeOptions {
  readonly segmentStart: Lsn;
  readonly segmentSize: number;
  /** A `.partial` (or a backup's last, streamed segment): valid WAL may end before the segment does. */
  readonly partial?: boolean;
}

export interface SegmentVerdict {
  readonly sound: boolean;
  /** What is wrong, for an operator: where and why (undefined when sound). */
  readonly problem: string | undefined;
  /** Where valid WAL ends in this segment (the end of its last whole record). */
  readonly endLsn: Lsn;
  readonly scan: SegmentScan;
}

/** Judge one segment on its own. */
export function judgeSegment(bytes: Uint8Array, o: SegmentJudgeOptions): SegmentVerdict {
  const S = o.segmentSize;
  const scan = scanSegmentRecords(bytes, { segmentStart: o.segmentStart, segmentSize: S });
  const verdict = (problem: string | undefined): SegmentVerdict => ({ sound: problem === undefined, problem, endLsn: scan.endLsn, scan });
  if (!o.partial && bytes.length !== S) return verdict(`it holds ${bytes.length} bytes instead of ${S}`);
  if (scan.stoppedBecause === 'the first page is not a valid WAL page') return verdict(`its first page is not a valid WAL page for ${formatLsn(o.segmentStart)}`);
  if (o.partial) return verdict(undefined);
  if (scan.switched || scan.crossesEnd || scan.reachedEnd) return verdict(undefined);
  const at = scan.lastRecordStart === undefined && scan.headContinuationEnd === undefined ? o.segmentStart : scan.endLsn;
  const where = `offset ${at - o.segmentStart} (${formatLsn(at)})`;
  const why = scan.stoppedBecause ?? 'zeros where the next record should be';
  return verdict(`its records stop at ${where}, ${S - Number(at - o.segmentStart)} bytes before the segment's end: ${why}`);
}

/**
 * Judge the seam between two consecutive segments (N, then N+1 as recovery reads them): the
 * record that crosses it (CRC over the joined bytes, xl_prev), or — when N's WAL ends exactly
 * at its end — that N+1 does not claim a continuation and its first record points back into N.
 * undefined when sound or when the seam cannot be judged from these two segments (N switched,
 * N ends early, a record longer than N+1).
 */
export function judgeSegmentJoin(
  prev: { readonly bytes: Uint8Array; readonly scan: SegmentScan; readonly segmentStart: Lsn },
  next: { readonly bytes: Uint8Array; readonly scan: SegmentScan; readonly segmentStart: Lsn },
  segmentSize: number,
): string | undefined {
  const S = segmentSize;
  if (next.segmentStart !== prev.segmentStart + BigInt(S) || prev.bytes.length < S) return undefined;
  const ps = prev.scan;
  const head = parseWalPageHeader(next.bytes, 0);
  if (!head || ps.switched) return undefined;
  if (head.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD) return undefined; // the crossing record was abandoned
  const contrecord = (head.info & XLP_FIRST_IS_CONTRECORD) !== 0;
  if (ps.reachedEnd && !ps.crossesEnd) {
    if (contrecord && head.remLen > 0) return `its first page continues a record, but the previous segment's last record ends at its end`;
    if (ps.lastRecordStart !== undefined && next.scan.firstRecordPrev !== undefined && next.scan.firstRecordPrev !== ps.lastRecordStart) {
      return `its first record points back to ${formatLsn(next.scan.firstRecordPrev)}, not to the previous segment's last record at ${formatLsn(ps.lastRecordStart)}`;
    }
    return undefined;
  }
  if (!ps.crossesEnd || ps.crossingRecordStart === undefined) return undefined;
  const start = ps.crossingRecordStart;
  if (!contrecord) return `the record at ${formatLsn(start)} continues into it, but its first page holds no continuation`;
  const off0 = Number(start - prev.segmentStart);
  const pv = new DataView(prev.bytes.buffer, prev.bytes.byteOffset, prev.bytes.byteLength);
  const totLen = pv.getUint32(off0, true);
  const rec = new Uint8Array(totLen);
  let got = 0;
  // The part in N: from the record's start to N's end, page headers skipped.
  for (let p = off0; p < S; ) {
    if (p % BLOCK === 0) p += SHORT_PHD;
    const pageEnd = (Math.floor(p / BLOCK) + 1) * BLOCK;
    const take = Math.min(totLen - got, pageEnd - p);
    rec.set(prev.bytes.subarray(p, p + take), got);
    got += take;
    p = pageEnd;
  }
  // The rest in N+1, page by page: every page continues it, xlp_rem_len counts down.
  for (let page = 0; got < totLen; page += BLOCK) {
    if (page >= next.bytes.length) return undefined; // longer than N+1: judged with more segments only
    const h = parseWalPageHeader(next.bytes, page);
    const hdr = page === 0 ? LONG_PHD : SHORT_PHD;
    if (!h || h.pageAddr !== next.segmentStart + BigInt(page) || (h.info & XLP_FIRST_IS_CONTRECORD) === 0) {
      return `the record at ${formatLsn(start)} that continues into it is cut at offset ${page} (${formatLsn(next.segmentStart + BigInt(page))}): the page does not continue it`;
    }
    if (h.remLen !== totLen - got) {
      return `the record at ${formatLsn(start)} that continues into it has ${totLen - got} bytes to go, but the page at offset ${page} says ${h.remLen}`;
    }
    const take = Math.min(totLen - got, BLOCK - hdr);
    rec.set(next.bytes.subarray(page + hdr, page + hdr + take), got);
    got += take;
  }
  const rv = new DataView(rec.buffer);
  let crc = crc32cUpdate(0xffffffff, rec, RECORD_HEADER_SIZE, totLen);
  crc = (crc32cUpdate(crc, rec, 0, 20) ^ 0xffffffff) >>> 0;
  if (crc !== rv.getUint32(20, true)) return `the record at ${formatLsn(start)} that continues into it fails its CRC (the damage is in one of the two segments)`;
  const xlPrev = rv.getBigUint64(8, true);
  if (ps.lastRecordStart !== undefined && xlPrev !== ps.lastRecordStart) return `the record at ${formatLsn(start)} that continues into it points back to ${formatLsn(xlPrev)}, not to ${formatLsn(ps.lastRecordStart)}`;
  if (next.scan.firstRecordPrev !== undefined && next.scan.firstRecordPrev !== start) {
    return `its first record points back to ${formatLsn(next.scan.firstRecordPrev)}, not to the record at ${formatLsn(start)} that ends in it`;
  }
  return undefined;
}
