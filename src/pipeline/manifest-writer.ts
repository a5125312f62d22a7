import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { manifestFileLine, manifestHeadText, manifestSealText, MANIFEST_FILES_END, type ManifestFile, type ManifestHead } from '../format/backup-manifest.js';
import { createFileSync, writeAllSync } from '../os/new-file.js';
import { removeFileSync } from '../os/user-files.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';

const FLUSH_AT = 1024 * 1024;

/**
 * Collects manifest entries on disk as they are produced, so memory does not grow with the
 * number of files; `finish` writes the sealed manifest (head, entries, SHA-256) to its place
 * through the product's storage. The entries' spool is scratch space of this process (read back
 * once, removed): plain synchronous file calls keep `add` synchronous on the walk's hot path.
 */
export class ManifestWriter {
  private readonly fd: number;
  private pending = '';
  private count = 0;
  rawBytes = 0;
  fileCount = 0;
  /** Entries stored in bundles (the manifest's version must then announce them). */
  bundledCount = 0;

  constructor(
    private readonly spoolPath: string,
    private readonly storage: Storage = posixStorage,
  ) {
    this.fd = createFileSync(spoolPath, 0o600);
  }

  add(f: ManifestFile): void {
    this.pending += manifestFileLine(f, this.count === 0);
    this.count++;
    if (f.type === 'file') {
      this.fileCount++;
      this.rawBytes += f.size;
    }
    if (f.bundle) this.bundledCount++;
    if (this.pending.length >= FLUSH_AT) this.flush();
  }

  private flush(): void {
    if (this.pending === '') return;
    writeAllSync(this.fd, Buffer.from(this.pending, 'utf8'));
    this.pending = '';
  }

  /** Write the sealed manifest to `dest` (fsynced); the spool file is removed. */
  async finish(head: ManifestHead, dest: string): Promise<void> {
    this.flush();
    const hash = createHash('sha256');
    let out;
    let spool: number | undefined;
    try {
      spool = openSync(this.spoolPath, 'r');
      out = await this.storage.createFile(dest, { mode: 0o640 });
      const put = async (b: Buffer): Promise<void> => {
        hash.update(b);
        await out!.write(b);
      };
      await put(Buffer.from(manifestHeadText(head), 'utf8'));
      const chunk = Buffer.alloc(FLUSH_AT);
      for (let pos = 0; ; ) {
        const n = readSync(spool, chunk, 0, chunk.length, pos);
        if (n === 0) break;
        await put(chunk.subarray(0, n));
        pos += n;
      }
      await put(Buffer.from(MANIFEST_FILES_END, 'utf8'));
      await out.write(Buffer.from(manifestSealText(hash.digest('hex')), 'utf8'));
      await out.sync();
    } finally {
      if (spool !== undefined) closeSync(spool);
      await out?.close();
      this.discard();
    }
  }

  discard(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    try {
      removeFileSync(this.spoolPath);
    } catch {
      // never created, or already removed
    }
  }
}
