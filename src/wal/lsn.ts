/**
 * WAL positions (LSNs): unsigned 64-bit byte offsets into the WAL, kept as bigint because a
 * JS number loses precision above 2^53. Text form `%X/%X`: high
 * 32 bits, `/`, low 32 bits, upper-case hex without zero padding (`0/1F000110`).
 *
 * Pure: values in, values out.
 */
import { PgbaculaError } from '../errors.js';

export type Lsn = bigint;

/** `0/0`: InvalidXLogRecPtr. */
export const INVALID_LSN: Lsn = 0n;
export const MAX_LSN: Lsn = 0xffff_ffff_ffff_ffffn;

/** Default XLOG_BLCKSZ (WAL page size) unless the server was compiled otherwise. */
export const DEFAULT_WAL_BLOCK_SIZE = 8192;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** `'0/16B3F48'` → 23805768n, or undefined when the text is not an LSN. */
export function tryParseLsn(text: string): Lsn | undefined {
  const m = LSN_TEXT.exec(text.trim());
  if (!m) return undefined;
  return (BigInt(`0x${m[1]!}`) << 32n) | BigInt(`0x${m[2]!}`);
}

/** `'0/16B3F48'` → 23805768n; throws PARAM_INVALID on anything else. */
export function parseLsn(text: string, what = 'LSN'): Lsn {
  const lsn = tryParseLsn(text);
  if (lsn === undefined) {
    throw new PgbaculaError('PARAM_INVALID', `invalid ${what} "${text}"`, {
      hint: 'Write an LSN as two hexadecimal numbers separated by a slash, e.g. 0/16B3F48.',
    });
  }
  return lsn;
}

function assertLsnRange(lsn: Lsn): void {
  if (lsn < 0n || lsn > MAX_LSN) {
    throw new PgbaculaError('INTERNAL', `WAL position ${lsn} is outside the 64-bit range`);
  }
}

/** 23805768n → `'0/16B3F48'` (the server's `%X/%X`). */
export function formatLsn(lsn: Lsn): string {
  assertLsnRange(lsn);
  const hi = lsn >> 32n;
  const lo = lsn & 0xffff_ffffn;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

export function lsnFromParts(hi: number, lo: number): Lsn {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

export function compareLsn(a: Lsn, b: Lsn): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function maxLsn(...lsns: Lsn[]): Lsn {
  return lsns.reduce((m, l) => (l > m ? l : m), INVALID_LSN);
}

export function minLsn(first: Lsn, ...rest: Lsn[]): Lsn {
  return rest.reduce((m, l) => (l < m ? l : m), first);
}

/** lsn + bytes, refusing to leave the 64-bit range. */
export function lsnAdd(lsn: Lsn, bytes: bigint | number): Lsn {
  const r = lsn + BigInt(bytes);
  assertLsnRange(r);
  return r;
}

/** a − b in bytes (pg_wal_lsn_diff); negative when a is before b. */
export function lsnDiff(a: Lsn, b: Lsn): bigint {
  return a - b;
}

/** Start of the WAL page holding lsn: `lsn − (lsn mod XLOG_BLCKSZ)`. */
export function walPageStart(lsn: Lsn, blockSize = DEFAULT_WAL_BLOCK_SIZE): Lsn {
  return lsn - (lsn % BigInt(blockSize));
}

/** Offset of lsn inside its WAL page. */
export function walPageOffset(lsn: Lsn, blockSize = DEFAULT_WAL_BLOCK_SIZE): number {
  return Number(lsn % BigInt(blockSize));
}
