/**
 * When a `.partial` may stand in for its segment: a restore to the end of WAL (docs/wal-archive.md,
 * "wal-fetch and exit 200") replays the receiver's open segment only when it is the end of the
 * WAL there is. A `.partial` is never served when a complete copy exists (wal-fetch reads the
 * complete name first), nor when anything newer exists:
 * - a later segment of its timeline (complete or partial, in the archive, in `.receive/`, or in a
 *   restore's staged WAL): then the partial is an old copy and the WAL goes on elsewhere;
 * - a newer timeline (its history file, or a timeline directory above it): the partial is the
 *   last segment of a timeline that was left at a promotion, and recovery must follow the new
 *   timeline instead of ending on the old one.
 */
import { join } from 'node:path';
import type { Storage } from '../storage/storage.js';
import { receiveDir, systemDir } from './layout.js';

const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{16})(?:\.partial)?$/;
const HISTORY_NAME = /^([0-9A-F]{8})\.history$/;
const TIMELINE_DIR = /^[0-9A-F]{8}$/;

export interface EndOfWalSources {
  readonly root: string;
  readonly systemId: string;
  readonly stagedDir?: string | undefined;
  /** There is no archive: only stagedDir counts. */
  readonly stagedOnly?: boolean | undefined;
}

async function names(storage: Storage, dir: string): Promise<string[]> {
  return storage.list(dir).catch(() => [] as string[]);
}

/** Is `segment` (its timeline and number, as the name the server asks for) at the end of every WAL source? */
export async function isEndOfWal(storage: Storage, segment: { readonly name: string; readonly timeline: number }, src: EndOfWalSources): Promise<boolean> {
  const ours = segment.name.slice(8, 24);
  const newerSegmentIn = (list: readonly string[], timelineMatters: boolean): boolean =>
    list.some((n) => {
      const m = SEGMENT_NAME.exec(n);
      if (!m) return false;
      const tli = parseInt(m[1]!, 16);
      return tli > segment.timeline || ((!timelineMatters || tli === segment.timeline) && m[2]! > ours);
    });
  const newerHistoryIn = (list: readonly string[]): boolean => list.some((n) => HISTORY_NAME.test(n) && parseInt(n.slice(0, 8), 16) > segment.timeline);

  if (src.stagedDir !== undefined) {
    const staged = await names(storage, src.stagedDir);
    // The backup's own WAL ends at its stop point: a later segment there means the partial is older.
    if (newerSegmentIn(staged, false) || newerHistoryIn(staged)) return false;
  }
  if (src.stagedOnly) return true;
  const sys = systemDir(src.root, src.systemId);
  const top = await names(storage, sys);
  if (newerHistoryIn(top)) return false;
  for (const d of top.filter((n) => TIMELINE_DIR.test(n))) {
    const tli = parseInt(d, 16);
    if (tli < segment.timeline) continue;
    const list = await names(storage, join(sys, d));
    if (tli > segment.timeline ? list.some((n) => SEGMENT_NAME.test(n)) : newerSegmentIn(list, true)) return false;
  }
  return !newerSegmentIn(await names(storage, receiveDir(src.root, src.systemId)), false);
}
