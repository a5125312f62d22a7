/**
 * Reading an archive (or a backup's own WAL) from disk and judging every segment with
 * src/wal/integrity.ts: each one alone, and each seam between a segment and the one recovery
 * reads after it (same timeline, or the timeline that branched off after it). Used by
 * `verify --repo`, `info` and the restore's pre-check (through window-report.ts).
 */
import { join, relative } from 'node:path';
import { decodeFrame } from '../format/lz4-frame.js';
import type { BackupManifest } from '../format/backup-manifest.js';
import { loadKernels } from '../format/kernels.js';
import { storedFilePath } from '../repo/layout.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import type { SegmentScan } from '../wal/record-scan.js';
import { judgeSegment, judgeSegmentJoin } from '../wal/integrity.js';
import { hex8, parseWalSegmentName, walSegmentStart } from '../wal/segment.js';
import { listArchivedSystems, listWalArchive, type ArchivedSegment, type WalArchiveListing } from './listing.js';
import { timelineSpans } from '../wal/timeline-history.js';
import { timelineOfSegment } from './window.js';

export interface DamagedSegment {
  /** File name as stored (24 digits, `.partial` for a partial). */
  readonly name: string;
  readonly path: string;
  readonly timeline: number;
  readonly segno: bigint;
  readonly problem: string;
}

export interface WalArchiveCheck {
  readonly listing: WalArchiveListing;
  /** Segments read and judged (complete and partial). */
  readonly checked: number;
  /** Seams between consecutive segments judged. */
  readonly seams: number;
  readonly damaged: DamagedSegment[];
}

interface Judged {
  readonly seg: ArchivedSegment;
  readonly bytes: Uint8Array;
  readonly scan: SegmentScan;
  readonly sound: boolean;
}

/**
 * Every segment of one system's archive, and every seam recovery would cross; `fromSegno`: only
 * segments from there on (what a restore from a backup that starts there can read); `toSegno`:
 * only up to there (what a restore to a point in it reads).
 */
export async function checkWalArchive(root: string, systemId: string, listing?: WalArchiveListing, fromSegno = 0n, storage: Storage = posixStorage, toSegno?: bigint): Promise<WalArchiveCheck> {
  const all = listing ?? (await listWalArchive(root, systemId, storage));
  const within = (s: { segno: bigint }) => s.segno >= fromSegno && (toSegno === undefined || s.segno <= toSegno);
  const l = fromSegno === 0n && toSegno === undefined ? all : { ...all, segments: all.segments.filter(within), partials: all.partials.filter(within) };
  const S = l.segmentSize;
  const spans = new Map<number, ReturnType<typeof timelineSpans>>();
  for (const h of l.histories) if (h.entries) spans.set(h.timeline, timelineSpans(h.entries, h.timeline));
  const present = new Set(l.segments.map((s) => `${s.timeline}:${s.segno}`));
  const timelines = [...new Set(l.segments.map((s) => s.timeline))].sort((a, b) => a - b);
  /** The timeline recovery reads segno+1 from after reading segno from tli. */
  const successorTli = (tli: number, segno: bigint): number | undefined => {
    if (present.has(`${tli}:${segno + 1n}`)) return tli;
    for (const t of timelines) {
      if (t <= tli || !present.has(`${t}:${segno + 1n}`)) continue;
      const sp = spans.get(t);
      if (sp && timelineOfSegment(sp, segno, S) === tli) return t;
    }
    return undefined;
  };

  const damaged: DamagedSegment[] = [];
  let seams = 0;
  let previous: Judged[] = [];
  let previousSegno: bigint | undefined;
  let current: Judged[] = [];
  let lastSegno: bigint | undefined;
  for (const seg of l.segments) {
    if (lastSegno !== seg.segno) {
      if (lastSegno !== undefined) {
        previous = current;
        previousSegno = lastSegno;
      }
      current = [];
      lastSegno = seg.segno;
    }
    const segmentStart = walSegmentStart(seg.segno, S);
    const bytes = await readOrReport(storage, seg, damaged);
    if (!bytes) continue;
    const v = judgeSegment(bytes, { segmentStart, segmentSize: S });
    if (!v.sound) damaged.push({ ...pick(seg), problem: v.problem! });
    const judged: Judged = { seg, bytes, scan: v.scan, sound: v.sound };
    current.push(judged);
    if (v.sound && previousSegno === seg.segno - 1n) {
      for (const p of previous) {
        if (!p.sound || successorTli(p.seg.timeline, p.seg.segno) !== seg.timeline) continue;
        seams++;
        const problem = judgeSegmentJoin(
          { bytes: p.bytes, scan: p.scan, segmentStart: walSegmentStart(p.seg.segno, S) },
          { bytes, scan: v.scan, segmentStart },
          S,
        );
        if (problem) damaged.push({ ...pick(seg), problem: `after ${p.seg.name}: ${problem}` });
      }
    }
  }
  for (const seg of l.partials) {
    const bytes = await readOrReport(storage, seg, damaged);
    if (!bytes) continue;
    const v = judgeSegment(bytes, { segmentStart: walSegmentStart(seg.segno, S), segmentSize: S, partial: true });
    if (!v.sound) damaged.push({ ...pick(seg), problem: v.problem! });
  }
  return { listing: all, checked: l.segments.length + l.partials.length, seams, damaged };
}

/** The segment's bytes, or undefined after recording that it cannot be read (itself a finding). */
async function readOrReport(storage: Storage, seg: ArchivedSegment, damaged: DamagedSegment[]): Promise<Uint8Array | undefined> {
  try {
    return await storage.readFile(seg.path);
  } catch (e) {
    damaged.push({ ...pick(seg), problem: `it cannot be read: ${(e as Error).message}` });
    return undefined;
  }
}

function pick(s: ArchivedSegment): Omit<DamagedSegment, 'problem'> {
  return { name: s.name, path: s.path, timeline: s.timeline, segno: s.segno };
}

/** The WAL a backup carries (start to stop; the last segment ends at the stop point). */
export async function checkBackupWal(repo: string, m: BackupManifest, storage: Storage = posixStorage): Promise<DamagedSegment[]> {
  const S = m.walSegmentSize;
  const names = [...m.walSegments].sort();
  const damaged: DamagedSegment[] = [];
  let prev: { bytes: Uint8Array; scan: SegmentScan; segmentStart: bigint; segno: bigint; sound: boolean; timeline: number } | undefined;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const f = m.files.find((x) => x.path === `wal/${name}`);
    const encoding = f?.stored ?? 'raw';
    const path = storedFilePath(repo, m.backupId, `wal/${name}`, encoding);
    const { timeline, segno } = parseWalSegmentName(name, S);
    const at = { name, path, timeline, segno };
    let bytes: Uint8Array;
    try {
      const stored = await storage.readFile(path);
      bytes = encoding === 'lz4' ? decodeFrame(stored, loadKernels()) : stored;
    } catch (e) {
      damaged.push({ ...at, problem: `it cannot be read: ${(e as Error).message}` });
      prev = undefined;
      continue;
    }
    const segmentStart = walSegmentStart(segno, S);
    const v = judgeSegment(bytes, { segmentStart, segmentSize: S, partial: i === names.length - 1 });
    if (!v.sound) damaged.push({ ...at, problem: v.problem! });
    if (v.sound && prev?.sound && prev.segno === segno - 1n && i < names.length - 1) {
      const problem = judgeSegmentJoin(prev, { bytes, scan: v.scan, segmentStart }, S);
      if (problem) damaged.push({ ...at, problem: `after ${names[i - 1]}: ${problem}` });
    }
    prev = { bytes, scan: v.scan, segmentStart, segno, sound: v.sound, timeline };
  }
  return damaged;
}


export interface RepositoryWalVerification {
  /** Lines for `verify --repo` (empty when there is no WAL to check). */
  readonly lines: string[];
  /** Every finding, `<where>: <what>`; non-empty = the repository's WAL is damaged. */
  readonly problems: string[];
  readonly archives: { readonly systemId: string; readonly segments: number; readonly seams: number; readonly damaged: Finding[]; readonly problems: string[] }[];
  readonly backups: { readonly backupId: string; readonly segments: number; readonly damaged: Finding[] }[];
}

/** A damaged file as plain JSON. */
export interface Finding {
  readonly name: string;
  readonly path: string;
  readonly problem: string;
}

const finding = (d: DamagedSegment): Finding => ({ name: d.name, path: d.path, problem: d.problem });

/**
 * `verify --repo`: the repository's WAL archive (every segment, every seam, the history files)
 * and the WAL each backup carries. A repository with damaged WAL does not restore what it
 * promises even when every hash matches (a hash proves only that the bytes are the ones stored).
 */
export async function verifyRepositoryWal(repo: string, backups: readonly BackupManifest[], storage: Storage = posixStorage): Promise<RepositoryWalVerification> {
  const root = join(repo, 'wal');
  const lines: string[] = [];
  const problems: string[] = [];
  const archives: RepositoryWalVerification['archives'][number][] = [];
  for (const systemId of await listArchivedSystems(root, storage)) {
    const c = await checkWalArchive(root, systemId, undefined, 0n, storage);
    const p = c.listing.problems.map((x) => `wal/${systemId}/${x}`);
    // Recovery follows a timeline only through its history file (recovery_target_timeline = latest).
    const histories = new Set(c.listing.histories.filter((h) => h.entries).map((h) => h.timeline));
    for (const tli of new Set([...c.listing.segments, ...c.listing.partials].map((s) => s.timeline))) {
      if (tli > 1 && !histories.has(tli)) p.push(`wal/${systemId}/${hex8(tli)}: WAL of timeline ${hex8(tli)} without a readable ${hex8(tli)}.history: recovery cannot follow it`);
    }
    archives.push({ systemId, segments: c.checked, seams: c.seams, damaged: c.damaged.map(finding), problems: p });
    const bad = c.damaged.map((d) => `${relative(repo, d.path)}: DAMAGED: ${d.problem}`);
    problems.push(...bad, ...p);
    lines.push(`WAL archive of system ${systemId}: ${bad.length + p.length === 0 ? 'OK' : 'DAMAGED'} — ${c.checked} segment(s) read record by record, ${c.seams} seam(s) between segments${[...bad, ...p].map((x) => `\n  ${x}`).join('')}`);
  }
  const out: RepositoryWalVerification['backups'][number][] = [];
  for (const m of backups) {
    const damaged = await checkBackupWal(repo, m, storage);
    out.push({ backupId: m.backupId, segments: m.walSegments.length, damaged: damaged.map(finding) });
    const bad = damaged.map((d) => `backup ${m.backupId}: wal/${d.name}: DAMAGED: ${d.problem}`);
    problems.push(...bad);
    lines.push(`${m.backupId} WAL: ${bad.length === 0 ? 'OK' : 'DAMAGED'} — ${m.walSegments.length} segment(s) read record by record${bad.map((x) => `\n  ${x}`).join('')}`);
  }
  return { lines, problems, archives, backups: out };
}
