/** Timeline history files in the archive: archived before any WAL of their timeline. */
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { hex8, timelineHistoryFileName } from '../wal/segment.js';
import { parseTimelineHistory } from '../wal/timeline-history.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { ensureArchive } from './archive-meta.js';
import { exists, readIfExists } from './archive-io.js';
import { systemDir } from './layout.js';
import { storeBytes, type StoreOutcome } from './store.js';

/**
 * The history file of `timeline` must be archived before WAL of that timeline. When it is
 * missing, take it (and missing ancestors) from the data directory's pg_wal, where the server
 * keeps history files forever; refuse when it is not there either.
 */
export async function ensureHistoryArchived(storage: Storage, root: string, systemId: string, timeline: number, pgdata: string | undefined, forFile: string): Promise<string[]> {
  const name = timelineHistoryFileName(timeline);
  const dest = join(systemDir(root, systemId), name);
  if (await exists(storage, dest)) return [];
  const fromPgWal = pgdata === undefined ? undefined : await readIfExists(storage, join(pgdata, 'pg_wal', name));
  if (fromPgWal === undefined) {
    throw new PgbaculaError('WAL_GAP', `${forFile} of timeline ${hex8(timeline)} refused: ${name} is not archived in ${systemDir(root, systemId)}`, {
      hint: `Archive ${name} first (PostgreSQL does so when archive_command is set before the promotion): wal-push pg_wal/${name}, then retry. Recovery to timeline ${hex8(timeline)} is impossible without it.`,
    });
  }
  const entries = parseTimelineHistory(fromPgWal, timeline);
  const archived: string[] = [];
  // Ancestors first, when the data directory still has them (it keeps every history file).
  for (const e of entries) {
    if (e.parentTimeline < 2) continue;
    const an = timelineHistoryFileName(e.parentTimeline);
    const ap = join(systemDir(root, systemId), an);
    if (await exists(storage, ap)) continue;
    const content = await readIfExists(storage, join(pgdata!, 'pg_wal', an));
    if (content === undefined) continue;
    parseTimelineHistory(content, e.parentTimeline);
    await storeBytes(storage, root, systemId, ap, content, 'refuse', join(pgdata!, 'pg_wal', an));
    archived.push(an);
  }
  await storeBytes(storage, root, systemId, dest, fromPgWal, 'refuse', join(pgdata!, 'pg_wal', name));
  archived.push(name);
  return archived;
}

/** Store a history file fetched from the server (wal-receive); identical copies are fine. */
export async function storeHistoryFile(root: string, systemId: string, timeline: number, content: Uint8Array, from: string, storage: Storage = posixStorage): Promise<StoreOutcome> {
  parseTimelineHistory(content, timeline);
  await ensureArchive(root, systemId, storage);
  const dest = join(systemDir(root, systemId), timelineHistoryFileName(timeline));
  return storeBytes(storage, root, systemId, dest, Buffer.from(content.buffer, content.byteOffset, content.byteLength), 'refuse', from);
}

export async function isHistoryArchived(root: string, systemId: string, timeline: number, storage: Storage = posixStorage): Promise<boolean> {
  return exists(storage, join(systemDir(root, systemId), timelineHistoryFileName(timeline)));
}
