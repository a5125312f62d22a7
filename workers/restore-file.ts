import { closeSync, constants as fsc, fstatSync, openSync } from 'node:fs';
import { createFileSync, settleSync, writeAllSync } from '../src/os/new-file.js';
import { moveFileSync } from '../src/os/user-files.js';
import { combineRangeHashes } from '../src/format/content-hash.js';
import { loadKernels } from '../src/format/kernels.js';
import { closeTarget, onTarget, TargetDurability, TargetWriteError } from './target-write.js';
import { openContent, RangeHasher, type ContentStream, type StoredRegion } from './stored-content.js';

/**
 * Decode one stored file (raw or an LZ4 frame), check its content hash range by range, and —
 * unless this is a verification only — write it to its place in the restored cluster.
 */
export interface RestoreFileTask {
  readonly storedPath: string;
  /** A file stored in a bundle: where in `storedPath` its bytes are. */
  readonly region?: StoredRegion;
  readonly encoding: 'raw' | 'lz4';
  /** Where to write it; absent = verify only (verify --repo). */
  readonly targetPath?: string;
  readonly size: number;
  readonly expectedHash: string;
  readonly rangeSize: number;
  readonly mode: number;
  readonly mtimeMs: number;
  readonly uid?: number;
  readonly gid?: number;
  /** The backup path, for messages. */
  readonly label: string;
  /**
   * The stored file may be consumed (a staging repository): a raw one is checked, then renamed
   * into place instead of copied — half the I/O. Falls back to a copy across file systems.
   */
  readonly move?: boolean;
  /**
   * Not fsynced here: the restore syncs the target's file systems once its lay-down is done
   * (src/os/file-system-sync.ts); a large file's writeback is started as it is written.
   */
  readonly deferSync?: boolean;
}

export interface RestoreFileResult {
  readonly ok: boolean;
  readonly problem?: string;
  readonly bytes: number;
  /**
   * Set when writing the target failed (e.g. ENOSPC), not the stored file: the backup is fine,
   * the place it is restored to is not — a different message and a different fix.
   */
  readonly targetErrno?: string;
}

/**
 * Many small files in one round trip, in order: a worker hand-off costs more than restoring a
 * file of a few KiB. Consecutive files of one bundle share one open descriptor.
 */
export function restoreBatch(batch: { readonly tasks: readonly RestoreFileTask[] }): RestoreFileResult[] {
  const results: RestoreFileResult[] = [];
  let open: { path: string; fd: number } | undefined;
  try {
    for (const task of batch.tasks) {
      if (!task.region) {
        results.push(restoreFile(task));
        continue;
      }
      if (open?.path !== task.storedPath) {
        if (open) closeSync(open.fd);
        open = undefined;
        try {
          open = { path: task.storedPath, fd: openSync(task.storedPath, fsc.O_RDONLY | fsc.O_NOFOLLOW) };
        } catch (e) {
          results.push({ ok: false, problem: `stored file is missing or unreadable: ${(e as NodeJS.ErrnoException).code ?? e}`, bytes: 0 });
          continue;
        }
      }
      results.push(copyOrCheck(task, open.fd));
    }
  } finally {
    if (open) closeSync(open.fd);
  }
  return results;
}

export function restoreFile(task: RestoreFileTask): RestoreFileResult {
  // A bundled file shares its stored file with others: never moved, always copied out of it.
  if (task.move && task.encoding === 'raw' && task.targetPath && !task.region) {
    // The file checked is the file moved: its descriptor is kept from the check, and what lands at
    // the target must be that same inode (a file swapped in between — for a link — is refused),
    // and owner, mode and times are set on the descriptor, never through a path.
    let input: number;
    try {
      input = openSync(task.storedPath, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch (e) {
      return { ok: false, problem: `stored file is missing or unreadable: ${(e as NodeJS.ErrnoException).code ?? e}`, bytes: 0 };
    }
    try {
      const checked = copyOrCheck({ ...task, targetPath: undefined }, input);
      if (!checked.ok) return checked;
      const was = fstatSync(input);
      try {
        moveFileSync(task.storedPath, task.targetPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EXDEV') return copyOrCheck(task, input);
        return { ok: false, problem: `cannot move it into place: ${(e as Error).message}`, bytes: checked.bytes, targetErrno: (e as NodeJS.ErrnoException).code ?? 'EIO' };
      }
      let placed: number;
      try {
        placed = openSync(task.targetPath, fsc.O_RDONLY | fsc.O_NOFOLLOW);
      } catch (e) {
        return { ok: false, problem: `${task.targetPath} is not the file that was checked (${(e as NodeJS.ErrnoException).code ?? e}): the staging was changed during the restore`, bytes: checked.bytes };
      }
      try {
        const now = fstatSync(placed);
        if (now.ino !== was.ino || now.dev !== was.dev) {
          return { ok: false, problem: `${task.targetPath} is not the file that was checked: the staging was changed during the restore`, bytes: checked.bytes };
        }
        settleSync(placed, task, task.deferSync !== true);
      } catch (e) {
        return { ok: false, problem: `cannot write ${task.targetPath}: ${(e as Error).message}`, bytes: checked.bytes, targetErrno: (e as NodeJS.ErrnoException).code ?? 'EIO' };
      } finally {
        closeSync(placed);
      }
      return checked;
    } finally {
      closeSync(input);
    }
  }
  return copyOrCheck(task);
}

/**
 * `opened`: the stored file already open (read from its start); it is then left open. The content
 * comes as the stored file holds it (read chunks of a raw file, decoded blocks of an LZ4 frame),
 * each chunk hashed into its range and written as it is, from buffers the worker keeps from one
 * file to the next: a restore of a thousand files allocates no memory per file, which on a VM
 * whose fresh pages are slow to touch is most of a restore's system time otherwise.
 */
function copyOrCheck(task: RestoreFileTask, opened?: number): RestoreFileResult {
  const kernels = loadKernels();
  const ranges = new RangeHasher(kernels, task.rangeSize);
  let written = 0;
  let out: number | undefined;
  let input: number;
  try {
    // A stored file is a plain file of the repository: a link in its place is not followed.
    input = opened ?? openSync(task.storedPath, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (e) {
    return { ok: false, problem: `stored file is missing or unreadable: ${(e as NodeJS.ErrnoException).code ?? e}`, bytes: 0 };
  }
  let stream: ContentStream | undefined;
  let complete = false;
  try {
    const target = task.targetPath;
    // O_NOFOLLOW: a symbolic link where the file goes is never written through. Created 0600: it
    // takes the manifest's mode only once its content has checked.
    if (target) out = onTarget(target, () => createFileSync(target, 0o600));
    const durability = out === undefined ? undefined : new TargetDurability(out, task.deferSync, kernels);
    stream = openContent(input, task.encoding, task.rangeSize, kernels, task.region);
    for (let chunk = stream.next(); chunk !== undefined; chunk = stream.next()) {
      ranges.add(chunk);
      if (out !== undefined) {
        const fd = out;
        const data = chunk;
        const end = written + data.length;
        onTarget(target!, () => {
          writeAllSync(fd, data, written);
          durability!.wrote(end);
        });
      }
      written += chunk.length;
      if (written > task.size) return { ok: false, problem: `holds more than the ${task.size} bytes the manifest says`, bytes: written };
    }
    const hashes = ranges.finish() as string[];
    if (written !== task.size) {
      return { ok: false, problem: `holds ${written} bytes, the manifest says ${task.size}`, bytes: written };
    }
    const hash = combineRangeHashes(hashes, (b) => kernels.hash(b));
    if (hash !== task.expectedHash) {
      return { ok: false, problem: `content hash ${hash} differs from the manifest's ${task.expectedHash}`, bytes: written };
    }
    if (durability) onTarget(target!, () => durability.settle(task));
    complete = true;
    return { ok: true, bytes: written };
  } catch (e) {
    if (e instanceof TargetWriteError) return { ok: false, problem: e.message, bytes: written, targetErrno: e.errno };
    return { ok: false, problem: (e as Error).message, bytes: written };
  } finally {
    stream?.release();
    if (opened === undefined) closeSync(input);
    if (out !== undefined) closeTarget(out, task.targetPath!, complete);
  }
}
