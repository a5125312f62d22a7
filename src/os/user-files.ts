/**
 * Files in the user's places (a restored data directory, a where= directory, staging): written,
 * appended, moved, removed, and symbolic links made. Every open here is O_NOFOLLOW — a link
 * where a file goes is never written through — and a file given to an owner is given by its
 * descriptor, so what is chowned is what was written.
 */
import { closeSync, constants as fsc, fchownSync, openSync, renameSync, rmSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import type { FileOwner } from './file-owner.js';

const APPEND = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_APPEND | fsc.O_NOFOLLOW;
const REPLACE = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW;

function writeWhole(path: string, flags: number, data: string | Uint8Array, mode: number, owner: FileOwner | undefined): void {
  const fd = openSync(path, flags, mode);
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    if (owner) fchownSync(fd, owner.uid, owner.gid);
  } finally {
    closeSync(fd);
  }
}

/**
 * Append to a file, creating it (`mode`, before the umask) when missing; given to `owner` when
 * one is named. An empty `data` only makes sure the file exists.
 */
export function appendToFileSync(path: string, data: string | Uint8Array, o: { mode?: number; owner?: FileOwner } = {}): void {
  writeWhole(path, APPEND, data, o.mode ?? 0o666, o.owner);
}

/** Replace a file's content (a new file gets `mode`; an existing one keeps its own). */
export function replaceFileSync(path: string, data: string | Uint8Array, o: { mode?: number; owner?: FileOwner } = {}): void {
  writeWhole(path, REPLACE, data, o.mode ?? 0o666, o.owner);
}

/** rename(2): within one file system, atomic; EXDEV across file systems (the caller copies then). */
export function moveFileSync(from: string, to: string): void {
  renameSync(from, to);
}

export async function moveFile(from: string, to: string): Promise<void> {
  await rename(from, to);
}

/** Remove one file (or link): ENOENT when it is not there, EISDIR for a directory. */
export function removeFileSync(path: string): void {
  unlinkSync(path);
}

export async function removeFile(path: string): Promise<void> {
  await unlink(path);
}

/** A new symbolic link at `path` to `target`; EEXIST when anything is there. */
export function makeSymlinkSync(target: string, path: string): void {
  symlinkSync(target, path);
}

/** The link at `path` made to point at `target`, whatever file or link was there before. */
export function replaceWithSymlinkSync(target: string, path: string): void {
  rmSync(path, { force: true });
  symlinkSync(target, path);
}
