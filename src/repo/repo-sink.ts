import { dirname, join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { encodeFrameEnd, encodeFrameHeader } from '../format/lz4-frame.js';
import type { ItemHeader, ItemPlacement, ItemSink, ItemTrailer } from '../item/item.js';
import { fileSystemError } from '../os/io-error.js';
import { posixStorage } from '../storage/posix.js';
import { BufferedWriter } from '../storage/buffered-writer.js';
import type { FileWriter, Storage } from '../storage/storage.js';
import { backupDir, backupsDir, bundlePath, bundlesDir, inProgressPath, manifestPath, storedFilePath } from './layout.js';

/** Files of the cluster of at most this many bytes are stored in bundles (when bundling is on). */
export const BUNDLE_FILE_MAX = 256 * 1024;
/** A bundle is closed, and the next one begun, once it holds this many bytes. */
export const BUNDLE_TARGET_BYTES = 16 * 1024 * 1024;

export interface RepoSinkOptions {
  /**
   * Store the small files of the cluster (pgdata/, tablespaces/) one after another in bundle
   * files: one create and one fsync per 16 MiB instead of per file (docs/repository-format.md).
   */
  readonly bundle?: boolean;
}

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
  private current: { header: ItemHeader; file: FileWriter | BufferedWriter | undefined; path: string; bundle?: { id: number; offset: number; length: number } } | undefined;
  private readonly written: string[] = [];
  private readonly dirs = new Set<string>();
  /** The bundle being filled: its writer, number and size so far. */
  private bundle: { file: BufferedWriter; path: string; id: number; size: number } | undefined;
  /** Bundles begun so far, and the files stored in them (for the job log). */
  bundleCount = 0;
  bundledFiles = 0;
  storedBytes = 0;

  constructor(
    readonly repo: string,
    readonly backupId: string,
    private readonly storage: Storage = posixStorage,
    private readonly options: RepoSinkOptions = {},
  ) {}

  private goesInBundle(header: ItemHeader): boolean {
    return this.options.bundle === true && header.type === 'file' && header.size <= BUNDLE_FILE_MAX
      && (header.path.startsWith('pgdata/') || header.path.startsWith('tablespaces/'));
  }

  private async closeBundle(): Promise<void> {
    const b = this.bundle;
    if (!b) return;
    this.bundle = undefined;
    await b.file.close().catch((e: unknown) => {
      throw fileSystemError(e, 'write', b.path, this.place);
    });
    this.written.push(b.path);
  }

  private async openBundle(): Promise<NonNullable<RepoSink['bundle']>> {
    await this.closeBundle();
    await this.ensureDir(bundlesDir(this.repo, this.backupId));
    const id = this.bundleCount++;
    const path = bundlePath(this.repo, this.backupId, id);
    const file = await this.storage.createFile(path, { mode: 0o640, exclusive: true }).catch((e: unknown) => {
      throw fileSystemError(e, 'create', path, this.place);
    });
    this.bundle = { file: new BufferedWriter(file), path, id, size: 0 };
    return this.bundle;
  }

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
    if (this.goesInBundle(header)) {
      const b = this.bundle && this.bundle.size < BUNDLE_TARGET_BYTES ? this.bundle : await this.openBundle();
      this.current = { header, file: b.file, path: b.path, bundle: { id: b.id, offset: b.size, length: 0 } };
      if (header.encoding === 'lz4') await this.put(encodeFrameHeader());
      return;
    }
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
    const inBundle = this.current!.bundle;
    if (inBundle) {
      this.bundle!.size += bytes.length;
      inBundle.length += bytes.length;
    }
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.length > 0) await this.put(chunk);
  }

  async end(_trailer: ItemTrailer): Promise<ItemPlacement | void> {
    const c = this.current;
    if (!c) throw new PgbaculaError('INTERNAL', 'end without begin');
    if (c.bundle) {
      if (c.header.encoding === 'lz4') await this.put(encodeFrameEnd());
      this.current = undefined;
      this.bundledFiles++;
      return { bundle: c.bundle };
    }
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
      await this.closeBundle();
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
    if (!this.current?.bundle) await this.current?.file?.close().catch(() => undefined);
    await this.bundle?.file.close().catch(() => undefined);
    this.bundle = undefined;
    this.current = undefined;
  }
}
