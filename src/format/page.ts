/**
 * PostgreSQL page header and the "new page" rule of this project.
 *
 * Pure: bytes in, values out. Pages are read as little-endian, the byte order of every platform
 * pgbacula ships for (x86-64, arm64); PostgreSQL itself writes pages in the host's native order.
 */

import { PgbaculaError } from '../errors.js';

/** `BLCKSZ` of a default build; the real value is pg_control's `blcksz`. */
export const DEFAULT_BLOCK_SIZE = 8192;

/** `RELSEG_SIZE` of a default build: 131072 blocks of 8 kB = 1 GiB per segment file. */
export const DEFAULT_BLOCKS_PER_SEGMENT = 131072;

/** `SizeOfPageHeaderData`: the fixed part of the header, before the line pointers. */
export const PAGE_HEADER_SIZE = 24;

/** `PG_PAGE_LAYOUT_VERSION` since 8.3, OR-ed into `pd_pagesize_version`. */
export const PAGE_LAYOUT_VERSION = 4;

/** Byte offset of `pd_checksum` in the page; the checksum is computed as if these 2 bytes were zero. */
export const PD_CHECKSUM_OFFSET = 8;

/** Byte offset of `pd_lower` (the end of the line pointers) in the page. */
export const PD_LOWER_OFFSET = 12;

export const PD_HAS_FREE_LINES = 0x0001;
export const PD_PAGE_FULL = 0x0002;
export const PD_ALL_VISIBLE = 0x0004;
/** `PD_VALID_FLAG_BITS`: any other bit set in `pd_flags` makes the server reject the page. */
export const PD_VALID_FLAG_BITS = 0x0007;

/** The 24-byte `PageHeaderData`, field by field. */
export interface PageHeader {
  /** LSN of the end of the last WAL record that changed the page (`xlogid << 32 | xrecoff`). */
  pdLsn: bigint;
  /** Stored data checksum, the little-endian uint16 at bytes 8–9. */
  pdChecksum: number;
  pdFlags: number;
  /** Offset of the start of free space. */
  pdLower: number;
  /** Offset of the end of free space; 0 is the server's `PageIsNew`. */
  pdUpper: number;
  /** Offset of the access-method special space. */
  pdSpecial: number;
  /** Page size OR-ed with the layout version: 0x2004 for 8 kB. */
  pdPagesizeVersion: number;
  pdPruneXid: number;
}

/** Reads the header of the page that starts at `offset` of `bytes`. */
export function readPageHeader(bytes: Uint8Array, offset = 0): PageHeader {
  if (offset < 0 || offset + PAGE_HEADER_SIZE > bytes.length) {
    throw new PgbaculaError(
      'INTERNAL',
      `page header at offset ${offset} runs past the end of a ${bytes.length}-byte buffer`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, PAGE_HEADER_SIZE);
  const xlogid = view.getUint32(0, true);
  const xrecoff = view.getUint32(4, true);
  return {
    pdLsn: (BigInt(xlogid) << 32n) | BigInt(xrecoff),
    pdChecksum: view.getUint16(8, true),
    pdFlags: view.getUint16(10, true),
    pdLower: view.getUint16(12, true),
    pdUpper: view.getUint16(14, true),
    pdSpecial: view.getUint16(16, true),
    pdPagesizeVersion: view.getUint16(18, true),
    pdPruneXid: view.getUint32(20, true),
  };
}

/** The stored checksum of the page at `offset` (`pd_checksum`, little-endian uint16 at bytes 8–9). */
export function storedChecksum(bytes: Uint8Array, offset = 0): number {
  const at = offset + PD_CHECKSUM_OFFSET;
  const low = bytes[at];
  const high = bytes[at + 1];
  if (low === undefined || high === undefined) {
    throw new PgbaculaError('INTERNAL', `pd_checksum at offset ${at} runs past the end of the buffer`);
  }
  return low | (high << 8);
}

/** Page size encoded in `pd_pagesize_version` (`PageGetPageSize`). */
export function pageSizeOf(header: PageHeader): number {
  return header.pdPagesizeVersion & 0xff00;
}

/** Layout version encoded in `pd_pagesize_version` (`PageGetPageLayoutVersion`). */
export function layoutVersionOf(header: PageHeader): number {
  return header.pdPagesizeVersion & 0x00ff;
}

/** True when every byte of `bytes` is zero. */
export function isAllZero(bytes: Uint8Array): boolean {
  // Word-wise when aligned: this runs on every page whose stored checksum is 0.
  const aligned = bytes.byteOffset % 4 === 0;
  const wordCount = aligned ? bytes.length >>> 2 : 0;
  if (wordCount > 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, wordCount);
    for (let i = 0; i < wordCount; i++) {
      if (words[i] !== 0) return false;
    }
  }
  for (let i = wordCount << 2; i < bytes.length; i++) {
    if (bytes[i] !== 0) return false;
  }
  return true;
}

/**
 * The project's "new page" rule: a page is new — and carries no checksum —
 * only when **all** its bytes are zero. The server's own test, `pd_upper == 0`
 * ({@link serverPageIsNew}), is not enough: a damaged page whose `pd_upper` became 0 would escape
 * verification.
 */
export function isNewPage(page: Uint8Array): boolean {
  return isAllZero(page);
}

/** The server's `PageIsNew` (`pd_upper == 0`); for reporting only, never to skip a page. */
export function serverPageIsNew(header: PageHeader): boolean {
  return header.pdUpper === 0;
}

/**
 * The header sanity test of `PageIsVerifiedExtended`: only valid flag bits, and
 * `pd_lower ≤ pd_upper ≤ pd_special ≤ BLCKSZ` with `pd_special` a multiple of 8 (`MAXALIGN`).
 */
export function pageHeaderIsSane(header: PageHeader, blockSize = DEFAULT_BLOCK_SIZE): boolean {
  return (
    (header.pdFlags & ~PD_VALID_FLAG_BITS) === 0 &&
    header.pdLower <= header.pdUpper &&
    header.pdUpper <= header.pdSpecial &&
    header.pdSpecial <= blockSize &&
    header.pdSpecial % 8 === 0
  );
}

/**
 * Relation-wide block number of block `blockInSegment` of segment file `.segno`; this is
 * the number mixed into the checksum.
 */
export function absoluteBlockNumber(
  segno: number,
  blockInSegment: number,
  blocksPerSegment = DEFAULT_BLOCKS_PER_SEGMENT,
): number {
  const blkno = segno * blocksPerSegment + blockInSegment;
  // BlockNumber is uint32 and 0xFFFFFFFF is InvalidBlockNumber: no relation reaches it.
  if (!Number.isInteger(blkno) || blkno < 0 || blkno > 0xfffffffe) {
    throw new PgbaculaError('INTERNAL', `block ${blockInSegment} of segment ${segno} is not a valid block number`);
  }
  return blkno;
}
