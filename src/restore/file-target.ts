/**
 * A restore to plain files (Bacula `where=/dir` or regexwhere=): every stored item written as the
 * file it was, at the name the FD gives — for a look at them, a restore by hand, or to keep.
 * The same for every mode.
 */
import type { WriteStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import { PgbaculaError } from '../errors.js';
import type { ItemTrailer } from '../item/item.js';
import { formatBytes, type JobLog } from '../item/job-log.js';
import type { RestoreDecision, RestoreEntry, RestoreTarget } from '../item/restore-target.js';
import { setTimesSync } from '../os/file-owner.js';
import { createFileStreamSync } from '../os/new-file.js';
import { makeDirs, removeTree } from '../os/user-dirs.js';
import { makeSymlinkSync } from '../os/user-files.js';

/** A job log that can also report errors the job continues after (Bacula: `Q`). */
export interface RestoreLog extends JobLog {
  error(text: string): void;
}

export interface FileRestoreSettings {
  /** Restore prefix as the FD applied it (informational: the FD already relocated each name). */
  readonly where: string;
  /** Bacula Replace: a always, w if newer, o if older, n never. */
  readonly replace: string;
}

/** Every item written as a file at the name the FD gives (already under where=). */
export class FileRestoreTarget implements RestoreTarget {
  private out: WriteStream | undefined;
  private current: RestoreEntry | undefined;
  private files = 0;
  private bytes = 0;
  private skipped = 0;

  constructor(
    private readonly s: FileRestoreSettings,
    private readonly log: RestoreLog,
  ) {}

  /** Links this restore made: nothing is written through them. */
  private readonly links = new Set<string>();

  /**
   * A name from the stream is untrusted: it must be absolute without '.' or '..' components,
   * under where= (when that is a plain directory), and reach its place through no symbolic link
   * below where= (one left there, or one this restore made from an earlier entry).
   */
  private async checkName(fname: string): Promise<string> {
    const path = fname.replace(/\/+$/, '');
    if (!path.startsWith('/') || path.split('/').slice(1).some((c) => c === '..' || c === '.' || c === '')) {
      throw new PgbaculaError('RESTORE_PRECHECK', `refusing to write ${fname}: not an absolute path without "." or ".." components`);
    }
    const where = this.s.where.replace(/\/+$/, '');
    const plainWhere = where.startsWith('/') && !where.startsWith('regexwhere ');
    if (plainWhere && !path.startsWith(`${where}/`)) {
      throw new PgbaculaError('RESTORE_PRECHECK', `refusing to write ${fname}: it is not under where=${where}`);
    }
    for (const l of this.links) {
      if (path.startsWith(`${l}/`)) throw new PgbaculaError('RESTORE_PRECHECK', `refusing to write ${fname}: it lies beneath the symbolic link ${l} restored just before`);
    }
    if (plainWhere) {
      let dir = where;
      for (const c of path.slice(where.length + 1).split('/').slice(0, -1)) {
        dir = `${dir}/${c}`;
        const st = await lstat(dir).catch(() => undefined);
        if (!st) break;
        if (st.isSymbolicLink()) throw new PgbaculaError('RESTORE_PRECHECK', `refusing to write ${fname}: ${dir} is a symbolic link`, { hint: 'Restore into an empty where= directory.' });
      }
    }
    return path;
  }

  async begin(entry: RestoreEntry): Promise<RestoreDecision> {
    const path = await this.checkName(entry.fname);
    if (entry.type === 'dir') {
      await makeDirs(path, entry.mode || 0o700);
      this.current = entry;
      return 'restore';
    }
    let exists = false;
    let existingMtime = 0;
    try {
      const st = await lstat(path);
      exists = true;
      existingMtime = st.mtimeMs;
    } catch {
      // not there
    }
    const keep = exists && (this.s.replace === 'n' || (this.s.replace === 'w' && existingMtime >= entry.mtimeMs) || (this.s.replace === 'o' && existingMtime <= entry.mtimeMs));
    if (keep) {
      this.skipped++;
      return 'skip';
    }
    await makeDirs(dirname(path), 0o700);
    if (exists) await removeTree(path);
    if (entry.type === 'symlink') {
      makeSymlinkSync(entry.linkTarget ?? '', path);
      this.links.add(path);
      this.current = entry;
      return 'restore';
    }
    // O_NOFOLLOW: never written through a link that appears at the last moment either.
    this.out = createFileStreamSync(path, entry.mode || 0o600);
    this.out.on('error', () => undefined);
    this.current = entry;
    return 'restore';
  }

  async write(chunk: Uint8Array): Promise<void> {
    const out = this.out;
    if (!out) throw new PgbaculaError('INTERNAL', 'data for an entry that is not a file');
    await writeWithBackpressure(out, chunk, () => `writing ${this.current?.fname ?? ''}`);
    this.bytes += chunk.length;
  }

  async end(_trailer: ItemTrailer): Promise<void> {
    const entry = this.current;
    this.current = undefined;
    const out = this.out;
    this.out = undefined;
    if (out) {
      await new Promise<void>((resolve, reject) => {
        out.once('error', reject);
        out.end(() => resolve());
      });
    }
    if (entry && entry.type !== 'symlink' && entry.mtimeMs > 0) {
      const t = entry.mtimeMs / 1000;
      setTimesSync(entry.fname.replace(/\/+$/, ''), t);
    }
    if (entry?.type === 'file') this.files++;
  }

  async settle(): Promise<void> {}

  async finish(): Promise<void> {
    this.log.info(`restored ${this.files} file${this.files === 1 ? '' : 's'} (${formatBytes(this.bytes)}) under ${this.s.where}${this.skipped ? `; ${this.skipped} kept (replace=${this.s.replace})` : ''}`);
  }
}

/** Write honouring back-pressure; fails (instead of hanging) when the stream is gone. */
export async function writeWithBackpressure(stream: Writable, chunk: Uint8Array, what: () => string): Promise<void> {
  if (stream.destroyed || stream.writableEnded) throw new PgbaculaError('IO', `${what()}: the stream is closed`);
  if (stream.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (e?: Error): void => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (e) reject(e);
      else resolve();
    };
    const onDrain = (): void => done();
    const onError = (e: Error): void => done(new PgbaculaError('IO', `${what()}: ${e.message}`, { cause: e }));
    const onClose = (): void => done(new PgbaculaError('IO', `${what()}: the stream closed`));
    stream.on('drain', onDrain);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
