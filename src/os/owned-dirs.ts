/**
 * The directories of a tree being laid down for another user (a restored cluster for the server's
 * OS user): made below a root, one component at a time, each given to the owner, never passing
 * through anything that is not a plain directory — a symbolic link on the way (left in a target,
 * or made by a crafted entry) would carry the writes and the chown outside the root.
 */
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { giveToSync, type FileOwner } from './file-owner.js';
import { makeDirSync } from './user-dirs.js';

/** What stands where a directory should: the error to throw for it. */
export type NotADirectory = (path: string, found: 'a symbolic link' | 'not a directory') => Error;

export class OwnedDirs {
  /** Directories checked (or made) in this run: each is looked at once. */
  private readonly seen = new Set<string>();

  constructor(
    private readonly owner: FileOwner,
    private readonly refuse: NotADirectory,
  ) {}

  /** root/parts…: each missing directory made with `mode` and given to the owner. Returns the deepest. */
  below(root: string, parts: readonly string[], mode = 0o700): string {
    const { owner } = this;
    let dir = root;
    for (const c of parts) {
      dir = join(dir, c);
      if (this.seen.has(dir)) continue;
      let st;
      try {
        st = lstatSync(dir);
      } catch {
        makeDirSync(dir, mode);
        giveToSync(dir, owner);
        this.seen.add(dir);
        continue;
      }
      if (!st.isDirectory()) throw this.refuse(dir, st.isSymbolicLink() ? 'a symbolic link' : 'not a directory');
      // Made by an interrupted run that was killed between its mkdir and its chown.
      if (st.uid !== owner.uid || st.gid !== owner.gid) giveToSync(dir, owner);
      this.seen.add(dir);
    }
    return dir;
  }
}
