/**
 * The durability of a restore's lay-down, paid once: each file system the restore writes to is
 * synced (syncfs) when every file is in place, instead of one fsync per file while they are written.
 *
 * Why: an fsync per file makes the disk write each file while the next one waits, and forces a
 * journal commit per file (a restore of 100,000 small relation files is 100,000 of them); the
 * workers instead start each large file's writeback as they write it (kernels.startWriteback), and
 * one syncfs per file system waits for what is left — file contents, inodes and the directories
 * made on the way, which per-file fsyncs did not cover. A descriptor is opened on each file system
 * before the first file is written: syncfs reports a writeback error that happened since then.
 *
 * Only with the native addon (Node has no syncfs); without it the workers fsync every file.
 */
import { closeSync, constants as fsc, fstatSync, openSync } from 'node:fs';
import { PgbaculaError } from '../errors.js';
import { nativeFileSystemSync, type KernelMode } from '../format/kernels.js';

export class FileSystemSync {
  private constructor(
    private readonly handles: ReadonlyArray<{ readonly path: string; readonly fd: number }>,
    private readonly syncfs: (fd: number) => Promise<void>,
  ) {}

  /**
   * Descriptors on the file systems holding `dirs` (existing directories), one per file system;
   * undefined when the addon cannot sync a file system (the caller fsyncs each file then).
   */
  static open(dirs: readonly string[], mode?: KernelMode): FileSystemSync | undefined {
    const syncfs = nativeFileSystemSync(mode);
    if (!syncfs) return undefined;
    const handles: { path: string; fd: number; dev: number }[] = [];
    try {
      for (const path of dirs) {
        const fd = openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
        const dev = fstatSync(fd).dev;
        if (handles.some((h) => h.dev === dev)) closeSync(fd);
        else handles.push({ path, fd, dev });
      }
    } catch (e) {
      for (const h of handles) closeSync(h.fd);
      throw e;
    }
    return new FileSystemSync(handles, syncfs);
  }

  /** How many file systems are synced. */
  get fileSystems(): number {
    return this.handles.length;
  }

  /** Every file system synced, in parallel; a failure names the directory whose file system failed. */
  async sync(): Promise<void> {
    const results = await Promise.allSettled(this.handles.map((h) => this.syncfs(h.fd)));
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed < 0) return;
    const error = (results[failed] as PromiseRejectedResult).reason as NodeJS.ErrnoException;
    const path = this.handles[failed]!.path;
    throw new PgbaculaError('IO', `the file system holding ${path} could not write what was restored to it: ${error.message}`, {
      hint: 'The disk or file system reported an error (EIO: see the kernel log; ENOSPC/EDQUOT: free space). The restore is not complete; run it again once the cause is fixed.',
      cause: error,
    });
  }

  close(): void {
    for (const h of this.handles) closeSync(h.fd);
  }
}
