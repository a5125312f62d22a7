/**
 * The virtual paths of mode pitr both ways: what the FD keeps (PrefixedSink: the repository's stored
 * form under a prefix, LZ4 as a standard frame named .lz4) and where a restore stages each path
 * (placeItem). Pure: no FD, no files.
 */
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrameHeader } from '../../src/format/lz4-frame.js';
import { loadKernels } from '../../src/format/kernels.js';
import { placeItem } from '../../src/modes/pitr/restore.js';
import { chainFilePath } from '../../src/command/bacula/pitr-chain-file.js';
import { jobBaseName, recordsOfJob } from '../../src/command/bacula/pitr-chain.js';
import type { ChainRecord } from '../../src/command/bacula/pitr-chain.js';
import type { ItemHeader, ItemSink, ItemTrailer } from '../../src/item/item.js';
import { PrefixedSink } from '../../src/pipeline/prefixed-sink.js';

class Recorder implements ItemSink {
  items: Array<{ header: ItemHeader; data: Buffer }> = [];
  async begin(header: ItemHeader): Promise<void> {
    this.items.push({ header, data: Buffer.alloc(0) });
  }
  async write(chunk: Uint8Array): Promise<void> {
    const last = this.items.at(-1)!;
    last.data = Buffer.concat([last.data, chunk]);
  }
  async end(_t: ItemTrailer): Promise<void> {}
}

const trailer: ItemTrailer = { hash: '', rawSize: 0, storedSize: 0 };

describe('PrefixedSink', () => {
  it('files items under the prefix; raw items pass unchanged', async () => {
    const r = new Recorder();
    const s = new PrefixedSink(r, '7000/pitr/20261126-100000F/');
    await s.begin({ path: 'pgdata/PG_VERSION', type: 'file', mode: 0o600, mtimeMs: 0, size: 3, encoding: 'raw' });
    await s.write(Buffer.from('17\n'));
    await s.end(trailer);
    await s.begin({ path: 'pgdata/base', type: 'dir', mode: 0o700, mtimeMs: 0, size: 0, encoding: 'raw' });
    await s.end(trailer);
    expect(r.items.map((i) => [i.header.path, i.header.encoding, i.data.toString()])).toEqual([
      ['7000/pitr/20261126-100000F/pgdata/PG_VERSION', 'raw', '17\n'],
      ['7000/pitr/20261126-100000F/pgdata/base', 'raw', ''],
    ]);
  });

  it('hands an LZ4 item on as a whole standard frame named .lz4 (the repository stored form)', async () => {
    const r = new Recorder();
    const s = new PrefixedSink(r, 'c/pitr/20261126-100000F/');
    await s.begin({ path: 'pgdata/base/5/16384', type: 'file', mode: 0o600, mtimeMs: 0, size: 0, encoding: 'lz4' });
    await s.end(trailer);
    expect(r.items[0]!.header.path).toBe('c/pitr/20261126-100000F/pgdata/base/5/16384.lz4');
    expect(r.items[0]!.header.encoding).toBe('raw');
    expect(r.items[0]!.data.subarray(0, encodeFrameHeader().length)).toEqual(Buffer.from(encodeFrameHeader()));
    expect(decodeFrame(r.items[0]!.data, loadKernels()).length).toBe(0);
  });
});

describe('placeItem: where a restore stages what the FD sends', () => {
  const st = '/srv/pg/new.pgbacula-restore-7';
  it('base backup files, their manifest and directories go into the staging repository', () => {
    expect(placeItem(st, '7000/pitr/20261126-100000F/pgdata/base/5/16384', 'file')).toEqual({ kind: 'file', path: `${st}/backups/20261126-100000F/files/pgdata/base/5/16384` });
    expect(placeItem(st, '7000/pitr/20261126-100000F/pgdata/base/5/16384.lz4', 'file')).toEqual({ kind: 'file', path: `${st}/backups/20261126-100000F/files/pgdata/base/5/16384.lz4` });
    expect(placeItem(st, '7000/pitr/20261126-100000F/manifest.json', 'file')).toEqual({ kind: 'manifest', backupId: '20261126-100000F', path: `${st}/backups/20261126-100000F/manifest.json` });
    expect(placeItem(st, '7000/pitr/20261126-100000F/pgdata/base', 'dir')).toEqual({ kind: 'dir', path: `${st}/backups/20261126-100000F/files/pgdata/base` });
    expect(placeItem(st, '7000/pitr/20261126-100000F/pgdata/pg_tblspc/16500', 'symlink')).toEqual({ kind: 'ignore' });
  });

  it('WAL segments, history files and partials (a cdp job\'s open segment) are received for the archive; .backup files are not needed', () => {
    expect(placeItem(st, '7000/wal/00000002/000000020000000000000019', 'file')).toEqual({ kind: 'wal', name: '000000020000000000000019', path: `${st}/incoming/000000020000000000000019` });
    expect(placeItem(st, '7000/wal/00000002/00000002.history', 'file')).toEqual({ kind: 'wal', name: '00000002.history', path: `${st}/incoming/00000002.history` });
    expect(placeItem(st, '7000/wal/00000001/000000010000000000000019.partial', 'file')).toEqual({ kind: 'wal', name: '000000010000000000000019.partial', path: `${st}/incoming/000000010000000000000019.partial` });
    expect(placeItem(st, '7000/wal/00000001/000000010000000000000019.00000028.backup', 'file')).toEqual({ kind: 'ignore' });
    expect(placeItem(st, '7000/wal/00000001', 'dir')).toEqual({ kind: 'ignore' });
  });

  it('anything else is not a pitr file (refused with the reason by the target)', () => {
    expect(placeItem(st, '7000/dump/42/app.dump', 'file')).toBeUndefined();
    expect(placeItem(st, '7000/pitr/not-an-id/pgdata/x', 'file')).toBeUndefined();
    expect(placeItem(st, '7000/pitr/20261126-100000F/../../etc/passwd', 'file')).toBeUndefined();
    expect(placeItem(st, '7000/wal/00000001/notwal', 'file')).toBeUndefined();
    expect(placeItem(st, '7000/wal/1/000000010000000000000019', 'file')).toBeUndefined();
  });
});

describe('chain file naming', () => {
  it('one file per cluster; Since= is per Job, console estimates see every Job', () => {
    expect(chainFilePath('/var/lib/pgbacula/wal-spool', '7000')).toBe('/var/lib/pgbacula/wal-spool/.bacula-chain/7000.json');
    expect(chainFilePath('/s', 'sales db')).toBe('/s/.bacula-chain/sales_db.json');
    expect(jobBaseName('pg-db1-pitr.2026-11-26_10.00.00_05')).toBe('pg-db1-pitr');
    expect(jobBaseName('-Console-.2026-11-26_10.00.00_05')).toBe('-Console-');
    const r = (jobId: number, jobName: string) => ({ jobId, jobName }) as ChainRecord;
    const records = [r(1, 'a.2026-11-26_10.00.00_01'), r(2, 'b.2026-11-26_10.00.00_02')];
    expect(recordsOfJob(records, 'a.2026-11-27_10.00.00_09').map((x) => x.jobId)).toEqual([1]);
    expect(recordsOfJob(records, '-Console-.2026-11-27_10.00.00_09').map((x) => x.jobId)).toEqual([1, 2]);
  });
});
