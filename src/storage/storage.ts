/**
 * The one storage interface for what pgbacula itself keeps: the local repository (src/repo/) and
 * the WAL archive or spool (src/archive/). Two implementations: POSIX (posix.ts, the product) and
 * in memory (memory.ts, unit tests, with fault hooks). Both keep the same promises:
 *
 * - paths are absolute (the POSIX store also takes them relative to the working directory, as
 *   archive_command's %p is); a name's parent directory must exist (except for makeDirs);
 * - failures are errors carrying the POSIX `code` (ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY,
 *   ENOSPC, ...), the way node:fs reports them, so callers keep one way of telling them apart
 *   (src/os/io-error.ts turns them into operator messages);
 * - nothing written through writeFileDurable, publishIfAbsent or publishFileIfAbsent is ever
 *   visible half-written under its final name, and once they return it survives a crash
 *   (file and directory fsynced);
 * - publishIfAbsent and publishFileIfAbsent never replace an existing name (link(2)): two writers
 *   of the same name cannot overwrite each other; rename replaces;
 * - list returns names in no particular order.
 */

/** What a name is. Symbolic links are followed: 'symlink' is a link that leads nowhere. */
export type EntryKind = 'file' | 'directory' | 'symlink' | 'other';

export interface EntryInfo {
  readonly kind: EntryKind;
  /** Bytes (files); 0 or the file system's figure for anything else. */
  readonly size: number;
}

export interface CreateFileOptions {
  /** Permission bits of a new file (default 0o640). */
  readonly mode?: number;
  /** Refuse (EEXIST) when the name exists, instead of truncating it. */
  readonly exclusive?: boolean;
}

export interface WriteOptions {
  /** Permission bits of the new file (default 0o640). */
  readonly mode?: number;
}

export interface DirOptions {
  /** Permission bits of each directory created (default 0o750). */
  readonly mode?: number;
}

/** A file open for reading ranges. */
export interface FileReader {
  /** Size when it was opened. */
  readonly size: number;
  /** Up to `length` bytes from `position` (fewer at the end of the file, none past it). */
  read(position: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** A file open for writing: durable only after sync() (and, for a new name, the directory's sync). */
export interface FileWriter {
  readonly path: string;
  /** Append after the last byte this writer wrote with write(). */
  write(bytes: Uint8Array): Promise<void>;
  /** Write at a byte position (does not move write()'s position). */
  writeAt(bytes: Uint8Array, position: number): Promise<void>;
  /** Set the file's size (zeros when it grows). */
  truncate(size: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** publishFileIfAbsent's answer: 'no-links' when the file system has no hard links (nothing done). */
export type LinkOutcome = 'published' | 'exists' | 'no-links';

export interface Storage {
  /** The whole file (for small files: markers, metadata, history files, segments). */
  readFile(path: string): Promise<Buffer>;
  /** The whole file, or undefined when the name does not exist. */
  readFileIfExists(path: string): Promise<Buffer | undefined>;
  /** Up to `length` bytes from `position` (fewer at the end of the file). */
  readRange(path: string, position: number, length: number): Promise<Buffer>;
  openForRead(path: string): Promise<FileReader>;

  /** What the name is (links followed), or undefined when it does not exist. */
  stat(path: string): Promise<EntryInfo | undefined>;
  exists(path: string): Promise<boolean>;
  /** Names in a directory (no order promised); ENOENT when it does not exist. */
  list(dir: string): Promise<string[]>;

  /** Create one directory; EEXIST when the name exists (an exclusive claim on the name). */
  makeDir(path: string, options?: DirOptions): Promise<void>;
  /**
   * mkdir -p. Returns the first directory it created (its parent is the directory to fsync so
   * the new entries are durable), or undefined when everything existed already.
   */
  makeDirs(path: string, options?: DirOptions): Promise<string | undefined>;

  /** Open a file for writing under its final name (truncating, or EEXIST when exclusive). */
  createFile(path: string, options?: CreateFileOptions): Promise<FileWriter>;
  /**
   * Replace (or create) a file whole: a temporary name beside it, fsync, rename, fsync of the
   * directory. Readers see the old content or the new, never a mix.
   */
  writeFileDurable(path: string, data: string | Uint8Array, options?: WriteOptions): Promise<void>;
  /**
   * Create a file whole under a name that must not exist: a temporary name beside it, fsync,
   * link(2) under the final name, fsync of the directory. Returns false, changing nothing, when
   * the name exists (whoever made it first wins).
   */
  publishIfAbsent(path: string, data: string | Uint8Array, options?: WriteOptions): Promise<boolean>;
  /** Give an existing (fsynced) file a second name that must not exist, and fsync the directory. */
  publishFileIfAbsent(existing: string, path: string): Promise<LinkOutcome>;

  /** rename(2): replaces `to` when it is a file. */
  rename(from: string, to: string): Promise<void>;
  /** Remove one file (ENOENT when absent). */
  removeFile(path: string): Promise<void>;
  /** Remove a file or a directory with everything in it; nothing when absent. */
  removeTree(path: string): Promise<void>;

  /** fsync a file's content. */
  syncFile(path: string): Promise<void>;
  /** fsync a directory: the names created, renamed or removed in it become durable. */
  syncDir(path: string): Promise<void>;
}

/** The POSIX code of a storage failure (ENOENT, EEXIST, ...), or undefined. */
export function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function isNotFound(e: unknown): boolean {
  return errorCode(e) === 'ENOENT';
}

export function isAlreadyExists(e: unknown): boolean {
  return errorCode(e) === 'EEXIST';
}

/** Modes of what the product stores, unless a caller asks for others: readable by its group (the backup operator), never by others. */
export const STORED_FILE_MODE = 0o640;
export const STORED_DIR_MODE = 0o750;

/** The temporary name writeFileDurable and publishIfAbsent use beside `name`: hidden, owner pid first. */
export function temporaryName(name: string, pid: number, random: string): string {
  return `.${name}.tmp-${pid}-${random}`;
}

/** The pid in a temporary name (temporaryName's, or an older `<name>.tmp-<pid>-…`), or undefined. */
export function temporaryNameOwner(name: string): number | undefined {
  const pid = Number(/\.tmp-(\d+)(?:-|$)/.exec(name)?.[1]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}
