/**
 * A minimal WAL record reader over one segment (XLogRecord headers, records split across pages by continuation headers): it walks the records, checks
 * each one (length, xl_prev chain, CRC-32C) and reports what the recoverable window needs —
 * the commit/abort timestamps that `recovery_target_time` compares, the named restore
 * points, whether the segment was switched, and where valid WAL ends.
 *
 * Only records that *start* in the segment are read: a record continued from the previous
 * segment is skipped, and one that continues into the next segment is reported as `crossesEnd`
 * without being decoded. Commit records are small (tens of bytes), so this can miss at most the
 * one commit that straddles a segment boundary; the window errs on the early side then.
 *
 * Pure: bytes in, values out.
 */
import { majorOfXlogPageMagic, parseWalPageHeader, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER } from './page-header.js';
import { DEFAULT_WAL_BLOCK_SIZE, type Lsn } from './lsn.js';
import { versionFacts, type VersionFacts } from '../pg/versions.js';
import { crc32cUpdate } from '../format/crc32c.js';

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

const RECORD_HEADER_SIZE = 24;
const SHORT_PHD = 24;
const LONG_PHD = 40;
const RM_XLOG_ID = 0;
const RM_XACT_ID = 1;
const XLOG_SWITCH = 0x40;
const XLOG_RESTORE_POINT = 0x70;
const XLOG_XACT_OPMASK = 0x70;
/** commit, abort, commit prepared, abort prepared: the records a time target compares. */
const XACT_TIMED = new Set([0x00, 0x20, 0x30, 0x40]);
const PG_EPOCH_MS = 946_684_800_000;

export interface TimedRecord {
  /** Start LSN of the record. */
  readonly lsn: Lsn;
  /** Microseconds since 2000-01-01 UTC (TimestampTz), exact. */
  readonly pgTime: bigint;
  readonly kind: 'commit' | 'abort' | 'commit-prepared' | 'abort-prepared' | 'restore-point';
  readonly xid: number;
  /** Restore point name. */
  readonly name?: string;
}

export interface SegmentScan {
  /** Records read whole inside this segment. */
  readonly records: number;
  readonly firstTimed: TimedRecord | undefined;
  readonly lastTimed: TimedRecord | undefined;
  /** Last commit or abort (what a time target compares; restore points excluded). */
  readonly lastXact: TimedRecord | undefined;
  readonly restorePoints: TimedRecord[];
  /** End (exclusive) of the last valid record that starts in this segment. */
  readonly endLsn: Lsn;
  /** The segment ends with an XLOG_SWITCH record (the rest is unused). */
  readonly switched: boolean;
  /** The last record continues into the next segment. */
  readonly crossesEnd: boolean;
  /** Why reading stopped before the segment's end, when it did (zeros = normal end of WAL). */
  readonly stoppedBecause: string | undefined;
  /** Reading went on to the segment's last byte (no zeros, no invalid page or record before it). */
  readonly reachedEnd: boolean;
  /** Start of the last record read whole (what the next record's xl_prev must name). */
  readonly lastRecordStart: Lsn | undefined;
  /** Start of the record that continues into the next segment (when crossesEnd and it starts here). */
  readonly crossingRecordStart: Lsn | undefined;
  /** xl_prev of the first record that starts in this segment (checked against the previous segment). */
  readonly firstRecordPrev: Lsn | undefined;
  /** Offset where the continuation of the previous segment's record ends (undefined: none). */
  readonly headContinuationEnd: number | undefined;
}

/** TimestampTz (µs since 2000-01-01 UTC) → ISO-8601 with microseconds, e.g. `2026-11-26T12:00:05.123456Z`. */
export function pgTimeToIso(t: bigint): string {
  const ms = t / 1000n;
  const us = Number(((t % 1_000_000n) + 1_000_000n) % 1_000_000n);
  const d = new Date(PG_EPOCH_MS + Number(ms));
  return `${d.toISOString().slice(0, 19)}.${String(us).padStart(6, '0')}Z`;
}

/** Date → TimestampTz (µs since 2000-01-01 UTC), millisecond precision. */
export function dateToPgTime(d: Date): bigint {
  return BigInt(d.getTime() - PG_EPOCH_MS) * 1000n;
}

export interface ScanOptions {
  readonly segmentStart: Lsn;
  readonly segmentSize: number;
  readonly blockSize?: number;
}

/**
 * Walk the records of one segment (complete, or a zero-padded `.partial`). Stops at the first
 * invalid page or record: zeros, a stale page address, a broken xl_prev chain or a bad CRC.
 */
export function scanSegmentRecords(bytes: Uint8Array, o: ScanOptions): SegmentScan {
  const bs = o.blockSize ?? DEFAULT_WAL_BLOCK_SIZE;
  const segSize = Math.min(o.segmentSize, bytes.length);
  const first = parseWalPageHeader(bytes, 0);
  const major = first ? majorOfXlogPageMagic(first.magic) : undefined;
  const result = {
    records: 0,
    firstTimed: undefined as TimedRecord | undefined,
    lastTimed: undefined as TimedRecord | undefined,
    lastXact: undefined as TimedRecord | undefined,
    restorePoints: [] as TimedRecord[],
    endLsn: o.segmentStart,
    switched: false,
    crossesEnd: false,
    stoppedBecause: undefined as string | undefined,
    reachedEnd: false,
    lastRecordStart: undefined as Lsn | undefined,
    crossingRecordStart: undefined as Lsn | undefined,
    firstRecordPrev: undefined as Lsn | undefined,
    headContinuationEnd: undefined as number | undefined,
  };
  if (!first || (first.info & XLP_LONG_HEADER) === 0 || first.pageAddr !== o.segmentStart || major === undefined) {
    result.stoppedBecause = 'the first page is not a valid WAL page';
    return result;
  }
  const facts = versionFacts(major);
  const magic = first.magic;
  const pageOk = (pageOff: number): boolean => {
    const h = parseWalPageHeader(bytes, pageOff);
    return h !== undefined && h.magic === magic && h.pageAddr === o.segmentStart + BigInt(pageOff);
  };
  const headerSize = (off: number): number => (off % segSize === 0 ? LONG_PHD : SHORT_PHD);

  // Skip a record continued from the previous segment (xlp_rem_len bytes over following pages).
  let pos = LONG_PHD;
  if (first.info & XLP_FIRST_IS_CONTRECORD) {
    let remaining = first.remLen;
    for (;;) {
      const pageEnd = (Math.floor(pos / bs) + 1) * bs;
      const take = Math.min(remaining, pageEnd - pos);
      pos += take;
      remaining -= take;
      if (remaining === 0) break;
      if (pageEnd >= segSize) {
        result.stoppedBecause = 'the segment holds only the continuation of one record';
        result.crossesEnd = true;
        return result;
      }
      const cont = pageOk(pageEnd) ? parseWalPageHeader(bytes, pageEnd)! : undefined;
      if (!cont || (cont.info & XLP_FIRST_IS_CONTRECORD) === 0 || cont.remLen !== remaining) {
        result.stoppedBecause = `the WAL page at offset ${pageEnd} is not valid`;
        return result;
      }
      pos = pageEnd + SHORT_PHD;
    }
    result.headContinuationEnd = pos;
    pos = align8(pos);
  }

  let prev: Lsn | undefined;
  for (;;) {
    if (pos % bs === 0) {
      if (pos >= segSize) {
        result.reachedEnd = true;
        break;
      }
      if (!pageOk(pos)) {
        result.stoppedBecause = isZero(bytes, pos, SHORT_PHD) ? undefined : `the WAL page at offset ${pos} is not valid`;
        break;
      }
      pos += headerSize(pos);
    }
    if (pos >= segSize) {
      result.reachedEnd = true;
      break;
    }
    // The first 8 bytes of a record never straddle a page (records start MAXALIGNed).
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const totLen = view.getUint32(pos, true);
    if (totLen === 0) break; // end of WAL: zeros
    if (totLen < RECORD_HEADER_SIZE) {
      result.stoppedBecause = `invalid record length ${totLen} at offset ${pos}`;
      break;
    }
    const rec = readLogical(bytes, pos, totLen, bs, segSize, pageOk);
    if (rec === 'crosses-end') {
      result.crossesEnd = true;
      result.crossingRecordStart = o.segmentStart + BigInt(pos);
      break;
    }
    if (rec === 'bad-page') {
      result.stoppedBecause = `a WAL page inside the record at offset ${pos} is not valid`;
      break;
    }
    const rv = new DataView(rec.data.buffer, rec.data.byteOffset, rec.data.byteLength);
    const xlPrev = rv.getBigUint64(8, true);
    const startLsn = o.segmentStart + BigInt(pos);
    if (prev !== undefined && xlPrev !== prev) {
      result.stoppedBecause = `broken xl_prev chain at offset ${pos}`;
      break;
    }
    let crc = crc32cUpdate(0xffffffff, rec.data, RECORD_HEADER_SIZE, totLen);
    crc = (crc32cUpdate(crc, rec.data, 0, 20) ^ 0xffffffff) >>> 0;
    if (crc !== rv.getUint32(20, true)) {
      result.stoppedBecause = `bad record CRC at offset ${pos}`;
      break;
    }
    if (prev === undefined) result.firstRecordPrev = xlPrev;
    prev = startLsn;
    result.lastRecordStart = startLsn;
    result.records++;
    result.endLsn = o.segmentStart + BigInt(rec.end);
    const info = rec.data[16]!;
    const rmid = rec.data[17]!;
    const xid = rv.getUint32(4, true);
    let timed: TimedRecord | undefined;
    if (rmid === RM_XACT_ID && XACT_TIMED.has(info & XLOG_XACT_OPMASK)) {
      const main = mainData(rec.data, totLen, facts);
      if (main && main.length >= 8) {
        const op = info & XLOG_XACT_OPMASK;
        const kind = op === 0x00 ? 'commit' : op === 0x20 ? 'abort' : op === 0x30 ? 'commit-prepared' : 'abort-prepared';
        timed = { lsn: startLsn, pgTime: new DataView(main.buffer, main.byteOffset, 8).getBigInt64(0, true), kind, xid };
        result.lastXact = timed;
      }
    } else if (rmid === RM_XLOG_ID && (info & 0xf0) === XLOG_RESTORE_POINT) {
      const main = mainData(rec.data, totLen, facts);
      if (main && main.length >= 8) {
        const nameBytes = main.subarray(8, Math.min(main.length, 8 + 64));
        const nul = nameBytes.indexOf(0);
        const name = Buffer.from(nul < 0 ? nameBytes : nameBytes.subarray(0, nul)).toString('utf8');
        timed = { lsn: startLsn, pgTime: new DataView(main.buffer, main.byteOffset, 8).getBigInt64(0, true), kind: 'restore-point', xid, name };
        result.restorePoints.push(timed);
      }
    }
    if (timed) {
      result.firstTimed ??= timed;
      result.lastTimed = timed;
    }
    if (rmid === RM_XLOG_ID && (info & 0xf0) === XLOG_SWITCH) {
      result.switched = true;
      break;
    }
    pos = align8(rec.end);
  }
  return result;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function isZero(b: Uint8Array, off: number, n: number): boolean {
  for (let i = off; i < off + n && i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** totLen bytes of the record at pos, page headers skipped; end = offset after its last byte. */
function readLogical(
  bytes: Uint8Array,
  pos: number,
  totLen: number,
  bs: number,
  segSize: number,
  pageOk: (off: number) => boolean,
): { data: Uint8Array; end: number } | 'crosses-end' | 'bad-page' {
  const pageEnd = (Math.floor(pos / bs) + 1) * bs;
  if (pos + totLen <= pageEnd) return { data: bytes.subarray(pos, pos + totLen), end: pos + totLen };
  const out = new Uint8Array(totLen);
  let got = 0;
  let p = pos;
  while (got < totLen) {
    const end = (Math.floor(p / bs) + 1) * bs;
    const take = Math.min(totLen - got, end - p);
    out.set(bytes.subarray(p, p + take), got);
    got += take;
    p += take;
    if (got === totLen) break;
    if (end >= segSize) return 'crosses-end';
    if (!pageOk(end)) return 'bad-page';
    const h = parseWalPageHeader(bytes, end)!;
    // As the server reads it: a continuation page says how much of the record is still to come.
    if ((h.info & XLP_FIRST_IS_CONTRECORD) === 0 || h.remLen !== totLen - got) return 'bad-page';
    p = end + SHORT_PHD;
  }
  return { data: out, end: p };
}

/**
 * The main data of a record: fragment headers are walked as DecodeXLogRecord does (A.3, A.4);
 * main data is the last payload. undefined when the headers do not parse.
 */
function mainData(rec: Uint8Array, totLen: number, facts: VersionFacts): Uint8Array | undefined {
  let off = RECORD_HEADER_SIZE;
  let remaining = totLen - RECORD_HEADER_SIZE;
  let datatotal = 0;
  let mainLen = 0;
  const need = (n: number): boolean => {
    if (remaining < n) return false;
    remaining -= n;
    return true;
  };
  while (remaining > datatotal) {
    if (!need(1)) return undefined;
    const id = rec[off++]!;
    if (id === 255) {
      if (!need(1)) return undefined;
      mainLen = rec[off]!;
      off += 1;
      datatotal += mainLen;
      break;
    } else if (id === 254) {
      if (!need(4)) return undefined;
      mainLen = (rec[off]! | (rec[off + 1]! << 8) | (rec[off + 2]! << 16) | (rec[off + 3]! << 24)) >>> 0;
      off += 4;
      datatotal += mainLen;
      break;
    } else if (id === 253) {
      if (!need(2)) return undefined;
      off += 2;
    } else if (id === 252 && facts.walTopLevelXidBlock) {
      if (!need(4)) return undefined;
      off += 4;
    } else if (id <= 32) {
      if (!need(3)) return undefined;
      const forkFlags = rec[off]!;
      const dataLen = rec[off + 1]! | (rec[off + 2]! << 8);
      off += 3;
      datatotal += dataLen;
      if (forkFlags & 0x10) {
        if (!need(5)) return undefined;
        const imgLen = rec[off]! | (rec[off + 1]! << 8);
        const bimgInfo = rec[off + 4]!;
        off += 5;
        datatotal += imgLen;
        const compressed = (bimgInfo & facts.walImageCompressedMask) !== 0;
        if (compressed && bimgInfo & 0x01) {
          if (!need(2)) return undefined;
          off += 2;
        }
      }
      if (!(forkFlags & 0x80)) {
        if (!need(12)) return undefined;
        off += 12;
      }
      if (!need(4)) return undefined;
      off += 4;
    } else {
      return undefined;
    }
  }
  if (remaining !== datatotal || mainLen > totLen) return undefined;
  return rec.subarray(totLen - mainLen, totLen);
}

/**
 * Where the valid records of a segment's bytes end (0 when none starts in it): of two copies of
 * one segment (a receiver's open `.partial`, a later or a backup's copy), the one holding more WAL.
 */
export function validRecordsEnd(bytes: Uint8Array, segmentStart: Lsn, segmentSize: number): bigint {
  try {
    const scan = scanSegmentRecords(bytes, { segmentStart, segmentSize });
    return scan.records > 0 ? scan.endLsn : 0n;
  } catch {
    return 0n;
  }
}
