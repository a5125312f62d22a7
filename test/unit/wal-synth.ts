/**
 * Synthetic WAL for unit tests: segments with the real page-header layout and real
 * record framing of docs/postgresql-facts.md ("WAL": MAXALIGNed records, continuation across pages with
 * XLP_FIRST_IS_CONTRECORD and xlp_rem_len, CRC-32C), small enough (1 MiB segments) to be fast.
 */
import { crc32c, crc32cUpdate } from '../../src/format/crc32c.js';
import { walSegmentName } from '../../src/wal/segment.js';

export const SYNTH_SEG = 1024 * 1024;
export const BLCKSZ = 8192;
export const MAGIC_18 = 0xd118;
const PG_EPOCH_MS = 946_684_800_000;

export interface SynthOptions {
  readonly systemId: bigint;
  readonly timeline: number;
  readonly segSize?: number;
  readonly magic?: number;
}

/** A writer of a WAL stream starting at a segment boundary; records are appended in order. */
export class WalWriter {
  readonly segSize: number;
  readonly magic: number;
  private readonly segments = new Map<bigint, Uint8Array>();
  /** Next free byte (absolute LSN). */
  pos: bigint;
  prevRecord = 0n;

  constructor(
    readonly o: SynthOptions,
    startSegno: bigint,
  ) {
    this.segSize = o.segSize ?? SYNTH_SEG;
    this.magic = o.magic ?? MAGIC_18;
    this.pos = startSegno * BigInt(this.segSize);
    this.ensurePage(this.pos, 0, 0);
    this.pos += 40n;
  }

  private seg(segno: bigint): Uint8Array {
    let s = this.segments.get(segno);
    if (!s) {
      s = new Uint8Array(this.segSize);
      this.segments.set(segno, s);
    }
    return s;
  }

  /** Write the header of the page starting at pageLsn. */
  private ensurePage(pageLsn: bigint, info: number, remLen: number): void {
    const segno = pageLsn / BigInt(this.segSize);
    const off = Number(pageLsn % BigInt(this.segSize));
    const buf = this.seg(segno);
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const first = off === 0;
    v.setUint16(off, this.magic, true);
    v.setUint16(off + 2, info | (first ? 0x0002 : 0), true);
    v.setUint32(off + 4, this.o.timeline, true);
    v.setBigUint64(off + 8, pageLsn, true);
    v.setUint32(off + 16, remLen, true);
    if (first) {
      v.setBigUint64(off + 24, this.o.systemId, true);
      v.setUint32(off + 32, this.segSize, true);
      v.setUint32(off + 36, BLCKSZ, true);
    }
  }

  /** Append a record (header fields filled here); returns its start LSN. */
  append(rmid: number, info: number, xid: number, payload: Uint8Array): bigint {
    this.pos = (this.pos + 7n) & ~7n;
    if (this.pos % BigInt(BLCKSZ) === 0n) this.startPage(this.pos, 0, 0);
    const tot = 24 + payload.length;
    const rec = new Uint8Array(tot);
    const v = new DataView(rec.buffer);
    v.setUint32(0, tot, true);
    v.setUint32(4, xid, true);
    v.setBigUint64(8, this.prevRecord, true);
    rec[16] = info;
    rec[17] = rmid;
    rec.set(payload, 24);
    let crc = crc32cUpdate(0xffffffff, rec, 24, tot);
    crc = (crc32cUpdate(crc, rec, 0, 20) ^ 0xffffffff) >>> 0;
    v.setUint32(20, crc, true);
    const start = this.pos;
    let written = 0;
    while (written < tot) {
      const pageEnd = (this.pos / BigInt(BLCKSZ) + 1n) * BigInt(BLCKSZ);
      const n = Math.min(tot - written, Number(pageEnd - this.pos));
      const segno = this.pos / BigInt(this.segSize);
      const off = Number(this.pos % BigInt(this.segSize));
      this.seg(segno).set(rec.subarray(written, written + n), off);
      written += n;
      this.pos += BigInt(n);
      if (written < tot) this.startPage(pageEnd, 0x0001, tot - written);
    }
    this.prevRecord = start;
    return start;
  }

  private startPage(pageLsn: bigint, info: number, remLen: number): void {
    this.ensurePage(pageLsn, info, remLen);
    this.pos = pageLsn + (pageLsn % BigInt(this.segSize) === 0n ? 40n : 24n);
  }

  /** A commit record (rmgr 1, info 0x00) with its xact_time; `pad` lengthens the main data. */
  commit(xid: number, at: Date, pad = 0): bigint {
    const main = new Uint8Array(8 + pad);
    new DataView(main.buffer).setBigInt64(0, BigInt(at.getTime() - PG_EPOCH_MS) * 1000n, true);
    return this.append(1, 0x00, xid, withMainData(main));
  }

  restorePoint(name: string, at: Date): bigint {
    const main = new Uint8Array(8 + 64);
    new DataView(main.buffer).setBigInt64(0, BigInt(at.getTime() - PG_EPOCH_MS) * 1000n, true);
    main.set(new TextEncoder().encode(name), 8);
    return this.append(0, 0x70, 0, withMainData(main));
  }

  /** A heap-like record with one block reference and data, to exercise fragment parsing. */
  blockRecord(xid: number, dataLen: number): bigint {
    const hdr = new Uint8Array(1 + 1 + 2 + 12 + 4);
    hdr[0] = 0; // block id 0
    hdr[1] = 0x20; // HAS_DATA, main fork
    new DataView(hdr.buffer).setUint16(2, dataLen, true);
    const body = new Uint8Array(hdr.length + dataLen);
    body.set(hdr, 0);
    return this.append(10, 0x00, xid, body);
  }

  /** XLOG_SWITCH: the rest of the segment stays zero (11+). */
  switchSegment(): void {
    this.append(0, 0x40, 0, new Uint8Array(0));
    const segno = (this.pos - 1n) / BigInt(this.segSize);
    this.pos = (segno + 1n) * BigInt(this.segSize);
    this.startPage(this.pos, 0, 0);
  }

  /** Give every page up to pos a header (the server writes whole pages). */
  private finishPages(): void {
    const bs = BigInt(BLCKSZ);
    const first = [...this.segments.keys()].reduce((a, b) => (a < b ? a : b)) * BigInt(this.segSize);
    for (let p = first; p < this.pos; p += bs) {
      const segno = p / BigInt(this.segSize);
      const off = Number(p % BigInt(this.segSize));
      const buf = this.seg(segno);
      if (buf[off] === 0 && buf[off + 1] === 0) this.ensurePage(p, 0, 0);
    }
  }

  /** The segments written so far: name → bytes (the last one possibly unfinished). */
  files(): Map<string, Uint8Array> {
    this.finishPages();
    const out = new Map<string, Uint8Array>();
    for (const [segno, bytes] of [...this.segments].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      out.set(walSegmentName(this.o.timeline, segno, this.segSize), bytes);
    }
    return out;
  }
}

function withMainData(main: Uint8Array): Uint8Array {
  if (main.length < 256) {
    const out = new Uint8Array(2 + main.length);
    out[0] = 255;
    out[1] = main.length;
    out.set(main, 2);
    return out;
  }
  const out = new Uint8Array(5 + main.length);
  out[0] = 254;
  new DataView(out.buffer).setUint32(1, main.length, true);
  out.set(main, 5);
  return out;
}

/** A segment of valid page headers only (no records), e.g. for archive tests. */
export function headerOnlySegment(o: SynthOptions, segno: bigint, fill = 0): Uint8Array {
  const segSize = o.segSize ?? SYNTH_SEG;
  const buf = new Uint8Array(segSize);
  const v = new DataView(buf.buffer);
  for (let off = 0; off < segSize; off += BLCKSZ) {
    const lsn = segno * BigInt(segSize) + BigInt(off);
    v.setUint16(off, o.magic ?? MAGIC_18, true);
    v.setUint16(off + 2, off === 0 ? 0x0002 : 0, true);
    v.setUint32(off + 4, o.timeline, true);
    v.setBigUint64(off + 8, lsn, true);
    if (off === 0) {
      v.setBigUint64(24, o.systemId, true);
      v.setUint32(32, segSize, true);
      v.setUint32(36, BLCKSZ, true);
    }
    buf[off + 100] = fill; // distinguishes two segments with the same name
  }
  return buf;
}

export { crc32c };

/**
 * `count` consecutive complete segments from `first` on, full of records as a server writes
 * them (records cross page and segment boundaries), one stream: the seams between them hold.
 */
export function recordSegments(o: SynthOptions, first: bigint, count: number): Uint8Array[] {
  const w = new WalWriter(o, first);
  const segSize = BigInt(o.segSize ?? SYNTH_SEG);
  let xid = 1000;
  while (w.pos < (first + BigInt(count)) * segSize + 1000n) w.blockRecord(xid++, 150 + (xid % 500));
  return [...w.files().values()].slice(0, count);
}
