import { describe, expect, it } from 'vitest';
import { parseManifest, serializeManifest, type BackupManifest } from '../../src/format/backup-manifest.js';

const sample: BackupManifest = {
  format: 'pgbacula-backup-manifest', version: 1, backupId: '20261126-120000F', mode: 'pitr', level: 'full', label: 'x',
  systemIdentifier: '7712450010997394938', pgVersion: '15.18', pgVersionNum: 150018, walSegmentSize: 16777216, blockSize: 8192,
  fromStandby: false, dataDirectory: '/var/lib/postgresql/15/main', startLsn: '0/2000028', stopLsn: '0/2000100', startTimeline: 1, stopTimeline: 1,
  startTime: '2026-11-26T12:00:00.000Z', stopTime: '2026-11-26T12:00:01.000Z', hashAlgorithm: 'xxh3-64', rangeSize: 8388608,
  pageVerification: 'passed', checksumFailures: 0, tablespaces: [], walSegments: ['000000010000000000000002'],
  files: [
    { path: 'pgdata/base', type: 'dir', size: 0, mode: 0o700, mtime: '2026-11-26T12:00:00.000Z' },
    { path: 'pgdata/base/5/1259', type: 'file', size: 8192, mode: 0o600, mtime: '2026-11-26T12:00:00.000Z', hash: 'abc', stored: 'lz4', storedSize: 100, pages: { pagesChecked: 1, newPages: 0, failedBlocks: [], tornPages: 0 } },
  ],
};

describe('backup manifest', () => {
  it('round-trips, one file per line, and keeps the 64-bit system identifier exact', () => {
    const text = serializeManifest(sample);
    expect(text.split('\n').filter((l) => l.startsWith('{"path"')).length).toBe(2);
    expect(parseManifest(text)).toEqual(sample);
  });
  it('refuses a truncated or edited manifest', () => {
    const text = serializeManifest(sample);
    expect(() => parseManifest(text.slice(0, text.length - 30))).toThrow(/seal/);
    expect(() => parseManifest(text.replace('"size":8192', '"size":8193'))).toThrow(/seal mismatch/);
  });
  describe('bundle references (version 3)', () => {
    const bundled = (f: Partial<BackupManifest['files'][number]>, version = 3): BackupManifest => ({
      ...sample,
      version,
      files: [sample.files[0]!, { ...sample.files[1]!, bundle: { id: 0, offset: 4096, length: 111 }, ...f }],
    });
    it('round-trip', () => {
      const m = bundled({});
      expect(parseManifest(serializeManifest(m))).toEqual(m);
    });
    it('are refused in a manifest of an earlier version, which a reader of that version would misread', () => {
      expect(() => parseManifest(serializeManifest(bundled({}, 2)))).toThrow(/names a bundle in a manifest of version 2/);
    });
    it('must be three whole numbers', () => {
      for (const bundle of [{ id: -1, offset: 0, length: 1 }, { id: 0, offset: 1.5, length: 1 }, { id: 0, offset: 0 }, { id: '0', offset: 0, length: 1 }, null]) {
        expect(() => parseManifest(serializeManifest(bundled({ bundle: bundle as never })))).toThrow(/not three whole numbers/);
      }
    });
    it('only for files of the cluster: not WAL, not the backup label, not directories', () => {
      expect(() => parseManifest(serializeManifest(bundled({ path: 'wal/000000010000000000000002' })))).toThrow(/is bundled but is not a file of the cluster's areas/);
      expect(() => parseManifest(serializeManifest(bundled({ path: 'backup_label' })))).toThrow(/is bundled but/);
      expect(() => parseManifest(serializeManifest(bundled({ type: 'dir' })))).toThrow(/is bundled but/);
    });
  });
});
