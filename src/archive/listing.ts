/** What an archive holds, from its directory listing. */
import { join } from 'node:path';
import { hex8, parseWalFileName, segmentNumberOfName } from '../wal/segment.js';
import { parseTimelineHistory, type TimelineHistoryEntry } from '../wal/timeline-history.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { readArchiveMeta, type ArchiveMeta } from './archive-meta.js';
import { ioError, isNotFound } from './archive-io.js';
import { summarizedSegmentName } from './segment-summary.js';
import { ARCHIVE_META_FILE, ASIDE_DIR, RECEIVE_DIR, systemDir } from './layout.js';

/** System identifiers that have a directory under root (sorted). */
export async function listArchivedSystems(root: string, storage: Storage = posixStorage): Promise<string[]> {
  let names: string[];
  try {
    names = await storage.list(root);
  } catch (e) {
    if (isNotFound(e)) return [];
    throw ioError(e, `cannot list the WAL archive ${root}`);
  }
  return names.filter((n) => /^[1-9]\d{0,19}$/.test(n)).sort();
}

export interface ArchivedSegment {
  /** File name as stored (with `.partial` for partials). */
  readonly name: string;
  /** The 24-digit segment name. */
  readonly segmentName: string;
  readonly timeline: number;
  readonly segno: bigint;
  readonly path: string;
}

export interface ArchivedHistory {
  readonly timeline: number;
  readonly name: string;
  readonly path: string;
  /** Undefined when the file does not parse (reported in `problems`). */
  readonly entries: TimelineHistoryEntry[] | undefined;
}

export interface WalArchiveListing {
  readonly root: string;
  readonly systemId: string;
  readonly dir: string;
  readonly meta: ArchiveMeta | undefined;
  /** From archive.json (16 MiB when nothing but history files is archived yet). */
  readonly segmentSize: number;
  /** Complete segments, sorted by segment number then timeline. */
  readonly segments: ArchivedSegment[];
  /** `.partial` files in the timeline directories (sorted like segments). */
  readonly partials: ArchivedSegment[];
  readonly histories: ArchivedHistory[];
  readonly backupHistoryFiles: string[];
  readonly aside: string[];
  /** wal-receive's open segment (`.receive/<name>.partial`), the newest WAL received. */
  readonly receiving: ArchivedSegment | undefined;
  /** Complete segments still in `.receive/` (a receiver stopped between completing and publishing). */
  readonly receivedUnpublished: ArchivedSegment[];
  readonly problems: string[];
}

const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

function bySegment(a: ArchivedSegment, b: ArchivedSegment): number {
  return a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : a.timeline - b.timeline;
}

/** Everything archived for one system, from the directory listing (no file is read but history files). */
export async function listWalArchive(root: string, systemId: string, storage: Storage = posixStorage): Promise<WalArchiveListing> {
  const dir = systemDir(root, systemId);
  const meta = await readArchiveMeta(root, systemId, storage);
  const segSize = meta?.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;
  const segments: ArchivedSegment[] = [];
  const partials: ArchivedSegment[] = [];
  const histories: ArchivedHistory[] = [];
  const backupHistoryFiles: string[] = [];
  const receivedUnpublished: ArchivedSegment[] = [];
  const problems: string[] = [];
  let receiving: ArchivedSegment | undefined;
  let aside: string[] = [];
  let top: string[];
  try {
    top = await storage.list(dir);
  } catch (e) {
    if (isNotFound(e)) top = [];
    else throw ioError(e, `cannot list ${dir}`);
  }
  const segmentOf = (name: string, path: string): ArchivedSegment | undefined => {
    const p = parseWalFileName(name, segSize);
    if (!p || (p.kind !== 'segment' && p.kind !== 'partial')) return undefined;
    return { name, segmentName: p.segmentName, timeline: p.timeline, segno: segmentNumberOfName(p, segSize), path };
  };
  for (const name of top.sort()) {
    const path = join(dir, name);
    if (name === ARCHIVE_META_FILE || name.includes('.tmp-')) continue;
    if (name === ASIDE_DIR) {
      aside = (await storage.list(path).catch(() => [] as string[])).filter((n) => !n.includes('.tmp-')).sort();
      continue;
    }
    if (name === RECEIVE_DIR) {
      for (const r of (await storage.list(path).catch(() => [] as string[])).sort()) {
        const s = segmentOf(r, join(path, r));
        if (!s) continue;
        if (r.endsWith('.partial')) {
          if (!receiving || bySegment(s, receiving) > 0) receiving = s;
        } else receivedUnpublished.push(s);
      }
      continue;
    }
    const p = parseWalFileName(name);
    if (p?.kind === 'history') {
      let entries: TimelineHistoryEntry[] | undefined;
      try {
        entries = parseTimelineHistory(await storage.readFile(path), p.timeline);
      } catch (e) {
        problems.push(`${name}: ${(e as Error).message}`);
      }
      histories.push({ timeline: p.timeline, name, path, entries });
      continue;
    }
    if (/^[0-9A-F]{8}$/.test(name) && name !== '00000000') {
      const tli = parseInt(name, 16);
      for (const f of (await storage.list(path).catch(() => [] as string[])).sort()) {
        if (f.startsWith('.')) continue; // temporary files
        if (summarizedSegmentName(f) !== undefined) continue; // a segment's block summary (segment-summary.ts), not WAL
        const fp = join(path, f);
        const q = parseWalFileName(f, segSize);
        if (q?.kind === 'backup') {
          backupHistoryFiles.push(f);
          continue;
        }
        const s = segmentOf(f, fp);
        if (!s) {
          problems.push(`${name}/${f}: not a WAL file name for ${segSize}-byte segments`);
          continue;
        }
        if (s.timeline !== tli) {
          problems.push(`${name}/${f}: a file of timeline ${hex8(s.timeline)} in the directory of timeline ${name}`);
          continue;
        }
        (f.endsWith('.partial') ? partials : segments).push(s);
      }
      continue;
    }
    problems.push(`${name}: unexpected entry`);
  }
  segments.sort(bySegment);
  partials.sort(bySegment);
  histories.sort((a, b) => a.timeline - b.timeline);
  return { root, systemId, dir, meta, segmentSize: segSize, segments, partials, histories, backupHistoryFiles, aside, receiving, receivedUnpublished, problems };
}
