/**
 * Block summaries next to archived segments (src/archive/segment-summary.ts) and the changed
 * blocks of a range (src/archive/changed-blocks.ts), on the in-memory storage.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLog } from '../../src/item/job-log.js';
import { pruneSpoolBefore } from '../../src/modes/pitr/pitr.js';
import { parseBlockRefTable, type BlockRefTable } from '../../src/format/block-ref-table.js';
import { changedBlocksFromArchive } from '../../src/archive/changed-blocks.js';
import { listWalArchive } from '../../src/archive/listing.js';
import { publishReceivedFile } from '../../src/archive/publish-received.js';
import { pushWalFile } from '../../src/archive/push.js';
import { MemoryStorage } from '../../src/storage/memory.js';
import { SYNTH_SEG, WalWriter } from './wal-synth.js';

const SYS = 7311887020705307463n;
const ID = SYS.toString();
const ROOT = '/spool';
const SEG = BigInt(SYNTH_SEG);
const TL = `${ROOT}/${ID}/00000001`;

function dump(t: BlockRefTable): Record<string, { limit: number; blocks: number[] }> {
  const out: Record<string, { limit: number; blocks: number[] }> = {};
  for (const [rf, e] of t.entries()) out[`${rf.spcOid}/${rf.dbOid}/${rf.relNumber}/${rf.fork}`] = { limit: e.limitBlock, blocks: [...e.blocksIn(0, 0xffffffff)] };
  return out;
}

/** One heap-like record touching (1663, 5, rel) block `block`. */
function blockRecord(w: WalWriter, rel: number, block: number, dataLen = 200): bigint {
  const b = new Uint8Array(4 + 12 + 4 + dataLen);
  const v = new DataView(b.buffer);
  b[0] = 0;
  b[1] = 0x20;
  v.setUint16(2, dataLen, true);
  v.setUint32(4, 1663, true);
  v.setUint32(8, 5, true);
  v.setUint32(12, rel, true);
  v.setUint32(16, block, true);
  return w.append(10, 0x00, 1, b);
}

/** A commit dropping `n` relations (1663, 5, 50000 + i): main data only. */
function dropCommit(w: WalWriter, n: number): bigint {
  const main = new Uint8Array(8 + 4 + 4 + 12 * n);
  const v = new DataView(main.buffer);
  v.setUint32(8, 1 << 2, true);
  v.setInt32(12, n, true);
  for (let i = 0; i < n; i++) {
    v.setUint32(16 + 12 * i, 1663, true);
    v.setUint32(20 + 12 * i, 5, true);
    v.setUint32(24 + 12 * i, 50000 + i, true);
  }
  const body = new Uint8Array(5 + main.length);
  body[0] = 254;
  new DataView(body.buffer).setUint32(1, main.length, true);
  body.set(main, 5);
  return w.append(1, 0x80 | 0x01, 9, body);
}

/** Segments 4, 5, 6 (6 unfinished): segment 4 ends in a dropping commit that continues in 5. */
function stream(): { files: Uint8Array[]; commit: bigint; w: WalWriter } {
  const w = new WalWriter({ systemId: SYS, timeline: 1 }, 4n);
  let i = 0;
  while (w.pos < 5n * SEG - 500n) blockRecord(w, 16384, i++ % 300);
  const commit = dropCommit(w, 80);
  while (w.pos < 6n * SEG - 300n) blockRecord(w, 16400, i++ % 50);
  blockRecord(w, 16500, 7, 2000); // crosses into 6, ordinary
  blockRecord(w, 16500, 8);
  return { files: [...w.files().values()], commit, w };
}

async function setup(): Promise<{ s: MemoryStorage; files: Uint8Array[]; commit: bigint; warnings: string[]; push: (n: number) => Promise<void> }> {
  const s = new MemoryStorage();
  await s.makeDirs('/src');
  const { files, commit } = stream();
  const warnings: string[] = [];
  const push = async (n: number) => {
    const name = `00000001000000000000000${n}`;
    await s.writeFileDurable(`/src/${name}`, files[n - 4]!);
    await pushWalFile({ root: ROOT, sourcePath: `/src/${name}`, storage: s, warn: (t) => warnings.push(t) });
  };
  return { s, files, commit, warnings, push };
}

describe('segment summaries in the archive', () => {
  it('a segment whose last record ends in the next one gets its summary when that one is archived; the listing ignores summaries', async () => {
    const { s, commit, warnings, push } = await setup();
    expect(commit < 5n * SEG).toBe(true);
    await push(4);
    expect(await s.exists(`${TL}/000000010000000000000004.summary`)).toBe(false); // pending: the commit's main data is in 5
    await push(5);
    expect(warnings).toEqual([]);
    const s4 = parseBlockRefTable(await s.readFile(`${TL}/000000010000000000000004.summary`));
    const s5 = parseBlockRefTable(await s.readFile(`${TL}/000000010000000000000005.summary`));
    expect(dump(s4)['1663/5/50079/0']).toEqual({ limit: 0, blocks: [] });
    expect(dump(s4)['1663/5/16384/0']!.blocks).toHaveLength(300);
    expect(dump(s5)['1663/5/16400/0']!.blocks).toHaveLength(50);
    expect(dump(s5)['1663/5/16500/0']!.blocks).toEqual([7]); // the crossing ordinary record: its headers are in 5
    expect(dump(s5)['1663/5/50079/0']).toBeUndefined();
    const listing = await listWalArchive(ROOT, ID, s);
    expect(listing.problems).toEqual([]);
    expect(listing.segments.map((x) => x.name)).toEqual(['000000010000000000000004', '000000010000000000000005']);
    // Re-push: idempotent, the summary is left as it is.
    const before = await s.readFile(`${TL}/000000010000000000000005.summary`);
    await push(5);
    expect((await s.readFile(`${TL}/000000010000000000000005.summary`)).equals(before)).toBe(true);
  });

  it('pushed out of order (5 before 4), both get their summaries', async () => {
    const { s, warnings, push } = await setup();
    await push(5);
    expect(await s.exists(`${TL}/000000010000000000000005.summary`)).toBe(true);
    await push(4);
    expect(warnings).toEqual([]);
    expect(dump(parseBlockRefTable(await s.readFile(`${TL}/000000010000000000000004.summary`)))['1663/5/50079/3']).toEqual({ limit: 0, blocks: [] });
  });

  it('summarize: false stores the segment only', async () => {
    const { s, files } = await setup();
    await s.writeFileDurable('/src/000000010000000000000005', files[1]!);
    await pushWalFile({ root: ROOT, sourcePath: '/src/000000010000000000000005', storage: s, summarize: false });
    expect(await s.exists(`${TL}/000000010000000000000005`)).toBe(true);
    expect(await s.exists(`${TL}/000000010000000000000005.summary`)).toBe(false);
  });

  it('a failing summary write is a warning; the segment is archived', async () => {
    const { s, warnings, files } = await setup();
    const real = s.publishIfAbsent.bind(s);
    s.publishIfAbsent = async (path, data, opt) => {
      if (path.endsWith('.summary')) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      return real(path, data, opt);
    };
    await s.writeFileDurable('/src/000000010000000000000005', files[1]!);
    const r = await pushWalFile({ root: ROOT, sourcePath: '/src/000000010000000000000005', storage: s, warn: (t) => warnings.push(t) });
    expect(r.status).toBe('stored');
    expect(warnings.join('\n')).toMatch(/cannot write the block summary of WAL segment 000000010000000000000005 .*no space left/);
  });
});

describe('pruning the spool', () => {
  it('removes a pruned segment\'s summary with it, and keeps the others', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pgbacula-prune-'));
    try {
      const { files } = stream();
      const warnings: string[] = [];
      for (const n of [4, 5]) {
        const src = join(root, `00000001000000000000000${n}`);
        writeFileSync(src, files[n - 4]!);
        await pushWalFile({ root: join(root, 'spool'), sourcePath: src, warn: (t) => warnings.push(t) });
      }
      const tl = join(root, 'spool', ID, '00000001');
      expect(readdirSync(tl).sort()).toEqual(['000000010000000000000004', '000000010000000000000004.summary', '000000010000000000000005', '000000010000000000000005.summary']);
      expect(await pruneSpoolBefore(join(root, 'spool'), ID, SYNTH_SEG, 5n, silentLog)).toBe(1);
      expect(readdirSync(tl).sort()).toEqual(['000000010000000000000005', '000000010000000000000005.summary']);
      expect(warnings).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('wal-receive publishing', () => {
  it('writes the summaries of the segments it publishes, resolving the previous one\'s pending tail', async () => {
    const s = new MemoryStorage();
    const { files } = stream();
    const rdir = `${ROOT}/${ID}/.receive`;
    await s.makeDirs(rdir);
    for (const n of [4, 5]) {
      const name = `00000001000000000000000${n}`;
      await s.writeFileDurable(`${rdir}/${name}`, files[n - 4]!);
      const warnings: string[] = [];
      await publishReceivedFile(ROOT, ID, `${rdir}/${name}`, { segmentSize: SYNTH_SEG, magic: 0xd118 }, s, (t) => warnings.push(t));
      expect(warnings).toEqual([]);
      expect(await s.exists(`${TL}/000000010000000000000004.summary`)).toBe(n === 5);
    }
    expect(dump(parseBlockRefTable(await s.readFile(`${TL}/000000010000000000000005.summary`)))['1663/5/16500/0']!.blocks).toEqual([7]);
  });
});

describe('changedBlocksFromArchive', () => {
  it('merges the stored summaries of the range (partly covered segments too: a superset), summarizes the rest (the last from pg_wal)', async () => {
    const { s, files, push } = await setup();
    await push(4);
    await push(5);
    const { w } = stream();
    const req = { root: ROOT, systemId: ID, timeline: 1, segmentSize: SYNTH_SEG, storage: s };
    const whole = await changedBlocksFromArchive({ ...req, fromLsn: 4n * SEG, toLsn: 6n * SEG });
    expect(whole).toMatchObject({ ok: true, segments: 2, fromSummaries: 2, summarizedNow: 0, walBytesRead: 0 });
    const merged = parseBlockRefTable(await s.readFile(`${TL}/000000010000000000000004.summary`));
    merged.merge(parseBlockRefTable(await s.readFile(`${TL}/000000010000000000000005.summary`)));
    expect(whole.ok && dump(whole.table)).toEqual(dump(merged));

    // From the middle of 4 to the end of the WAL in 6, which is not archived: read from "pg_wal".
    const read: string[] = [];
    const r = await changedBlocksFromArchive({
      ...req,
      fromLsn: 4n * SEG + 100_000n,
      toLsn: w.pos,
      readMissing: async (name) => {
        read.push(name);
        return name === '000000010000000000000006' ? files[2] : undefined;
      },
    });
    expect(r).toMatchObject({ ok: true, segments: 3, fromSummaries: 2, summarizedNow: 1 });
    expect(read).toEqual(['000000010000000000000006']);
    expect(r.ok && dump(r.table)['1663/5/16500/0']).toEqual({ limit: 0xffffffff, blocks: [7, 8] });
    expect(r.ok && dump(r.table)['1663/5/50000/2']).toEqual({ limit: 0, blocks: [] });
  });

  it('refuses, naming it, when a segment of the range is missing; and when the WAL ends early', async () => {
    const { s, push } = await setup();
    await push(4);
    await push(5);
    const req = { root: ROOT, systemId: ID, timeline: 1, segmentSize: SYNTH_SEG, storage: s };
    const r = await changedBlocksFromArchive({ ...req, fromLsn: 4n * SEG, toLsn: 7n * SEG });
    expect(r).toEqual({ ok: false, reason: `WAL segment 000000010000000000000006 (0/600000) is missing from the archive ${ROOT}` });
    await s.removeFile(`${TL}/000000010000000000000005`);
    await s.removeFile(`${TL}/000000010000000000000004.summary`);
    const r2 = await changedBlocksFromArchive({ ...req, fromLsn: 4n * SEG + 1000n, toLsn: 5n * SEG + 1000n });
    expect(r2.ok).toBe(false);
    expect(!r2.ok && r2.reason).toMatch(/WAL segment 000000010000000000000005 .*is missing from the archive/);
  });
});
