/** Moving a segment wal-receive completed into the archive (link, never replacing). */
import { basename, dirname } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { majorOfXlogPageMagic } from '../wal/page-header.js';
import { hex8, segmentNumberOfName, timelineHistoryFileName } from '../wal/segment.js';
import { ensureArchive, writeArchiveMeta } from './archive-meta.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { ensureDir, ioError } from './archive-io.js';
import { isHistoryArchived } from './history-files.js';
import { archivedPath, parseArchivableName } from './layout.js';
import { summarizeStoredSegment, warnOnStderr } from './segment-summary.js';
import { storeBytes, type StoreOutcome } from './store.js';

/**
 * Move a segment file that wal-receive completed (fsynced, in RECEIVE_DIR on the same file
 * system) into the archive without copying: link under the final name (never replacing), then
 * remove the source. A `.partial` name goes to its timeline directory, kept aside on conflict.
 */
export async function publishReceivedFile(root: string, systemId: string, sourcePath: string, meta: { segmentSize: number; magic: number }, storage: Storage = posixStorage, warn: (text: string) => void = warnOnStderr): Promise<StoreOutcome> {
  const outcome = await publish(root, systemId, sourcePath, meta, storage);
  const parsed = parseArchivableName(basename(sourcePath), meta.segmentSize);
  if (parsed.kind === 'segment') {
    // After the segment is durably stored: a summary is an optimization, never a reason to fail.
    const segno = segmentNumberOfName(parsed, meta.segmentSize);
    await summarizeStoredSegment({ storage, root, systemId, timeline: parsed.timeline, segno, segmentSize: meta.segmentSize, warn });
  }
  return outcome;
}

async function publish(root: string, systemId: string, sourcePath: string, meta: { segmentSize: number; magic: number }, storage: Storage): Promise<StoreOutcome> {
  const name = basename(sourcePath);
  const parsed = parseArchivableName(name, meta.segmentSize);
  if (parsed.kind !== 'segment' && parsed.kind !== 'partial') throw new PgbaculaError('INTERNAL', `publishReceivedFile: ${name} is not a segment`);
  const m = await ensureArchive(root, systemId, storage);
  if (m.walSegmentSize === undefined || m.xlogPageMagic === undefined) {
    const major = majorOfXlogPageMagic(meta.magic);
    await writeArchiveMeta(root, { ...m, walSegmentSize: meta.segmentSize, xlogPageMagic: meta.magic, ...(major === undefined ? {} : { pgMajor: major }) }, storage);
  } else if (m.walSegmentSize !== meta.segmentSize || m.xlogPageMagic !== meta.magic) {
    throw new PgbaculaError('WAL_CONFLICT', `the archive of system ${systemId} in ${root} holds WAL of another segment size or major than the server streams`, {
      hint: 'After a major upgrade archive into a new directory and take a new base backup.',
    });
  }
  if (parsed.timeline > 1 && !(await isHistoryArchived(root, systemId, parsed.timeline, storage))) {
    throw new PgbaculaError('WAL_GAP', `${name} of timeline ${hex8(parsed.timeline)} refused: ${timelineHistoryFileName(parsed.timeline)} is not archived`, {
      hint: 'The history file is fetched from the server before streaming a timeline; check the log for why it failed.',
    });
  }
  const dest = archivedPath(root, systemId, parsed);
  await ensureDir(storage, dirname(dest));
  try {
    if ((await storage.publishFileIfAbsent(sourcePath, dest)) === 'published') {
      await storage.removeFile(sourcePath);
      await storage.syncDir(dirname(sourcePath));
      return { status: 'stored', path: dest };
    }
    // The name is taken (compared below), or no hard links on this file system: copy through the ordinary path.
  } catch (e) {
    throw ioError(e, `cannot link ${sourcePath} to ${dest}`);
  }
  const bytes = await storage.readFile(sourcePath);
  const outcome = await storeBytes(storage, root, systemId, dest, bytes, parsed.kind === 'segment' ? 'refuse' : 'aside', sourcePath);
  await storage.removeFile(sourcePath);
  await storage.syncDir(dirname(sourcePath));
  return outcome;
}
