import { closeSync } from 'node:fs';
import { removeFileSync } from '../src/os/user-files.js';

/**
 * A failure of the restore target's file system (full, read-only, not ours), kept apart from a
 * damaged stored file: a different message and a different fix. Shared by the workers that
 * write a restored file (restore-file.ts, combine-file.ts).
 */
export class TargetWriteError extends Error {
  constructor(
    readonly errno: string,
    message: string,
  ) {
    super(message);
  }
}

/** Run a write to the target; an error becomes a TargetWriteError naming the path. */
export function onTarget<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new TargetWriteError(err.code ?? 'EIO', `cannot write ${path}: ${err.message}`);
  }
}

/**
 * Close a restored file's descriptor; one that did not end complete (failed its check, or could
 * not be written whole) does not stay in the target.
 */
export function closeTarget(fd: number, path: string, complete: boolean): void {
  closeSync(fd);
  if (complete) return;
  try {
    removeFileSync(path);
  } catch {
    // already gone
  }
}
