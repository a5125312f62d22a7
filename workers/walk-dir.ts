import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface WalkDirTask {
  readonly absDir: string;
}

export interface WalkedEntry {
  readonly name: string;
  readonly kind: 'file' | 'dir' | 'symlink' | 'other';
  readonly size: number;
  readonly mode: number;
  readonly mtimeMs: number;
  readonly linkTarget?: string;
}

/**
 * readdir + lstat of one directory, in a worker: a cluster with 100,000 relation files must not
 * stall the main thread. Names that vanish between readdir and lstat (dropped tables) are
 * skipped, as the server's own base backup does.
 */
export function walkDir(task: WalkDirTask): WalkedEntry[] {
  const out: WalkedEntry[] = [];
  for (const name of readdirSync(task.absDir)) {
    const abs = join(task.absDir, name);
    let st;
    try {
      st = lstatSync(abs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    const entry: WalkedEntry = { name, kind, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs };
    out.push(kind === 'symlink' ? { ...entry, linkTarget: readlinkSync(abs) } : entry);
  }
  return out;
}
