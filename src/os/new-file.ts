/**
 * A file being written in the user's places, by descriptor: created (or truncated) with
 * O_NOFOLLOW — a link where the file goes is never written through — written whole, and given
 * its owner, mode and times on the descriptor (never through a path that could have been swapped
 * in between), then fsynced. The restore of a backup file, a segment received from a server, a
 * file of a dump restored to where= all go this way.
 */
import { constants as fsc, createWriteStream, fchmodSync, fchownSync, fsyncSync, futimesSync, openSync, writeSync, type WriteStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** Write-only, created when missing, emptied when present, never through a link. */
export const NEW_FILE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW;

/** Open `path` for a new content (see NEW_FILE_FLAGS); a new file gets `mode`. Returns the descriptor. */
export function createFileSync(path: string, mode = 0o600): number {
  return openSync(path, NEW_FILE_FLAGS, mode);
}

/**
 * The most bytes handed to one write(2). Larger writes make the kernel (6.x, ext4 with large
 * folios) fill the page cache with large folios, which on the VMs measured here come from memory
 * the guest has not touched lately and cost several times more to fill: a restore of 2.09 GiB
 * laid down in 5.6–6.5 s with 4 MiB writes and 2.1–2.3 s with 256 KiB ones, system time 6–8 s
 * against under 2 s (README, "Writing into fresh memory"). The extra system calls cost little.
 */
export const WRITE_PIECE_BYTES = 256 * 1024;

/** All of `data` written at `position` (or at the file position when it is undefined), in pieces of at most WRITE_PIECE_BYTES. */
export function writeAllSync(fd: number, data: Uint8Array, position?: number): void {
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off, Math.min(data.length - off, WRITE_PIECE_BYTES), position === undefined ? null : position + off);
}

export interface FileAttributes {
  /** Permission bits (masked to 0777). */
  readonly mode: number;
  readonly mtimeMs: number;
  /** Given only when both are set. */
  readonly uid?: number;
  readonly gid?: number;
}

/**
 * Owner, mode, times — on the descriptor, owner first (a chown may clear mode bits) — then fsync:
 * the file is what it was meant to be, durably. Called only once its content has checked.
 * `fsync` false: the caller syncs the whole file system later, before it reports the file written
 * (a restore's lay-down, src/os/file-system-sync.ts).
 */
export function settleSync(fd: number, a: FileAttributes, fsync = true): void {
  if (a.uid !== undefined && a.gid !== undefined) fchownSync(fd, a.uid, a.gid);
  fchmodSync(fd, a.mode & 0o777);
  futimesSync(fd, a.mtimeMs / 1000, a.mtimeMs / 1000);
  if (fsync) fsyncSync(fd);
}

/** A write stream on a new content of `path`, opened now: an open that fails throws here. */
export function createFileStreamSync(path: string, mode = 0o600): WriteStream {
  return createWriteStream(path, { fd: createFileSync(path, mode) });
}

/** The same, opened in the background: an open that fails is the stream's 'error'. */
export function createFileStream(path: string, mode = 0o600): WriteStream {
  // Numeric flags go to open(2) as they are (the typings only name the string form, which has no O_NOFOLLOW).
  return createWriteStream(path, { flags: NEW_FILE_FLAGS as unknown as string, mode });
}

/** An open file being written (async), for writes at positions and explicit fsyncs. */
export class NewFile {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** Created or emptied (see NEW_FILE_FLAGS); a new file gets `mode`. */
  static async create(path: string, mode = 0o600): Promise<NewFile> {
    return new NewFile(path, await open(path, NEW_FILE_FLAGS, mode));
  }

  /** All of `data[off, off + length)` written at `position`. */
  async writeAt(data: Uint8Array, off: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await this.fh.write(data, off + done, length - done, position + done);
      if (bytesWritten <= 0) throw new Error('short write');
      done += bytesWritten;
    }
  }

  /** All of `data` appended at the file position, synchronously (the caller keeps the order). */
  appendSync(data: Uint8Array): void {
    writeAllSync(this.fh.fd, data);
  }

  /** Its length set (a segment file is made full-size before it is filled). */
  async truncate(length: number): Promise<void> {
    await this.fh.truncate(length);
  }

  async sync(): Promise<void> {
    await this.fh.sync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
