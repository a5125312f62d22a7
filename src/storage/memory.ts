/**
 * Storage in memory, for unit tests of the repository and the archive. It keeps the promises of
 * storage.ts the way a POSIX file system does (exclusive creates, link never replaces, rename
 * replaces a file, hard links share one content, errors carry POSIX codes) and lets a test
 * inject failures: `failOn({ op: 'write', nth: 2, code: 'ENOSPC' })` fails the second write.
 * There are no symbolic links, owners or pids here, and fsync only counts.
 */
import { posix } from 'node:path';
import {
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

class MemFile {
  bytes = new Uint8Array(0);
  constructor(public mode: number) {}

  writeAt(data: Uint8Array, position: number): void {
    const end = position + data.length;
    if (end > this.bytes.length) this.resize(end);
    this.bytes.set(data, position);
  }

  resize(size: number): void {
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, Math.min(size, this.bytes.length)));
    this.bytes = next;
  }
}

class MemDir {
  readonly entries = new Map<string, MemNode>();
  constructor(public mode: number) {}
}

type MemNode = MemFile | MemDir;

/** The operations a fault can be attached to. */
export type FaultOp = 'write' | 'sync' | 'create' | 'link' | 'rename' | 'mkdir' | 'remove' | 'read';

export interface Fault {
  readonly op: FaultOp;
  /** Fail the nth matching call (default 1: the next one). */
  readonly nth?: number;
  /** The error code (default ENOSPC). */
  readonly code?: string;
  /** Only calls on paths containing this string (or matching this expression) count. */
  readonly path?: string | RegExp;
}

const MESSAGES: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory',
  ENOTEMPTY: 'directory not empty',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EIO: 'i/o error',
  EINVAL: 'invalid argument',
  EBADF: 'bad file descriptor',
};

/** An error shaped like node:fs's (code, syscall, path, "CODE: text, syscall 'path'"). */
export function storageError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${MESSAGES[code] ?? 'failed'}, ${syscall} '${path}'`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = syscall;
  e.path = path;
  return e;
}

function bytesOf(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

export class MemoryStorage implements Storage {
  private readonly root = new MemDir(DIR_MODE);
  private readonly faults: { fault: Fault; seen: number }[] = [];
  private temporaries = 0;
  /** fsync calls so far (files and directories), for tests that check durability steps. */
  syncs = 0;

  // ------------------------------------------------------------------------------------------
  // Test hooks
  // ------------------------------------------------------------------------------------------

  /** Fail a later call (once). */
  failOn(fault: Fault): void {
    this.faults.push({ fault, seen: 0 });
  }

  /** Every path that exists (files and directories), sorted. */
  paths(): string[] {
    const out: string[] = [];
    const walk = (dir: MemDir, at: string): void => {
      for (const [name, node] of dir.entries) {
        const p = at === '/' ? `/${name}` : `${at}/${name}`;
        out.push(p);
        if (node instanceof MemDir) walk(node, p);
      }
    };
    walk(this.root, '/');
    return out.sort();
  }

  private fault(op: FaultOp, path: string): void {
    for (let i = 0; i < this.faults.length; i++) {
      const f = this.faults[i]!;
      if (f.fault.op !== op) continue;
      const p = f.fault.path;
      if (p !== undefined && !(typeof p === 'string' ? path.includes(p) : p.test(path))) continue;
      f.seen++;
      if (f.seen >= (f.fault.nth ?? 1)) {
        this.faults.splice(i, 1);
        throw storageError(f.fault.code ?? 'ENOSPC', op, path);
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Path resolution
  // ------------------------------------------------------------------------------------------

  private split(path: string, syscall: string): string[] {
    if (!path.startsWith('/')) throw storageError('EINVAL', syscall, path);
    return posix.normalize(path).split('/').filter((c) => c !== '');
  }

  private lookup(path: string, syscall: string): MemNode | undefined {
    let node: MemNode = this.root;
    for (const c of this.split(path, syscall)) {
      if (!(node instanceof MemDir)) throw storageError('ENOTDIR', syscall, path);
      const next: MemNode | undefined = node.entries.get(c);
      if (next === undefined) return undefined;
      node = next;
    }
    return node;
  }

  private need(path: string, syscall: string): MemNode {
    const n = this.lookup(path, syscall);
    if (n === undefined) throw storageError('ENOENT', syscall, path);
    return n;
  }

  private needFile(path: string, syscall: string): MemFile {
    const n = this.need(path, syscall);
    if (n instanceof MemDir) throw storageError('EISDIR', syscall, path);
    return n;
  }

  /** The directory holding `path` and the last name. */
  private parentOf(path: string, syscall: string): { dir: MemDir; name: string } {
    const parts = this.split(path, syscall);
    const name = parts.pop();
    if (name === undefined) throw storageError('EEXIST', syscall, path);
    const dir = this.lookup(`/${parts.join('/')}`, syscall);
    if (dir === undefined) throw storageError('ENOENT', syscall, path);
    if (!(dir instanceof MemDir)) throw storageError('ENOTDIR', syscall, path);
    return { dir, name };
  }

  // ------------------------------------------------------------------------------------------
  // Storage
  // ------------------------------------------------------------------------------------------

  async readFile(path: string): Promise<Buffer> {
    this.fault('read', path);
    return Buffer.from(this.needFile(path, 'open').bytes);
  }

  async readFileIfExists(path: string): Promise<Buffer | undefined> {
    if (this.lookup(path, 'open') === undefined) return undefined;
    return this.readFile(path);
  }

  async readRange(path: string, position: number, length: number): Promise<Buffer> {
    const r = await this.openForRead(path);
    return r.read(position, length);
  }

  async openForRead(path: string): Promise<FileReader> {
    this.fault('read', path);
    const f = this.needFile(path, 'open');
    return {
      size: f.bytes.length,
      read: async (position, length) => Buffer.from(f.bytes.subarray(position, Math.min(f.bytes.length, position + length))),
      close: async () => undefined,
    };
  }

  async stat(path: string): Promise<EntryInfo | undefined> {
    const n = this.lookup(path, 'lstat');
    if (n === undefined) return undefined;
    return n instanceof MemDir ? { kind: 'directory', size: 4096 } : { kind: 'file', size: n.bytes.length };
  }

  async exists(path: string): Promise<boolean> {
    return this.lookup(path, 'lstat') !== undefined;
  }

  async list(dir: string): Promise<string[]> {
    const n = this.need(dir, 'scandir');
    if (!(n instanceof MemDir)) throw storageError('ENOTDIR', 'scandir', dir);
    // No order is promised: hand the names back reversed so no caller comes to rely on one.
    return [...n.entries.keys()].reverse();
  }

  async makeDir(path: string, options: DirOptions = {}): Promise<void> {
    this.fault('mkdir', path);
    const { dir, name } = this.parentOf(path, 'mkdir');
    if (dir.entries.has(name)) throw storageError('EEXIST', 'mkdir', path);
    dir.entries.set(name, new MemDir(options.mode ?? DIR_MODE));
  }

  async makeDirs(path: string, options: DirOptions = {}): Promise<string | undefined> {
    const parts = this.split(path, 'mkdir');
    let node: MemNode = this.root;
    let first: string | undefined;
    for (let i = 0; i < parts.length; i++) {
      if (!(node instanceof MemDir)) throw storageError('ENOTDIR', 'mkdir', path);
      let next: MemNode | undefined = node.entries.get(parts[i]!);
      if (next === undefined) {
        const at = `/${parts.slice(0, i + 1).join('/')}`;
        this.fault('mkdir', at);
        next = new MemDir(options.mode ?? DIR_MODE);
        node.entries.set(parts[i]!, next);
        first ??= at;
      }
      node = next;
    }
    if (!(node instanceof MemDir)) throw storageError('EEXIST', 'mkdir', path);
    return first;
  }

  async createFile(path: string, options: CreateFileOptions = {}): Promise<FileWriter> {
    this.fault('create', path);
    const { dir, name } = this.parentOf(path, 'open');
    const existing = dir.entries.get(name);
    let file: MemFile;
    if (existing !== undefined) {
      if (options.exclusive) throw storageError('EEXIST', 'open', path);
      if (existing instanceof MemDir) throw storageError('EISDIR', 'open', path);
      file = existing;
      file.resize(0);
    } else {
      file = new MemFile(options.mode ?? FILE_MODE);
      dir.entries.set(name, file);
    }
    return this.writerOf(path, file);
  }

  private writerOf(path: string, file: MemFile): FileWriter {
    let position = 0;
    let closed = false;
    const open = (syscall: string): void => {
      if (closed) throw storageError('EBADF', syscall, path);
    };
    const writeAt = (bytes: Uint8Array, at: number): void => {
      open('write');
      try {
        this.fault('write', path);
      } catch (e) {
        // A full disk takes part of a write, then refuses: the half is there under this name.
        file.writeAt(bytes.subarray(0, bytes.length >> 1), at);
        throw e;
      }
      file.writeAt(bytes, at);
    };
    return {
      path,
      write: async (bytes) => {
        writeAt(bytes, position);
        position += bytes.length;
      },
      writeAt: async (bytes, at) => writeAt(bytes, at),
      truncate: async (size) => {
        open('ftruncate');
        file.resize(size);
      },
      sync: async () => {
        open('fsync');
        this.fault('sync', path);
        this.syncs++;
      },
      close: async () => {
        open('close');
        closed = true;
      },
    };
  }

  private async writeTemporary(path: string, data: string | Uint8Array, mode: number): Promise<string> {
    const tmp = posix.join(posix.dirname(path), temporaryName(posix.basename(path), process.pid, (++this.temporaries).toString(16).padStart(8, '0')));
    const w = await this.createFile(tmp, { exclusive: true, mode });
    try {
      await w.write(bytesOf(data));
      await w.sync();
      await w.close();
    } catch (e) {
      await this.removeFile(tmp).catch(() => undefined);
      throw e;
    }
    return tmp;
  }

  async writeFileDurable(path: string, data: string | Uint8Array, options: WriteOptions = {}): Promise<void> {
    const tmp = await this.writeTemporary(path, data, options.mode ?? FILE_MODE);
    try {
      await this.rename(tmp, path);
    } catch (e) {
      await this.removeFile(tmp).catch(() => undefined);
      throw e;
    }
    await this.syncDir(posix.dirname(path));
  }

  async publishIfAbsent(path: string, data: string | Uint8Array, options: WriteOptions = {}): Promise<boolean> {
    const tmp = await this.writeTemporary(path, data, options.mode ?? FILE_MODE);
    try {
      if ((await this.publishFileIfAbsent(tmp, path)) === 'exists') return false;
      return true;
    } finally {
      await this.removeFile(tmp).catch(() => undefined);
    }
  }

  async publishFileIfAbsent(existing: string, path: string): Promise<LinkOutcome> {
    const file = this.needFile(existing, 'link');
    const { dir, name } = this.parentOf(path, 'link');
    if (dir.entries.has(name)) return 'exists';
    this.fault('link', path);
    dir.entries.set(name, file);
    await this.syncDir(posix.dirname(path));
    return 'published';
  }

  async rename(from: string, to: string): Promise<void> {
    this.fault('rename', to);
    const src = this.parentOf(from, 'rename');
    const node = src.dir.entries.get(src.name);
    if (node === undefined) throw storageError('ENOENT', 'rename', from);
    const dst = this.parentOf(to, 'rename');
    const target = dst.dir.entries.get(dst.name);
    if (target === node) return;
    if (node instanceof MemDir) {
      const norm = (p: string): string => posix.normalize(p).replace(/\/$/, '');
      if (`${norm(to)}/`.startsWith(`${norm(from)}/`)) throw storageError('EINVAL', 'rename', from);
      if (target instanceof MemFile) throw storageError('ENOTDIR', 'rename', to);
      if (target instanceof MemDir && target.entries.size > 0) throw storageError('ENOTEMPTY', 'rename', to);
    } else if (target instanceof MemDir) {
      throw storageError('EISDIR', 'rename', to);
    }
    src.dir.entries.delete(src.name);
    dst.dir.entries.set(dst.name, node);
  }

  async removeFile(path: string): Promise<void> {
    this.fault('remove', path);
    const { dir, name } = this.parentOf(path, 'unlink');
    const node = dir.entries.get(name);
    if (node === undefined) throw storageError('ENOENT', 'unlink', path);
    if (node instanceof MemDir) throw storageError('EISDIR', 'unlink', path);
    dir.entries.delete(name);
  }

  async removeTree(path: string): Promise<void> {
    this.fault('remove', path);
    if (this.lookup(path, 'rm') === undefined) return;
    const { dir, name } = this.parentOf(path, 'rm');
    dir.entries.delete(name);
  }

  async syncFile(path: string): Promise<void> {
    this.fault('sync', path);
    this.needFile(path, 'fsync');
    this.syncs++;
  }

  async syncDir(path: string): Promise<void> {
    this.fault('sync', path);
    const n = this.need(path, 'fsync');
    if (!(n instanceof MemDir)) throw storageError('ENOTDIR', 'fsync', path);
    this.syncs++;
  }
}
