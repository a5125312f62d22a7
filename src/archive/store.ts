/**
 * Storing one file in the archive: written to a temporary name in its final directory, fsynced,
 * hard-linked under its final name (link(2) never replaces an existing file, so two writers
 * cannot overwrite each other), and the directory fsynced. An identical copy already there is
 * success; different bytes are refused, or kept aside for `.partial` and `.backup` files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { ensureDir, FILE_MODE, fsyncDir, ioError, isLinkUnsupported, readIfExists } from './archive-io.js';
import { ASIDE_DIR, systemDir } from './layout.js';

export type StoreOutcome =
  | { readonly status: 'stored'; readonly path: string }
  | { readonly status: 'identical'; readonly path: string }
  | { readonly status: 'kept-aside'; readonly path: string; readonly existing: string };

/**
 * temp + fsync + link (no replace) + fsync dir. When dest exists: identical → fsync it again
 * (an earlier run may have died before its directory fsync) and report 'identical'; different →
 * WAL_CONFLICT ('refuse') or a copy under ASIDE_DIR ('aside').
 */
export async function storeBytes(root: string, systemId: string, dest: string, bytes: Buffer, policy: 'refuse' | 'aside', from: string): Promise<StoreOutcome> {
  const dir = dirname(dest);
  const existing = await readIfExists(dest);
  if (existing !== undefined) return resolveExisting(root, systemId, dest, existing, bytes, policy, from);
  await ensureDir(dir);
  const tmp = join(dir, `.${basename(dest)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', FILE_MODE);
    try {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, done);
        done += bytesWritten;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    let linked = true;
    try {
      await link(tmp, dest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        // Another writer (wal-receive, a concurrent push) got there first.
        const other = await readFile(dest);
        return await resolveExisting(root, systemId, dest, other, bytes, policy, from);
      }
      if (!isLinkUnsupported(e)) throw e;
      linked = false;
      await rename(tmp, dest); // file systems without hard links: the existence check above must do
    }
    if (linked) await unlink(tmp);
    await fsyncDir(dir);
    return { status: 'stored', path: dest };
  } catch (e) {
    if (e instanceof PgbaculaError) throw e;
    throw ioError(e, `cannot store ${basename(dest)} in ${dir}`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function resolveExisting(root: string, systemId: string, dest: string, existing: Buffer, bytes: Buffer, policy: 'refuse' | 'aside', from: string): Promise<StoreOutcome> {
  if (existing.equals(bytes)) {
    try {
      const fh = await open(dest, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsyncDir(dirname(dest));
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
  const kept = await storeBytes(root, systemId, asidePath, bytes, 'refuse', from);
  return { status: 'kept-aside', path: kept.path, existing: dest };
}

function sha16(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 16);
}
