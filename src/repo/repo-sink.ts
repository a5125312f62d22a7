import { dirname, join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { encodeFrameEnd, encodeFrameHeader } from '../format/lz4-frame.js';
import type { ItemHeader, ItemSink, ItemTrailer } from '../item/item.js';
import { fileSystemError } from '../os/io-error.js';
import { posixStorage } from '../storage/posix.js';
import type { FileWriter, Storage } from '../storage/storage.js';
import { backupDir, backupsDir, inProgressPath, manifestPath, storedFilePath } from './layout.js';

/** fsync many paths with bounded concurrency (libuv's pool does the blocking calls). */
async function syncAll(paths: Iterable<string>, sync: (path: string) => Promise<void>, concurrency = 8): Promise<void> {
  const it = paths[Symbol.iterator]();
  const workers = Array.from({ length: concurrency }, async () => {
    for (let n = it.next(); !n.done; n = it.next()) await sync(n.value);
  });
  await Promise.all(workers);
}

/**
 * Writes one backup into the repository, into a directory made for it alone (createBackupDir,
 * with its in-progress marker). Files go straight to their final names inside it — the backup as
 * a whole is the unit of atomicity: until manifest.json is renamed into place (after every file
 * and directory is fsynced) it is "incomplete", and the next run removes it.
 */
export class RepoSink implements ItemSink {
  private current: { header: ItemHeader; file: FileWriter | undefined; path: string } | undefined;
  private readonly written: string[] = [];
  private readonly dirs = new Set<string>();
  storedBytes = 0;

  constructor(
    readonly repo: string,
    readonly backupId: string,
    private readonly storage: Storage = posixStorage,
  ) {}

  private get place(): string {
    return `the repository ${this.repo}`;
  }

  async open(): Promise<void> {
    const dir = join(backupDir(this.repo, this.backupId), 'files');
    await this.storage.makeDirs(dir, { mode: 0o750 }).catch((e: unknown) => {
      throw fileSystemError(e, 'create', dir, this.place);
    });
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.dirs.has(dir)) return;
    await this.storage.makeDirs(dir, { mode: 0o750 }).catch((e: unknown) => {
      throw fileSystemError(e, 'create', dir, this.place);
    });
    this.dirs.add(dir);
  }

  async begin(header: ItemHeader): Promise<void> {
    if (this.current) throw new PgbaculaError('INTERNAL', `item ${header.path} begun before ${this.current.header.path} ended`);
    const path = storedFilePath(this.repo, this.backupId, header.path, header.encoding);
    if (header.type === 'dir') {
      await this.ensureDir(path);
      this.current = { header, file: undefined, path };
      return;
    }
    await this.ensureDir(dirname(path));
    if (header.type === 'symlink') {
      // Links are recorded in the manifest; a link in the repository would point into the live cluster.
      this.current = { header, file: undefined, path };
      return;
    }
    const file = await this.storage.createFile(path, { mode: 0o640 }).catch((e: unknown) => {
      throw fileSystemError(e, 'create', path, this.place);
    });
    this.current = { header, file, path };
    if (header.encoding === 'lz4') await this.put(encodeFrameHeader());
  }

  private async put(bytes: Uint8Array): Promise<void> {
    const file = this.current?.file;
    if (!file) throw new PgbaculaError('INTERNAL', 'data for an item that is not a file');
    // Durability comes from the fsyncs at commit.
    try {
      await file.write(bytes);
    } catch (e) {
      throw fileSystemError(e, 'write', this.current!.path, this.place);
    }
    this.storedBytes += bytes.length;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.length > 0) await this.put(chunk);
  }

  async end(_trailer: ItemTrailer): Promise<void> {
    const c = this.current;
    if (!c) throw new PgbaculaError('INTERNAL', 'end without begin');
    if (c.file) {
      if (c.header.encoding === 'lz4') await this.put(encodeFrameEnd());
      await c.file.close().catch((e: unknown) => {
        throw fileSystemError(e, 'write', c.path, this.place);
      });
      this.written.push(c.path);
    }
    this.current = undefined;
  }

  /** Where the engine writes the sealed manifest before commit renames it into place. */
  get manifestTempPath(): string {
    return `${manifestPath(this.repo, this.backupId)}.tmp-${process.pid}`;
  }

  /**
   * Make every file durable, then seal the backup: the manifest (already written and fsynced at
   * manifestTempPath) is renamed into place, and the directories fsynced.
   */
  async commit(): Promise<void> {
    const s = this.storage;
    try {
      await syncAll(this.written, (p) => s.syncFile(p));
      await syncAll([...this.dirs].sort((a, b) => b.length - a.length), (p) => s.syncDir(p));
      await s.rename(this.manifestTempPath, manifestPath(this.repo, this.backupId));
      await s.removeFile(inProgressPath(this.repo, this.backupId));
      await s.syncDir(backupDir(this.repo, this.backupId));
      await s.syncDir(backupsDir(this.repo));
    } catch (e) {
      throw fileSystemError(e, 'seal backup', backupDir(this.repo, this.backupId), this.place);
    }
  }

  /** On failure: close what is open; the directory stays as visibly incomplete until cleaned. */
  async abort(): Promise<void> {
    await this.current?.file?.close().catch(() => undefined);
    this.current = undefined;
  }
}
