/**
 * WAL segment arithmetic and file names.
 *
 * A segment size S is a power of two from 1 MiB to 1 GiB (initdb --wal-segsize, 11+; 16 MiB
 * before). Segment number `segno = lsn / S`; names are `hex8(tli) hex8(segno / segsPerId)
 * hex8(segno mod segsPerId)` with `segsPerId = 2^32 / S`. Timelines are hexadecimal in every
 * file name. Segment numbers are bigint like LSNs.
 *
 * Pure: values in, values out.
 */
import { PgbaculaError } from '../errors.js';
import { hexDigits } from '../format/hex.js';
import { formatLsn, type Lsn } from './lsn.js';

export const MIN_WAL_SEGMENT_SIZE = 1024 * 1024;
export const MAX_WAL_SEGMENT_SIZE = 1024 * 1024 * 1024;
export const DEFAULT_WAL_SEGMENT_SIZE = 16 * 1024 * 1024;
export const MAX_TIMELINE = 0xffff_ffff;

export function isValidWalSegmentSize(size: number): boolean {
  return Number.isInteger(size) && size >= MIN_WAL_SEGMENT_SIZE && size <= MAX_WAL_SEGMENT_SIZE && (size & (size - 1)) === 0;
}

export function assertWalSegmentSize(size: number): void {
  if (!isValidWalSegmentSize(size)) {
    throw new PgbaculaError('PARAM_INVALID', `invalid WAL segment size ${size}`, {
      hint: 'A WAL segment size is a power of two from 1 MiB to 1 GiB (initdb --wal-segsize).',
    });
  }
}

export function assertTimeline(tli: number): void {
  if (!Number.isInteger(tli) || tli < 1 || tli > MAX_TIMELINE) {
    throw new PgbaculaError('PARAM_INVALID', `invalid timeline ${tli}`, { hint: 'Timelines are 1 to 4294967295.' });
  }
}

/** Segments per "xlogid" (the middle name field): 256 for 16 MiB, 4 for 1 GiB. */
export function segmentsPerXLogId(segSize: number): bigint {
  assertWalSegmentSize(segSize);
  return 0x1_0000_0000n / BigInt(segSize);
}

/** Segment that contains the byte at lsn. */
export function walSegmentNumber(lsn: Lsn, segSize: number): bigint {
  assertWalSegmentSize(segSize);
  return lsn / BigInt(segSize);
}

/**
 * Segment that contains the byte *before* lsn — for positions that end something (stop LSN,
 * end of a record): a stop exactly on a boundary does not need the next segment.
 */
export function walSegmentNumberOfEnd(lsn: Lsn, segSize: number): bigint {
  if (lsn === 0n) throw new PgbaculaError('INTERNAL', 'the end position 0/0 has no segment');
  return walSegmentNumber(lsn - 1n, segSize);
}

/** Offset of lsn inside its segment. */
export function walSegmentOffset(lsn: Lsn, segSize: number): number {
  assertWalSegmentSize(segSize);
  return Number(lsn % BigInt(segSize));
}

export function walSegmentStart(segno: bigint, segSize: number): Lsn {
  assertWalSegmentSize(segSize);
  return segno * BigInt(segSize);
}

/** First byte after the segment. */
export function walSegmentEnd(segno: bigint, segSize: number): Lsn {
  return walSegmentStart(segno + 1n, segSize);
}

/** Round lsn down to the start of its segment (where streaming always starts, as pg_receivewal does). */
export function walSegmentStartOf(lsn: Lsn, segSize: number): Lsn {
  return walSegmentStart(walSegmentNumber(lsn, segSize), segSize);
}

/** Eight upper-case hexadecimal digits, as timelines and the fields of WAL file names are written. */
export function hex8(n: bigint | number): string {
  return hexDigits(n, 8);
}

/** `walSegmentName(1, 0x19n, 16 MiB)` → `000000010000000000000019`. */
export function walSegmentName(tli: number, segno: bigint, segSize: number): string {
  assertTimeline(tli);
  const perId = segmentsPerXLogId(segSize);
  if (segno < 0n || segno / perId > 0xffff_ffffn) {
    throw new PgbaculaError('INTERNAL', `WAL segment number ${segno} is out of range for ${segSize}-byte segments`);
  }
  return hex8(tli) + hex8(segno / perId) + hex8(segno % perId);
}

/** Name of the segment holding the byte at lsn (pg_walfile_name). */
export function walSegmentNameForLsn(tli: number, lsn: Lsn, segSize: number): string {
  return walSegmentName(tli, walSegmentNumber(lsn, segSize), segSize);
}

/** `00000002.history` */
export function timelineHistoryFileName(tli: number): string {
  assertTimeline(tli);
  return `${hex8(tli)}.history`;
}

/**
 * Backup history file name: stop TLI, the *start* segment, and the start offset inside
 * it, e.g. `000000010000000000000002.00000028.backup`.
 */
export function backupHistoryFileName(stopTli: number, startLsn: Lsn, segSize: number): string {
  const segno = walSegmentNumber(startLsn, segSize);
  const name = walSegmentName(stopTli, segno, segSize);
  return `${name}.${hex8(Number(startLsn % BigInt(segSize)))}.backup`;
}

export type WalFileName =
  | { readonly kind: 'segment' | 'partial'; readonly name: string; readonly timeline: number; readonly log: number; readonly seg: number; readonly segmentName: string }
  | { readonly kind: 'history'; readonly name: string; readonly timeline: number }
  | {
      readonly kind: 'backup';
      readonly name: string;
      readonly timeline: number;
      readonly log: number;
      readonly seg: number;
      readonly segmentName: string;
      /** Start LSN offset inside the start segment. */
      readonly offset: number;
    };

const SEGMENT_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const PARTIAL_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.partial$/;
const HISTORY_RE = /^([0-9A-F]{8})\.history$/;
const BACKUP_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.([0-9A-F]{8})\.backup$/;

/**
 * Recognize a WAL-directory/archive file name: segment (24 upper-case hex digits), `.partial`,
 * `.history`, `.backup`. Anything else (lower-case hex, timeline 0, other suffixes) → undefined.
 * With segSize, a segment field beyond the segments per xlogid (a name that cannot exist at that
 * size) is refused too.
 */
export function parseWalFileName(name: string, segSize?: number): WalFileName | undefined {
  const perId = segSize === undefined ? undefined : segmentsPerXLogId(segSize);
  const segFields = (m: RegExpExecArray): { timeline: number; log: number; seg: number; segmentName: string } | undefined => {
    const timeline = parseInt(m[1]!, 16);
    const log = parseInt(m[2]!, 16);
    const seg = parseInt(m[3]!, 16);
    if (timeline === 0) return undefined;
    if (perId !== undefined && BigInt(seg) >= perId) return undefined;
    return { timeline, log, seg, segmentName: `${m[1]!}${m[2]!}${m[3]!}` };
  };
  let m = SEGMENT_RE.exec(name);
  if (m) {
    const f = segFields(m);
    return f && { kind: 'segment', name, ...f };
  }
  m = PARTIAL_RE.exec(name);
  if (m) {
    const f = segFields(m);
    return f && { kind: 'partial', name, ...f };
  }
  m = HISTORY_RE.exec(name);
  if (m) {
    const timeline = parseInt(m[1]!, 16);
    return timeline === 0 ? undefined : { kind: 'history', name, timeline };
  }
  m = BACKUP_RE.exec(name);
  if (m) {
    const f = segFields(m);
    const offset = parseInt(m[4]!, 16);
    if (!f) return undefined;
    if (segSize !== undefined && offset >= segSize) return undefined;
    return { kind: 'backup', name, ...f, offset };
  }
  return undefined;
}

/** Segment number of a parsed segment-like name: `log × segsPerId + seg`. */
export function segmentNumberOfName(parsed: { readonly log: number; readonly seg: number }, segSize: number): bigint {
  const perId = segmentsPerXLogId(segSize);
  if (BigInt(parsed.seg) >= perId) {
    throw new PgbaculaError('PARAM_INVALID', `segment field ${parsed.seg.toString(16).toUpperCase()} does not exist with ${segSize}-byte WAL segments`);
  }
  return BigInt(parsed.log) * perId + BigInt(parsed.seg);
}

/** `000000010000000000000019` → { timeline: 1, segno: 0x19n } (throws for anything else). */
export function parseWalSegmentName(name: string, segSize: number): { timeline: number; segno: bigint } {
  const p = parseWalFileName(name, segSize);
  if (!p || p.kind !== 'segment') {
    throw new PgbaculaError('PARAM_INVALID', `"${name}" is not a WAL segment name for ${segSize}-byte segments`, {
      hint: 'A WAL segment name is 24 upper-case hexadecimal digits: timeline, log, segment.',
    });
  }
  return { timeline: p.timeline, segno: segmentNumberOfName(p, segSize) };
}

/** Start LSN of a named segment, for messages and range checks. */
export function walSegmentNameStartLsn(name: string, segSize: number): Lsn {
  return walSegmentStart(parseWalSegmentName(name, segSize).segno, segSize);
}

/** Human form of a segment for messages: `000000010000000000000019 (0/19000000)`. */
export function describeSegment(tli: number, segno: bigint, segSize: number): string {
  return `${walSegmentName(tli, segno, segSize)} (${formatLsn(walSegmentStart(segno, segSize))})`;
}

/**
 * Compare segment names ignoring the timeline (characters 8–23), as the server does when it
 * collects WAL for a backup.
 */
export function compareSegmentNamesIgnoringTimeline(a: string, b: string): number {
  const x = a.slice(8, 24);
  const y = b.slice(8, 24);
  return x < y ? -1 : x > y ? 1 : 0;
}
