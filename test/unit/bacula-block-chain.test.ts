/**
 * The decisions of mode pitr_block under Bacula (src/command/bacula/block-chain.ts): which base
 * backup an Incremental or Differential counts changed blocks from — the one of the job Bacula
 * names by Since=, read from the manifest copies kept in the spool — or why it stores a full base
 * backup; and which manifest copies the spool keeps.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blockReference, keptManifestDir, pruneKeptManifests } from '../../src/command/bacula/block-chain.js';
import type { BlockJobSettings, ChainRecord, PitrChainJob } from '../../src/command/bacula/pitr-chain.js';
import { serializeManifest, type BackupManifest } from '../../src/format/backup-manifest.js';
import type { JobLog } from '../../src/item/job-log.js';
import type { PitrSettings } from '../../src/modes/pitr/pitr.js';
import type { ServerNow } from '../../src/modes/pitr/wal-plan.js';
import { walSegmentName } from '../../src/wal/segment.js';

const S = 16 * 1024 * 1024;
const CLUSTER = '7000';
const T0 = Date.parse('2026-11-26T10:00:00Z');
const server: ServerNow = { systemId: '7000', timeline: 1, walSegmentSize: S, history: [] };
const block: BlockJobSettings = { mode: 'pitr_block', summaryDays: 14, summarizerWaitMs: 1000 };
const log = { info: () => undefined, warning: () => undefined } as unknown as JobLog;

function manifest(backupId: string, reference?: string): BackupManifest {
  return {
    format: 'pgbacula-backup-manifest', version: reference ? 2 : 1, backupId, mode: 'pitr_block', level: reference ? 'incremental' : 'full', label: 'x',
    systemIdentifier: '7000', pgVersion: '16.4', pgVersionNum: 160004, walSegmentSize: S, blockSize: 8192,
    fromStandby: false, dataDirectory: '/var/lib/postgresql/16/main', startLsn: '0/14000028', stopLsn: '0/14000100', startTimeline: 1, stopTimeline: 1,
    startTime: '2026-11-26T10:00:00.000Z', stopTime: '2026-11-26T10:00:01.000Z', hashAlgorithm: 'xxh3-64', rangeSize: 8388608,
    pageVerification: 'passed', checksumFailures: 0, tablespaces: [], walSegments: [],
    files: [{ path: 'pgdata/PG_VERSION', type: 'file', size: 3, mode: 0o600, mtime: '2026-11-26T10:00:00.000Z', hash: 'abc', stored: 'raw', storedSize: 3 }],
    ...(reference ? { reference: { backupId: reference, startLsn: '0/14000028', timeline: 1 } } : {}),
  };
}

function record(jobId: number, level: 'F' | 'I' | 'D', backupId: string | undefined, day: number, extra: Partial<ChainRecord> = {}): ChainRecord {
  const walThrough = { timeline: 1, segno: String(20 + day), name: walSegmentName(1, BigInt(20 + day), S) };
  return {
    jobId, jobName: `pitr.2026-11-2${6 + day}_10.00.00_0${jobId}`, level, stored: backupId ? 'base' : 'wal', ...(backupId ? { backupId } : {}),
    startedAtMs: T0 + day * 86_400_000 + 400, completedAtMs: T0 + day * 86_400_000 + 60_000, systemId: '7000', timeline: 1, walSegmentSize: S,
    walThrough, shippedCount: 1, ...extra,
  };
}

const since = (day: number): number => Math.floor((T0 + day * 86_400_000) / 1000);
const job = (level: 'I' | 'D', sinceSeconds: number | undefined): PitrChainJob => ({ jobId: 99, name: 'pitr.2026-12-01_10.00.00_99', level, since: sinceSeconds });

describe('blockReference: what an Incremental or Differential counts changed blocks from', () => {
  let spool: string;
  let s: PitrSettings;
  const keep = (m: BackupManifest): void => {
    mkdirSync(keptManifestDir(spool, CLUSTER), { recursive: true });
    writeFileSync(join(keptManifestDir(spool, CLUSTER), `${m.backupId}.json`), serializeManifest(m));
  };
  beforeEach(() => {
    spool = mkdtempSync(join(tmpdir(), 'block-chain-'));
    s = { spoolRoot: spool } as PitrSettings;
  });
  afterEach(() => rmSync(spool, { recursive: true, force: true }));

  const F = record(10, 'F', '20261126-100001F', 0);
  const I = record(11, 'I', '20261127-100001I', 1, { referenceJobId: 10 });

  it('is the base backup of the job Bacula names, with its chain back to the full one', async () => {
    keep(manifest(F.backupId!));
    keep(manifest(I.backupId!, F.backupId));
    const got = await blockReference(s, block, job('I', since(1)), [F, I], CLUSTER, server, log);
    expect(got.kind).toBe('reference');
    if (got.kind !== 'reference') return;
    expect(got.base.record.jobId).toBe(11);
    expect(got.base.chain.map((m) => m.backupId)).toEqual([F.backupId, I.backupId]);
    // a Differential names the last Full by its Since=
    const diff = await blockReference(s, block, job('D', since(0)), [F, I], CLUSTER, server, log);
    expect(diff.kind === 'reference' && diff.base.record.jobId).toBe(10);
  });

  it('is none, and the job says why, when the chain cannot be followed', async () => {
    keep(manifest(F.backupId!));
    const reason = async (j: PitrChainJob, records: ChainRecord[], srv = server): Promise<string> => {
      const got = await blockReference(s, block, j, records, CLUSTER, srv, log);
      expect(got.kind).toBe('base');
      return got.kind === 'base' ? got.reason : '';
    };
    expect(await reason(job('I', undefined), [F])).toBe('the FD gave no reference time for this Incremental job');
    expect(await reason(job('I', since(3)), [F, I])).toMatch(/^no pitr_block job of this FileSet started at or after 2026-11-29T10:00:00.000Z \(the previous job as Bacula counts it\) is recorded in the spool$/);
    expect(await reason(job('D', since(1)), [F, I])).toBe("the job recorded at the last Full's time (JobId 11) is not a Full job");
    expect(await reason(job('I', since(1)), [F, record(11, 'I', undefined, 1)])).toBe('JobId 11 stored no base backup to count changed blocks from');
    expect(await reason(job('I', since(0)), [F], { ...server, systemId: '8000' })).toBe('the system identifier changed from 7000 (JobId 10) to 8000');
    // the kept copy of the reference's manifest is gone ...
    expect(await reason(job('I', since(1)), [F, I])).toMatch(new RegExp(`^the base backup ${I.backupId} of JobId 11 cannot be counted from: the copy of its manifest .*${I.backupId}\\.json cannot be read \\(ENOENT\\)$`));
    // ... or one of its chain is
    rmSync(join(keptManifestDir(spool, CLUSTER), `${F.backupId}.json`));
    keep(manifest(I.backupId!, F.backupId));
    expect(await reason(job('I', since(1)), [F, I])).toMatch(new RegExp(`cannot be counted from: the copy of its manifest .*${F.backupId}\\.json cannot be read \\(ENOENT\\)$`));
    // ... or names another backup
    writeFileSync(join(keptManifestDir(spool, CLUSTER), `${F.backupId}.json`), serializeManifest(manifest('20261126-100002F')));
    expect(await reason(job('I', since(1)), [F, I])).toMatch(/names backup 20261126-100002F$/);
  });

  it('keeps the manifest copies of the kept records and of their chains, and only those', async () => {
    const old = record(5, 'F', '20261120-100001F', -6);
    const D = record(12, 'D', '20261128-100001D', 2, { referenceJobId: 10 });
    for (const m of [manifest(old.backupId!), manifest(F.backupId!), manifest(I.backupId!, F.backupId), manifest(D.backupId!, F.backupId)]) keep(m);
    writeFileSync(join(keptManifestDir(spool, CLUSTER), 'notes.txt'), 'not a manifest copy');
    // the chain record kept D only: F stays as its reference, I and the old Full go
    await pruneKeptManifests(spool, CLUSTER, [D]);
    expect(readdirSync(keptManifestDir(spool, CLUSTER)).sort()).toEqual([`${F.backupId}.json`, `${D.backupId}.json`, 'notes.txt'].sort());
  });
});
