/**
 * Storage on a POSIX file system (node:fs). Durable writes are temp + fsync + rename/link +
 * fsync(dir); publish uses link(2), which never replaces a name. On a file system without hard
 * links publishIfAbsent falls back to an existence check and rename (the only way left there;
 * two writers racing on one name can then both succeed).
 */
import { writeAllSync } from '../os/new-file.js';
import { randomBytes } from 'node:crypto';
import { closeSync, fsync, ftruncate, openSync } from 'node:fs';
import { promisify } from 'node:util';
import { link, lstat, mkdir, open, readdir, readFile, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  errorCode,
  isNotFound,
  STORED_DIR_MODE,
  STORED_FILE_MODE,
  temporaryName,
  type CreateFileOptions,
  type DirOptions,
  type EntryInfo,
  type FileReader,
  type FileWriter,
  type LinkOutcome,
  type Storage,
  type WriteOptions,
} from './storage.js';

const FILE_MODE = STORED_FILE_MODE;
const DIR_MODE = STORED_DIR_MODE;

/** link(2) refused because the file system (or its mount) has no hard links. */
export function isLinkUnsupported(e: unknown): boolean {
  const code = errorCode(e);
  return code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'ENOSYS';
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function bytesOf(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/** Write all of `bytes` at `position` (a short write is continued, never dropped). */
async function writeAllAt(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

const fsyncFd = promisify(fsync);
const ftruncateFd = promisify(ftruncate);

/**
 * A file being written, by descriptor. Opening, writing into the page cache and closing are
 * synchronous: each is a few microseconds, where a round trip through libuv's thread pool costs
 * about a tenth of a millisecond — per file, on the path of every stored item (a backup of
 * 100,000 files stores 100,000). Only fsync, which waits for the disk, goes to the pool.
 */
class PosixWriter implements FileWriter {
  private position = 0;
  constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    writeAllSync(this.fd, bytes, this.position);
    this.position += bytes.length;
  }

  async writeAt(bytes: Uint8Array, position: number): Promise<void> {
    writeAllSync(this.fd, bytes, position);
  }

  truncate(size: number): Promise<void> {
    return ftruncateFd(this.fd, size);
  }

  sync(): Promise<void> {
    return fsyncFd(this.fd);
  }

  async close(): Promise<void> {
    closeSync(this.fd);
  }
}

class PosixReader implements FileReader {
  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  async read(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === length ? buf : buf.subarray(0, got);
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

export class PosixStorage implements Storage {
  readFile(path: string): Promise<Buffer> {
    return readFile(path);
  }

  async readFileIfExists(path: string): Promise<Buffer | undefined> {
    try {
      return await readFile(path);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async readRange(path: string, position: number, length: number): Promise<Buffer> {
    const r = await this.openForRead(path);
    try {
      return await r.read(position, length);
    } finally {
      await r.close();
    }
  }

  async openForRead(path: string): Promise<FileReader> {
    const fh = await open(path, 'r');
    try {
      return new PosixReader(fh, (await fh.stat()).size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async stat(path: string): Promise<EntryInfo | undefined> {
    try {
      const s = await stat(path);
      return { kind: s.isFile() ? 'file' : s.isDirectory() ? 'directory' : 'other', size: s.size };
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    // A link that leads nowhere still holds its name.
    const l = await lstat(path).catch((e: unknown) => {
      if (isNotFound(e)) return undefined;
      throw e;
    });
    return l === undefined ? undefined : { kind: 'symlink', size: l.size };
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== undefined;
  }

  list(dir: string): Promise<string[]> {
    return readdir(dir);
  }

  async makeDir(path: string, options: DirOptions = {}): Promise<void> {
    await mkdir(path, { mode: options.mode ?? DIR_MODE });
  }

  makeDirs(path: string, options: DirOptions = {}): Promise<string | undefined> {
    return mkdir(path, { recursive: true, mode: options.mode ?? DIR_MODE });
  }

  async createFile(path: string, options: CreateFileOptions = {}): Promise<FileWriter> {
    return new PosixWriter(path, openSync(path, options.exclusive ? 'wx' : 'w', options.mode ?? FILE_MODE));
  }

  /** Write `data` to a new temporary name beside `path`, fsynced; returns that name. */
  private async writeTemporary(path: string, data: string | Uint8Array, mode: number): Promise<string> {
    const tmp = join(dirname(path), temporaryName(basename(path), process.pid, randomBytes(4).toString('hex')));
    const fh = await open(tmp, 'wx', mode);
    try {
      await writeAllAt(fh, bytesOf(data), 0);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await fh.close();
    return tmp;
  }

  async writeFileDurable(path: string, data: string | Uint8Array, options: WriteOptions = {}): Promise<void> {
    const tmp = await this.writeTemporary(path, data, options.mode ?? FILE_MODE);
    try {
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await fsyncPath(dirname(path));
  }

  async publishIfAbsent(path: string, data: string | Uint8Array, options: WriteOptions = {}): Promise<boolean> {
    const tmp = await this.writeTemporary(path, data, options.mode ?? FILE_MODE);
    let linked = true;
    try {
      try {
        await link(tmp, path);
      } catch (e) {
        if (errorCode(e) === 'EEXIST') return false;
        if (!isLinkUnsupported(e)) throw e;
        if (await this.exists(path)) return false;
        linked = false;
        await rename(tmp, path);
      }
      if (linked) await unlink(tmp);
      await fsyncPath(dirname(path));
      return true;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  async publishFileIfAbsent(existing: string, path: string): Promise<LinkOutcome> {
    try {
      await link(existing, path);
    } catch (e) {
      if (errorCode(e) === 'EEXIST') return 'exists';
      if (isLinkUnsupported(e)) return 'no-links';
      throw e;
    }
    await fsyncPath(dirname(path));
    return 'published';
  }

  rename(from: string, to: string): Promise<void> {
    return rename(from, to);
  }

  removeFile(path: string): Promise<void> {
    return unlink(path);
  }

  removeTree(path: string): Promise<void> {
    return rm(path, { recursive: true, force: true });
  }

  syncFile(path: string): Promise<void> {
    return fsyncPath(path);
  }

  syncDir(path: string): Promise<void> {
    return fsyncPath(path);
  }
}

/** The product's storage (one instance: it holds no state). */
export const posixStorage: Storage = new PosixStorage();
