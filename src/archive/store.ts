/**
 * Storing one file in the archive: written to a temporary name in its final directory, fsynced,
 * hard-linked under its final name (link(2) never replaces an existing file, so two writers
 * cannot overwrite each other), and the directory fsynced (Storage.publishIfAbsent). An identical copy already there is
 * success; different bytes are refused, or kept aside for `.partial` and `.backup` files.
 */
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import type { Storage } from '../storage/storage.js';
import { ensureDir, FILE_MODE, ioError, readIfExists } from './archive-io.js';
import { ASIDE_DIR, systemDir } from './layout.js';

export type StoreOutcome =
  | { readonly status: 'stored'; readonly path: string }
  | { readonly status: 'identical'; readonly path: string }
  | { readonly status: 'kept-aside'; readonly path: string; readonly existing: string };

/**
 * Publish `bytes` under dest, never replacing it. When dest exists: identical → fsync it again
 * (an earlier run may have died before its directory fsync) and report 'identical'; different →
 * WAL_CONFLICT ('refuse') or a copy under ASIDE_DIR ('aside').
 */
export async function storeBytes(storage: Storage, root: string, systemId: string, dest: string, bytes: Buffer, policy: 'refuse' | 'aside', from: string): Promise<StoreOutcome> {
  const dir = dirname(dest);
  const existing = await readIfExists(storage, dest);
  if (existing !== undefined) return resolveExisting(storage, root, systemId, dest, existing, bytes, policy, from);
  await ensureDir(storage, dir);
  try {
    if (await storage.publishIfAbsent(dest, bytes, { mode: FILE_MODE })) return { status: 'stored', path: dest };
    // Another writer (wal-receive, a concurrent push) got there first.
    const other = await storage.readFile(dest);
    return await resolveExisting(storage, root, systemId, dest, other, bytes, policy, from);
  } catch (e) {
    if (e instanceof PgbaculaError) throw e;
    throw ioError(e, `cannot store ${basename(dest)} in ${dir}`);
  }
}

async function resolveExisting(storage: Storage, root: string, systemId: string, dest: string, existing: Buffer, bytes: Buffer, policy: 'refuse' | 'aside', from: string): Promise<StoreOutcome> {
  if (existing.equals(bytes)) {
    try {
      await storage.syncFile(dest);
      await storage.syncDir(dirname(dest));
    } catch (e) {
      throw ioError(e, `cannot fsync ${dest}`);
    }
    return { status: 'identical', path: dest };
  }
  const name = basename(dest);
  if (policy === 'refuse') {
    throw new PgbaculaError('WAL_CONFLICT', `${name} is already archived in ${dirname(dest)} with different content (${existing.length} bytes, sha256 ${sha16(existing)}; offered: ${bytes.length} bytes, sha256 ${sha16(bytes)}, from ${from})`, {
      hint: name.endsWith('.history')
        ? 'Two different histories claim this timeline: another server (a restored copy?) archives into the same place. Give each cluster its own archive; never delete archived history files.'
        : 'Another server with the same system identifier (a restored copy, an old primary after a failover?) archives into the same place, or the archived copy is damaged. The archived file was kept; give that server its own archive, and compare both copies (pg_waldump) before removing either.',
    });
  }
  const asideDir = join(systemDir(root, systemId), ASIDE_DIR);
  const asidePath = join(asideDir, `${name}.${sha16(bytes)}`);
  const kept = await storeBytes(storage, root, systemId, asidePath, bytes, 'refuse', from);
  return { status: 'kept-aside', path: kept.path, existing: dest };
}

function sha16(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 16);
}
