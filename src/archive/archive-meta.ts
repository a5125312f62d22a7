/** archive.json: what one system's archive holds (system, segment size, major). */
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { ensureDir, FILE_MODE, ioError, isNotFound } from './archive-io.js';
import { ARCHIVE_FORMAT, ARCHIVE_META_FILE, systemDir } from './layout.js';

export interface ArchiveMeta {
  readonly format: number;
  readonly systemIdentifier: string;
  /** Learned from the first segment stored (absent while only history files are there). */
  readonly walSegmentSize?: number;
  readonly xlogPageMagic?: number;
  readonly pgMajor?: number;
  readonly created: string;
}

export async function readArchiveMeta(root: string, systemId: string, storage: Storage = posixStorage): Promise<ArchiveMeta | undefined> {
  const path = join(systemDir(root, systemId), ARCHIVE_META_FILE);
  let text: string;
  try {
    text = (await storage.readFile(path)).toString('utf8');
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw ioError(e, `cannot read ${path}`);
  }
  let meta: ArchiveMeta;
  try {
    meta = JSON.parse(text) as ArchiveMeta;
  } catch {
    throw new PgbaculaError('REPOSITORY', `${path} is not valid JSON`, { hint: 'Restore the file from a copy, or remove it: the next wal-push rewrites it from the WAL it stores.' });
  }
  if (meta.format !== ARCHIVE_FORMAT || meta.systemIdentifier !== systemId) {
    throw new PgbaculaError('REPOSITORY', `${path} describes format ${String(meta.format)} of system ${String(meta.systemIdentifier)}, expected format ${ARCHIVE_FORMAT} of system ${systemId}`, {
      hint: 'The directory was copied or edited by hand; put each system identifier in its own directory.',
    });
  }
  return meta;
}

export async function writeArchiveMeta(root: string, meta: ArchiveMeta, storage: Storage = posixStorage): Promise<void> {
  const path = join(systemDir(root, meta.systemIdentifier), ARCHIVE_META_FILE);
  try {
    await storage.writeFileDurable(path, JSON.stringify(meta, null, 1) + '\n', { mode: FILE_MODE });
  } catch (e) {
    throw ioError(e, `cannot write ${path}`);
  }
}

/** Create ROOT/<sysid> and its archive.json when missing; return the metadata. */
export async function ensureArchive(root: string, systemId: string, storage: Storage = posixStorage): Promise<ArchiveMeta> {
  const existing = await readArchiveMeta(root, systemId, storage);
  if (existing) return existing;
  await ensureDir(storage, systemDir(root, systemId));
  const meta: ArchiveMeta = { format: ARCHIVE_FORMAT, systemIdentifier: systemId, created: new Date().toISOString() };
  await writeArchiveMeta(root, meta, storage);
  return meta;
}
