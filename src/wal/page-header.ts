/**
 * WAL page headers: validating segment files and streamed WAL so that a segment of
 * another system, another major, another segment size, or a recycled/stale page is noticed.
 *
 * Every XLOG_BLCKSZ page starts with (native = little-endian on every platform that matters):
 *   0  u16 xlp_magic     XLOG_PAGE_MAGIC of the major (versionFacts(major).xlogPageMagic)
 *   2  u16 xlp_info      0x1 continuation, 0x2 long header, 0x4 backup blocks removable,
 *                        0x8 first record overwrites an abandoned contrecord (minor releases
 *                        from November 2021 on)
 *   4  u32 xlp_tli       timeline of the first record on the page
 *   8  u64 xlp_pageaddr  LSN of the page start
 *  16  u32 xlp_rem_len   bytes of a continued record still to come
 *  20  (padding) → 24 bytes
 * The first page of a segment has the long header (0x2) adding
 *  24  u64 xlp_sysid, 32 u32 xlp_seg_size, 36 u32 xlp_xlog_blcksz → 40 bytes.
 *
 * After an XLOG_SWITCH record the rest of the segment is all zeros, page headers included
 * (11+, CopyXLogRecordToWAL zeroes them for compressibility; 10 still writes short headers), so
 * a valid segment is: valid pages, then possibly an all-zero tail.
 *
 * Pure: bytes in, values out.
 */
import { hexLiteral } from '../format/hex.js';
import { SUPPORTED_MAJORS, versionFacts, type Major } from '../pg/versions.js';
import { DEFAULT_WAL_BLOCK_SIZE, formatLsn, type Lsn } from './lsn.js';
import { assertWalSegmentSize } from './segment.js';

export const XLP_FIRST_IS_CONTRECORD = 0x0001;
export const XLP_LONG_HEADER = 0x0002;
export const XLP_BKP_REMOVABLE = 0x0004;
export const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008;
export const XLP_ALL_FLAGS = 0x000f;

export const SHORT_PAGE_HEADER_SIZE = 24;
export const LONG_PAGE_HEADER_SIZE = 40;

export interface WalPageHeader {
  readonly magic: number;
  readonly info: number;
  readonly timeline: number;
  readonly pageAddr: Lsn;
  readonly remLen: number;
  /** Present when info has XLP_LONG_HEADER and the bytes hold it. */
  readonly long?: {
    readonly systemId: bigint;
    readonly segmentSize: number;
    readonly blockSize: number;
  };
}

/** Decode the header at `offset` (no judgement); undefined when fewer than 24 bytes remain. */
export function parseWalPageHeader(buf: Uint8Array, offset = 0): WalPageHeader | undefined {
  if (buf.length - offset < SHORT_PAGE_HEADER_SIZE) return undefined;
  const v = new DataView(buf.buffer, buf.byteOffset + offset, buf.length - offset);
  const magic = v.getUint16(0, true);
  const info = v.getUint16(2, true);
  const header = {
    magic,
    info,
    timeline: v.getUint32(4, true),
    pageAddr: v.getBigUint64(8, true),
    remLen: v.getUint32(16, true),
  };
  if ((info & XLP_LONG_HEADER) !== 0 && v.byteLength >= LONG_PAGE_HEADER_SIZE) {
    return {
      ...header,
      long: { systemId: v.getBigUint64(24, true), segmentSize: v.getUint32(32, true), blockSize: v.getUint32(36, true) },
    };
  }
  return header;
}

/** True when the 24 header bytes at offset are all zero (a page of a switched segment's tail). */
export function isZeroPageHeader(buf: Uint8Array, offset = 0): boolean {
  if (buf.length - offset < SHORT_PAGE_HEADER_SIZE) return false;
  for (let i = offset; i < offset + SHORT_PAGE_HEADER_SIZE; i++) if (buf[i] !== 0) return false;
  return true;
}

/** The major whose XLOG_PAGE_MAGIC this is (10–18), for messages. */
export function majorOfXlogPageMagic(magic: number): Major | undefined {
  return SUPPORTED_MAJORS.find((m) => versionFacts(m).xlogPageMagic === magic);
}

function hex(n: number): string {
  return hexLiteral(n, 4);
}

function describeMagic(magic: number): string {
  const major = majorOfXlogPageMagic(magic);
  return major === undefined ? hex(magic) : `${hex(magic)} (PostgreSQL ${major})`;
}

export interface WalPageExpectations {
  /** The page's own LSN (segment start for the first page). */
  readonly pageAddr: Lsn;
  /** The major that must have written it (its XLOG_PAGE_MAGIC), or the magic itself. */
  readonly major?: Major;
  readonly magic?: number;
  /** Required on the first page of a segment. */
  readonly systemId?: bigint | string;
  readonly segmentSize?: number;
  readonly blockSize?: number;
  /** Highest timeline allowed in xlp_tli (a segment named for TLI n holds records of n and ancestors). */
  readonly maxTimeline?: number;
  /** True for the first page of a segment: the long header is then mandatory. */
  readonly firstPageOfSegment?: boolean;
}

/**
 * Problems of one page header against expectations, as operator sentences; [] when it is fine.
 * A wrong page address is reported too: in a complete segment it means recycled or foreign
 * content, in a `.partial` it marks the end of valid WAL (see validateWalSegment).
 */
export function walPageHeaderProblems(buf: Uint8Array, offset: number, expect: WalPageExpectations): string[] {
  const at = formatLsn(expect.pageAddr);
  const h = parseWalPageHeader(buf, offset);
  if (!h) return [`the WAL page at ${at} is truncated (fewer than ${SHORT_PAGE_HEADER_SIZE} bytes)`];
  const problems: string[] = [];
  const wantMagic = expect.magic ?? (expect.major === undefined ? undefined : versionFacts(expect.major).xlogPageMagic);
  if (wantMagic !== undefined && h.magic !== wantMagic) {
    problems.push(`the WAL page at ${at} has magic ${describeMagic(h.magic)}, expected ${describeMagic(wantMagic)}`);
    return problems; // the rest of the layout cannot be trusted
  }
  if ((h.info & ~XLP_ALL_FLAGS) !== 0) problems.push(`the WAL page at ${at} has unknown flag bits ${hex(h.info)}`);
  if (h.pageAddr !== expect.pageAddr) {
    problems.push(`the WAL page at ${at} claims address ${formatLsn(h.pageAddr)} (stale or recycled content)`);
  }
  if (h.timeline === 0) problems.push(`the WAL page at ${at} has timeline 0`);
  else if (expect.maxTimeline !== undefined && h.timeline > expect.maxTimeline) {
    problems.push(`the WAL page at ${at} is on timeline ${h.timeline}, newer than timeline ${expect.maxTimeline} of its file`);
  }
  const isLong = (h.info & XLP_LONG_HEADER) !== 0;
  if (expect.firstPageOfSegment) {
    if (!isLong) {
      problems.push(`the first WAL page of the segment at ${at} has no long header`);
    } else if (!h.long) {
      problems.push(`the first WAL page of the segment at ${at} is truncated (fewer than ${LONG_PAGE_HEADER_SIZE} bytes)`);
    } else {
      if (expect.systemId !== undefined && h.long.systemId !== BigInt(expect.systemId)) {
        problems.push(`the WAL segment at ${at} belongs to system ${h.long.systemId}, not ${String(expect.systemId)}`);
      }
      if (expect.segmentSize !== undefined && h.long.segmentSize !== expect.segmentSize) {
        problems.push(`the WAL segment at ${at} was written with ${h.long.segmentSize}-byte segments, not ${expect.segmentSize}`);
      }
      const bs = expect.blockSize ?? DEFAULT_WAL_BLOCK_SIZE;
      if (h.long.blockSize !== bs) problems.push(`the WAL segment at ${at} has WAL block size ${h.long.blockSize}, not ${bs}`);
    }
  } else if (isLong) {
    problems.push(`the WAL page at ${at} has a long header but does not start a segment`);
  }
  return problems;
}

export interface SegmentValidationOptions {
  /** Start LSN of the segment (from its name and the segment size). */
  readonly segmentStart: Lsn;
  readonly segmentSize: number;
  readonly systemId: bigint | string;
  readonly major?: Major;
  readonly magic?: number;
  /** The timeline in the file name. */
  readonly timeline: number;
  readonly blockSize?: number;
  /** A `.partial` may end early (zeros or stale pages after the last valid page). */
  readonly partial?: boolean;
}

export interface SegmentValidation {
  readonly ok: boolean;
  readonly problems: string[];
  /** Leading pages whose header matched. */
  readonly validPages: number;
  readonly totalPages: number;
}

/**
 * Check a whole segment file (wal-push, restore): the long header against the system, the
 * segment size and the major; then every page's magic and address. A complete segment is valid
 * pages followed by nothing or by an all-zero tail (the rest of a switched segment, whose pages
 * must then all be zero); a `.partial` may end early at its first page that is zero or stale.
 */
export function validateWalSegment(bytes: Uint8Array, o: SegmentValidationOptions): SegmentValidation {
  assertWalSegmentSize(o.segmentSize);
  const bs = o.blockSize ?? DEFAULT_WAL_BLOCK_SIZE;
  const totalPages = o.segmentSize / bs;
  const problems: string[] = [];
  if (bytes.length !== o.segmentSize) {
    problems.push(`the WAL segment at ${formatLsn(o.segmentStart)} has ${bytes.length} bytes, expected ${o.segmentSize}`);
    return { ok: false, problems, validPages: 0, totalPages };
  }
  const base = { major: o.major, magic: o.magic, maxTimeline: o.timeline, blockSize: bs } as const;
  const first = walPageHeaderProblems(bytes, 0, {
    ...base,
    pageAddr: o.segmentStart,
    firstPageOfSegment: true,
    systemId: o.systemId,
    segmentSize: o.segmentSize,
  });
  if (first.length > 0) return { ok: false, problems: first, validPages: 0, totalPages };
  let validPages = 1;
  let page = 1;
  for (; page < totalPages; page++) {
    const off = page * bs;
    if (isZeroPageHeader(bytes, off)) break;
    const p = walPageHeaderProblems(bytes, off, { ...base, pageAddr: o.segmentStart + BigInt(off) });
    if (p.length > 0) {
      if (!o.partial) problems.push(...p);
      return { ok: problems.length === 0, problems, validPages, totalPages };
    }
    validPages++;
  }
  if (!o.partial && (o.major === undefined || versionFacts(o.major).switchZeroesSegmentTail)) {
    // The zero tail of a switched segment (11+; see wal-stream.ts for 10): nothing may follow it.
    for (; page < totalPages; page++) {
      if (!isZeroPageHeader(bytes, page * bs)) {
        problems.push(`the WAL page at ${formatLsn(o.segmentStart + BigInt(page * bs))} follows zeroed pages but is not zero (mixed content)`);
        break;
      }
    }
  }
  return { ok: problems.length === 0, problems, validPages, totalPages };
}
