import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { nativeDirWalker, type NativeWalkedDir } from '../src/format/kernels.js';

export interface WalkDirTask {
  readonly absDir: string;
}

export type EntryKind = 'file' | 'dir' | 'symlink' | 'other';
export const KINDS: readonly EntryKind[] = ['file', 'dir', 'symlink', 'other'];

/**
 * One directory's entries in columns: names sorted and joined by NUL (a name can never hold one)
 * and typed arrays (kinds index KINDS). A directory of 100,000 relation files costs a few
 * megabytes this way instead of 100,000 objects on both sides of the thread boundary. The addon's
 * walkDir returns the same shape.
 */
export type WalkedDir = NativeWalkedDir;

/**
 * readdir + lstat of one directory, in C when the addon is built (a directory of a million names
 * costs no million strings here). workers/walk-dir.ts runs it in a worker, so that a cluster with
 * 100,000 relation files does not stall the main thread; a verify without a pool calls it inline.
 * Names that vanish between readdir and lstat (dropped tables) are skipped, as the server's own
 * base backup does — and so is a directory that vanished since its parent was listed (a database
 * or tablespace dropped during the backup; WAL replay drops it too).
 */
export function listDir(task: WalkDirTask): WalkedDir {
  const native = nativeDirWalker();
  if (native) return native(task.absDir);
  let all: string[];
  try {
    all = readdirSync(task.absDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    all = [];
  }
  // In name order (code units, as the plan orders every directory): the main thread keeps the
  // walk's columns as they are and never holds the names as separate strings.
  all.sort();
  const kinds = new Uint8Array(all.length);
  const sizes = new Float64Array(all.length);
  const modes = new Uint16Array(all.length);
  const mtimes = new Float64Array(all.length);
  const links: Record<number, string> = {};
  const names: string[] = [];
  for (const name of all) {
    const abs = join(task.absDir, name);
    let st;
    try {
      st = lstatSync(abs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    const i = names.length;
    names.push(name);
    kinds[i] = st.isFile() ? 0 : st.isDirectory() ? 1 : st.isSymbolicLink() ? 2 : 3;
    sizes[i] = st.size;
    modes[i] = st.mode & 0o7777;
    mtimes[i] = st.mtimeMs;
    if (kinds[i] === 2) links[i] = readlinkSync(abs);
  }
  const n = names.length;
  const result: WalkedDir = {
    names: names.join('\0'),
    kinds: kinds.subarray(0, n),
    sizes: sizes.subarray(0, n),
    modes: modes.subarray(0, n),
    mtimes: mtimes.subarray(0, n),
    links,
  };
  return result;
}

/** Entry `i` of a walked directory, named `name` (for the main thread's rules). */
export function walkedEntryAt(d: WalkedDir, name: string, i: number): { name: string; kind: EntryKind; size: number; mode: number; mtimeMs: number; linkTarget?: string } {
  const kind = KINDS[d.kinds[i]!]!;
  return { name, kind, size: d.sizes[i]!, mode: d.modes[i]!, mtimeMs: d.mtimes[i]!, ...(kind === 'symlink' ? { linkTarget: d.links[i]! } : {}) };
}
