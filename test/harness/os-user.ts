import { execFileSync } from 'node:child_process';

export interface OsUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * PostgreSQL refuses to run as root: when we are root, servers run as the `postgres` OS user
 * (scripts/setup.sh creates it). When we are not root, they run as ourselves.
 */
export function serverUser(): OsUser {
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) return { name: 'self', uid, gid: process.getgid?.() ?? 0 };
  let out: string;
  try {
    out = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim() + ' ' + execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('the postgres OS user does not exist; run ./scripts/setup.sh (it creates it)');
  }
  const [u, g] = out.split(' ').map(Number);
  return { name: 'postgres', uid: u!, gid: g! };
}
