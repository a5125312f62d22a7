/**
 * LOCAL STAND-IN (branch wt-walsum) for the block reference table of branch wt-brt, which owns
 * this file: same API, simple representation, so src/wal/block-refs.ts compiles and is tested.
 * At merge the wt-brt version replaces it. Format: docs/block-incremental.md.
 */

/** Bitwise CRC-32C: the stand-in's own (the format layer may not import src/wal). */
function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

export const NO_LIMIT = 0xffffffff;
const MAGIC = 0x652b137b;
const CHUNK = 65536;
const BITMAP_AT = 4096;

export interface RelFork {
  readonly spcOid: number;
  readonly dbOid: number;
  readonly relNumber: number;
  readonly fork: number;
}

interface Entry {
  readonly rf: RelFork;
  limit: number;
  blocks: Set<number>;
}

export interface BlockRefEntryView {
  readonly limitBlock: number;
  readonly blockCount: number;
  blocksIn(start: number, end: number): Uint32Array;
}

function keyOf(rf: RelFork): string {
  return `${rf.spcOid}/${rf.dbOid}/${rf.relNumber}/${rf.fork}`;
}

function cmp(a: RelFork, b: RelFork): number {
  return a.spcOid - b.spcOid || a.dbOid - b.dbOid || a.relNumber - b.relNumber || a.fork - b.fork;
}

export class BlockRefTable {
  private readonly map = new Map<string, Entry>();

  private get(rf: RelFork): Entry {
    const k = keyOf(rf);
    let e = this.map.get(k);
    if (!e) {
      e = { rf: { spcOid: rf.spcOid >>> 0, dbOid: rf.dbOid >>> 0, relNumber: rf.relNumber >>> 0, fork: rf.fork }, limit: NO_LIMIT, blocks: new Set() };
      this.map.set(k, e);
    }
    return e;
  }

  /** Stand-in only: an entry as read from a file. */
  loadEntry(rf: RelFork, limit: number, blocks: readonly number[]): void {
    const e = this.get(rf);
    e.limit = limit;
    for (const b of blocks) e.blocks.add(b);
  }

  markBlock(rf: RelFork, block: number): void {
    this.get(rf).blocks.add(block >>> 0);
  }

  setLimit(rf: RelFork, limit: number): void {
    const e = this.get(rf);
    if (limit >= e.limit) return;
    e.limit = limit;
    for (const b of e.blocks) if (b >= limit) e.blocks.delete(b);
  }

  merge(other: BlockRefTable): void {
    for (const e of other.map.values()) {
      if (e.limit !== NO_LIMIT) this.setLimit(e.rf, e.limit);
      else this.get(e.rf);
      for (const b of e.blocks) this.markBlock(e.rf, b);
    }
  }

  entry(rf: RelFork): BlockRefEntryView | undefined {
    const e = this.map.get(keyOf(rf));
    if (!e) return undefined;
    return {
      limitBlock: e.limit,
      blockCount: e.blocks.size,
      blocksIn: (start, end) => Uint32Array.from([...e.blocks].filter((b) => b >= start && b < end).sort((x, y) => x - y)),
    };
  }

  databaseChanged(spc: number, db: number): boolean {
    const e = this.map.get(keyOf({ spcOid: spc, dbOid: db, relNumber: 0, fork: 0 }));
    return e !== undefined && e.limit === 0;
  }

  *entries(): IterableIterator<{ rf: RelFork; limitBlock: number; blocks: Uint32Array }> {
    for (const e of [...this.map.values()].sort((a, b) => cmp(a.rf, b.rf))) {
      yield { rf: e.rf, limitBlock: e.limit, blocks: Uint32Array.from([...e.blocks].sort((x, y) => x - y)) };
    }
  }

  get entryCount(): number {
    return this.map.size;
  }

  get blockCount(): number {
    let n = 0;
    for (const e of this.map.values()) n += e.blocks.size;
    return n;
  }

  get approximateBytes(): number {
    return this.map.size * 64 + this.blockCount * 8;
  }
}

export function serializeBlockRefTable(t: BlockRefTable): Uint8Array {
  const parts: number[] = [];
  const u32 = (n: number): void => {
    parts.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  };
  const u16 = (n: number): void => {
    parts.push(n & 0xff, (n >>> 8) & 0xff);
  };
  u32(MAGIC);
  for (const e of t.entries()) {
    const chunks = new Map<number, number[]>();
    for (const b of e.blocks) {
      const c = Math.floor(b / CHUNK);
      let l = chunks.get(c);
      if (!l) chunks.set(c, (l = []));
      l.push(b % CHUNK);
    }
    const n = chunks.size === 0 ? 0 : Math.max(...chunks.keys()) + 1;
    u32(e.rf.spcOid);
    u32(e.rf.dbOid);
    u32(e.rf.relNumber);
    u32(e.rf.fork);
    u32(e.limitBlock);
    u32(n);
    for (let c = 0; c < n; c++) u16(Math.min(chunks.get(c)?.length ?? 0, BITMAP_AT));
    for (let c = 0; c < n; c++) {
      const l = chunks.get(c);
      if (!l) continue;
      if (l.length >= BITMAP_AT) {
        const words = new Uint16Array(BITMAP_AT);
        for (const o of l) words[o >>> 4] = words[o >>> 4]! | (1 << (o & 15));
        for (const w of words) u16(w);
      } else for (const o of l) u16(o);
    }
  }
  for (let i = 0; i < 6; i++) u32(0);
  const out = new Uint8Array(parts.length + 4);
  out.set(parts);
  new DataView(out.buffer).setUint32(parts.length, crc32c(out.subarray(0, parts.length)), true);
  return out;
}

export function parseBlockRefTable(bytes: Uint8Array, name = 'block reference table'): BlockRefTable {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  const need = (n: number): void => {
    if (off + n > bytes.length) throw new Error(`file "${name}" ends unexpectedly`);
  };
  need(4);
  if (v.getUint32(0, true) !== MAGIC) throw new Error(`file "${name}" has wrong magic number`);
  off = 4;
  const t = new BlockRefTable();
  for (;;) {
    need(24);
    const h = [0, 1, 2, 3, 4, 5].map((i) => v.getUint32(off + 4 * i, true));
    off += 24;
    if (h.every((x) => x === 0)) {
      need(4);
      if (v.getUint32(off, true) !== crc32c(bytes.subarray(0, off))) throw new Error(`file "${name}" has wrong checksum`);
      if (off + 4 !== bytes.length) throw new Error(`file "${name}" has trailing bytes`);
      return t;
    }
    const rf = { spcOid: h[0]!, dbOid: h[1]!, relNumber: h[2]!, fork: h[3]! };
    const usage: number[] = [];
    need(2 * h[5]!);
    for (let c = 0; c < h[5]!; c++, off += 2) usage.push(v.getUint16(off, true));
    const blocks: number[] = [];
    for (let c = 0; c < usage.length; c++) {
      const u = usage[c]!;
      if (u === 0) continue;
      if (u === BITMAP_AT) {
        need(8192);
        for (let w = 0; w < BITMAP_AT; w++) {
          const word = v.getUint16(off + 2 * w, true);
          for (let b = 0; b < 16; b++) if (word & (1 << b)) blocks.push(c * CHUNK + 16 * w + b);
        }
        off += 8192;
      } else {
        need(2 * u);
        for (let i = 0; i < u; i++) blocks.push(c * CHUNK + v.getUint16(off + 2 * i, true));
        off += 2 * u;
      }
    }
    t.loadEntry(rf, h[4]!, blocks);
  }
}
