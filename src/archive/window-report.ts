/**
 * The recoverable window of an archive, gathered from disk: the listing (src/archive/listing.ts), the
 * base backups the caller knows (a repository's manifests), and the records of the last segments
 * of each range (src/wal/record-scan.ts) for the last commit time. The judging itself is pure
 * (src/archive/window.ts). Also the text `pgbacula info` prints.
 */
import { stat } from 'node:fs/promises';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { formatLsn, parseLsn } from '../wal/lsn.js';
import { pgTimeToIso, scanSegmentRecords, type SegmentScan } from '../wal/record-scan.js';
import { hex8, walSegmentNumber, walSegmentStart } from '../wal/segment.js';
import { checkWalArchive, type DamagedSegment } from './archive-check.js';
import { listArchivedSystems, listWalArchive, type ArchivedSegment, type WalArchiveListing } from './listing.js';
import { receiverLock, type ReceiverLock } from './receiver-lock.js';
import { describeGap, recoverableWindow, timelineOfSegment, type BackupPoint, type RecoverableWindow, type SegmentFacts } from './window.js';

/** The fields of a backup manifest (src/format/backup-manifest.ts) the window needs. */
export interface ManifestLike {
  readonly backupId: string;
  readonly systemIdentifier: string;
  readonly startLsn: string;
  readonly stopLsn: string;
  readonly startTimeline: number;
  readonly stopTimeline: number;
  readonly stopTime: string;
}

export function backupPointOf(m: ManifestLike): BackupPoint {
  return {
    id: m.backupId,
    startLsn: parseLsn(m.startLsn, 'start LSN'),
    stopLsn: parseLsn(m.stopLsn, 'stop LSN'),
    startTimeline: m.startTimeline,
    stopTimeline: m.stopTimeline,
    stopTime: m.stopTime,
  };
}

export interface WindowReport {
  readonly listing: WalArchiveListing;
  readonly window: RecoverableWindow;
  /** Every damaged archived file (segments and partials, on any timeline). */
  readonly damaged: readonly DamagedSegment[];
  /** wal-receive's lock, when one was left or is held. */
  readonly receiver?: ReceiverLock | undefined;
  /** When the newest WAL file (complete or the open .partial) was last written (ms since the epoch). */
  readonly newestWalAtMs?: number | undefined;
}

export interface WindowReportOptions {
  readonly root: string;
  readonly systemId: string;
  /** Base backups of this system (others are ignored). */
  readonly backups?: readonly (BackupPoint | ManifestLike)[];
  readonly timeline?: number;
  /** How many segments back from the end of a range to look for its last commit (default 8). */
  readonly scanBack?: number;
  /** Where the archive is (default: the file system). */
  readonly storage?: Storage;
  /**
   * Read and judge the segments only up to the one after the segment holding this LSN (a restore
   * to it reads no further): the segments past it are listed, not read. Damage there is then
   * not found, so the window is good only for questions about points up to this LSN.
   */
  readonly readUpTo?: bigint;
}

/** A whole segment, or undefined when it cannot be read or is short. */
async function readSegment(storage: Storage, path: string, size: number): Promise<Uint8Array | undefined> {
  const bytes = await storage.readRange(path, 0, size).catch(() => undefined);
  return bytes?.length === size ? bytes : undefined;
}

function factsOf(scan: SegmentScan): SegmentFacts {
  return {
    endLsn: scan.endLsn,
    ...(scan.lastRecordStart === undefined ? {} : { lastRecordLsn: scan.lastRecordStart }),
    ...(scan.lastXact ? { lastXactLsn: scan.lastXact.lsn, lastXactTime: pgTimeToIso(scan.lastXact.pgTime) } : {}),
  };
}

/** Listing + window of one system, with the last commit time of each range read from its WAL. */
export async function windowReport(o: WindowReportOptions): Promise<WindowReport> {
  const storage = o.storage ?? posixStorage;
  const listing = await listWalArchive(o.root, o.systemId, storage);
  const backups = (o.backups ?? [])
    .filter((b) => !('systemIdentifier' in b) || b.systemIdentifier === o.systemId)
    .map((b) => ('backupId' in b ? backupPointOf(b) : b));
  const S = listing.segmentSize;
  // Every segment's records are read from the oldest backup's start on (nothing before it can be
  // replayed): a damaged one ends the window as a gap does.
  const from = backups.reduce<bigint | undefined>((m, b) => {
    const s = walSegmentNumber(b.startLsn, S);
    return m === undefined || s < m ? s : m;
  }, undefined);
  const upTo = o.readUpTo === undefined ? undefined : walSegmentNumber(o.readUpTo, S) + 1n;
  const check = await checkWalArchive(o.root, o.systemId, listing, from ?? 0n, storage, upTo);
  const damaged = new Map(check.damaged.filter((d) => !d.name.endsWith('.partial')).map((d) => [d.name, d.problem] as const));
  const input = {
    systemId: o.systemId,
    segmentSize: S,
    segments: listing.segments,
    histories: listing.histories,
    backups,
    ...(o.timeline === undefined ? {} : { timeline: o.timeline }),
    damaged,
  };
  const first = recoverableWindow(input);

  // Read the last segments of each range (newest first) until one holds a commit after the backup.
  const byName = new Map<string, ArchivedSegment>(listing.segments.map((s) => [s.name, s]));
  const facts = new Map<string, SegmentFacts>();
  const scanBack = o.scanBack ?? 8;
  for (const r of first.ranges) {
    if (r.lastSegment === undefined) continue;
    let seg = byName.get(r.lastSegment);
    for (let k = 0; seg && k < scanBack; k++) {
      let f = facts.get(seg.name);
      if (!f) {
        const bytes = await readSegment(storage, seg.path, S);
        if (!bytes) break;
        f = factsOf(scanSegmentRecords(bytes, { segmentStart: walSegmentStart(seg.segno, S), segmentSize: S }));
        facts.set(seg.name, f);
      }
      if (f.lastXactLsn !== undefined && f.lastXactLsn >= r.from.lsn) break;
      const prev = seg.segno - 1n;
      if (walSegmentStart(prev + 1n, S) <= r.from.lsn) break;
      const tli = timelineOfSegment(first.lineage, prev, S);
      seg = listing.segments.find((s) => s.segno === prev && s.timeline === tli);
    }
  }
  let receiving: { timeline: number; segno: bigint; endLsn?: bigint } | undefined;
  if (listing.receiving) {
    const bytes = await readSegment(storage, listing.receiving.path, S);
    const scan = bytes && scanSegmentRecords(bytes, { segmentStart: walSegmentStart(listing.receiving.segno, S), segmentSize: S });
    receiving = { timeline: listing.receiving.timeline, segno: listing.receiving.segno, ...(scan && scan.records > 0 ? { endLsn: scan.endLsn } : {}) };
  }
  const window = recoverableWindow({ ...input, segmentFacts: facts, receiving });
  const newest = [listing.receiving, listing.segments.at(-1)].filter((x): x is ArchivedSegment => x !== undefined);
  const mtimes = await Promise.all(newest.map((x) => stat(x.path).then((st) => st.mtimeMs, () => undefined)));
  const newestWalAtMs = mtimes.reduce<number | undefined>((a, m) => (m === undefined ? a : Math.max(a ?? 0, m)), undefined);
  return { listing, window, damaged: check.damaged, receiver: await receiverLock(o.root, o.systemId, storage), newestWalAtMs };
}

/** Every system archived under root, each with its window. */
export async function windowReports(root: string, backups: readonly ManifestLike[] = [], storage: Storage = posixStorage): Promise<WindowReport[]> {
  const out: WindowReport[] = [];
  for (const systemId of await listArchivedSystems(root, storage)) out.push(await windowReport({ root, systemId, backups, storage }));
  return out;
}


/** Lines for `pgbacula info`: the window, every gap with its segment names, what cannot be used. */
export function describeWindowReport(r: WindowReport, now = Date.now()): string[] {
  const w = r.window;
  const lines: string[] = [];
  const lineage = w.lineage.length > 1 ? ` (history ${w.lineage.map((s) => hex8(s.timeline)).join(' → ')}, switched at ${w.lineage.slice(1).map((s) => formatLsn(s.begin)).join(', ')})` : '';
  lines.push(`WAL archive of system ${w.systemId} in ${r.listing.dir}: ${w.archived.count} segment(s)${w.archived.first ? ` ${w.archived.first}..${w.archived.last}` : ''}, timeline ${hex8(w.timeline)}${lineage}`);
  if (w.earliest && w.latest) {
    lines.push(`  earliest restorable point: ${w.earliest.time ?? '(time unknown)'} at ${formatLsn(w.earliest.lsn)} (end of backup ${w.earliest.backupId})`);
    const last = w.latest.time === undefined ? 'no commit archived after the backup' : `last commit ${w.latest.time}; a time target must lie before it`;
    lines.push(`  latest restorable point:   WAL to ${formatLsn(w.latest.lsn)}${w.latest.segment ? ` (segment ${w.latest.segment})` : ''}, ${last}`);
  } else {
    lines.push('  no base backup on this history: nothing can be restored from this WAL alone');
  }
  for (const g of w.gaps) {
    const names = g.count === 1 ? '' : `: ${g.names.join(', ')}${g.namesTruncated ? ', …' : ''}`;
    lines.push(`  WAL GAP: ${describeGap(g)} missing (${formatLsn(g.startLsn)}..${formatLsn(g.endLsn)})${names}`);
  }
  for (const d of r.damaged) lines.push(`  WAL DAMAGED: ${d.name} (${d.path}): ${d.problem}`);
  for (const range of w.ranges) {
    if (range.endsAtGap) lines.push(`  restores from backup ${range.backupId} stop at ${formatLsn(range.to.lsn)}: ${range.endsAtGap} is missing`);
    if (range.endsAtDamage) lines.push(`  restores from backup ${range.backupId} stop at ${formatLsn(range.to.lsn)}: ${range.endsAtDamage.segment} is damaged`);
  }
  if (w.receiving) lines.push(`  being received: ${w.receiving.segment}.partial${w.receiving.endLsn ? ` up to ${formatLsn(w.receiving.endLsn)}` : ''} (a restore to the end of WAL replays it)`);
  if (r.receiver) lines.push(`  receiver: wal-receive process ${r.receiver.pid} ${r.receiver.alive ? 'running' : 'NOT RUNNING (its lock is stale: WAL is not being received)'}`);
  if (r.newestWalAtMs !== undefined) lines.push(`  newest WAL written ${Math.max(0, Math.round((now - r.newestWalAtMs) / 1000))} s ago`);
  if (w.missingHistories.length) lines.push(`  unusable: WAL of timeline(s) ${w.missingHistories.map(hex8).join(', ')} without a history file`);
  if (w.offLineage.segments || w.offLineage.backups.length) {
    lines.push(`  not on this history: ${w.offLineage.segments} segment(s)${w.offLineage.backups.length ? `, backup(s) ${w.offLineage.backups.join(', ')}` : ''}`);
  }
  for (const p of r.listing.problems) lines.push(`  problem: ${p}`);
  return lines;
}
