import { closeSync } from 'node:fs';
import type { Kernels } from '../src/format/kernels.js';
import { settleSync, type FileAttributes } from '../src/os/new-file.js';
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

/** Bytes written to a restored file between two starts of its writeback. */
const WRITEBACK_STEP_BYTES = 8 * 1024 * 1024;

/**
 * How a restored file becomes durable. Either fsynced when settled (the default), or — when the
 * restore syncs its file systems once at the end (src/os/file-system-sync.ts) and the kernels can
 * start writeback — its pages are sent to the disk every 8 MiB as it is written, so the disk works
 * while the workers do and the final sync finds little left. Small files are left to that sync.
 */
export class TargetDurability {
  private started = 0;
  private readonly writeback: Kernels['startWriteback'];

  constructor(
    private readonly fd: number,
    deferSync: boolean | undefined,
    kernels: Kernels,
  ) {
    this.writeback = deferSync ? kernels.startWriteback : undefined;
  }

  /** The file now holds `length` bytes. */
  wrote(length: number): void {
    if (!this.writeback || length - this.started < WRITEBACK_STEP_BYTES) return;
    this.writeback(this.fd, this.started, length - this.started);
    this.started = length;
  }

  /** Owner, mode and times set; fsynced unless the restore syncs the file system later. */
  settle(a: FileAttributes): void {
    if (!this.writeback) return settleSync(this.fd, a);
    if (this.started > 0) this.writeback(this.fd, this.started, 0);
    settleSync(this.fd, a, false);
  }
}
