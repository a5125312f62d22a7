/**
 * Owner and mode of what pgbacula makes in the user's places (running as root, it hands a restored
 * cluster to the server's OS user). By path, these never follow a link: a link planted where a
 * file or directory was made would otherwise carry the owner or mode to wherever it points.
 */
import { chmodSync, lchownSync, lstatSync, lutimesSync, readdirSync } from 'node:fs';
import { chmod, lchown, lstat } from 'node:fs/promises';
import { join } from 'node:path';

export interface FileOwner {
  readonly uid: number;
  readonly gid: number;
}

/** The owner of `path` itself (a link is given, not what it points to). */
export function giveToSync(path: string, owner: FileOwner): void {
  lchownSync(path, owner.uid, owner.gid);
}

export async function giveTo(path: string, owner: FileOwner): Promise<void> {
  await lchown(path, owner.uid, owner.gid);
}

/** chown -R without following links: the links inside are left as they are. */
export function giveTreeToSync(dir: string, owner: FileOwner): void {
  giveToSync(dir, owner);
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) continue;
    giveToSync(p, owner);
    if (st.isDirectory()) giveTreeToSync(p, owner);
  }
}

function notALink(path: string, isLink: boolean): void {
  if (isLink) throw Object.assign(new Error(`ELOOP: ${path} is a symbolic link, not changed`), { code: 'ELOOP', path });
}

/** chmod of a file or directory; a link there is refused (ELOOP), never followed. */
export function setModeSync(path: string, mode: number): void {
  notALink(path, lstatSync(path).isSymbolicLink());
  chmodSync(path, mode);
}

export async function setMode(path: string, mode: number): Promise<void> {
  notALink(path, (await lstat(path)).isSymbolicLink());
  await chmod(path, mode);
}

/** Access and modification time of a restored file or directory (seconds since the epoch); a link's own. */
export function setTimesSync(path: string, seconds: number): void {
  lutimesSync(path, seconds, seconds);
}
