/**
 * Connections to the server a restore has just started (phases 4–6): resetting recovery
 * settings, topology statements, SELECT 1.
 *
 * The restored cluster brings its own pg_hba.conf. Debian's (and many sites') lets local
 * connections in by `peer` only: the OS user must be the database user. A restore run by root
 * (as bacula-fd runs it) would be turned away although recovery went well. So, when running as
 * root, the connection is opened with the effective user and group of the data directory's owner
 * (the user the server runs as, and by initdb's default the name of its bootstrap superuser), and
 * as the role of that name first, then `postgres`. `peer` sees the owner; `trust` lets either in;
 * a password rule takes PGPASSWORD or the pgpass file as node-postgres finds them.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Owner } from './target.js';

export interface RestoredServerAddress {
  readonly socketDir: string | undefined;
  readonly port: number | undefined;
  /** Owner of the restored data directory: the user the server runs as. */
  readonly owner: Owner;
  readonly database?: string;
}

/** The login name of a uid from /etc/passwd, or undefined. */
export function loginNameOf(uid: number, passwd?: string): string | undefined {
  let text = passwd;
  if (text === undefined) {
    try {
      text = readFileSync('/etc/passwd', 'utf8');
    } catch {
      return undefined;
    }
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4 && f[2] === String(uid) && f[0]) return f[0];
  }
  return undefined;
}

/** Roles to try, in order: the owner's login name, then postgres. */
export function rolesToTry(ownerName: string | undefined): string[] {
  return [...new Set([...(ownerName ? [ownerName] : []), 'postgres'])];
}

/**
 * Runs `open` with the effective uid/gid of `owner` when this process is root and the owner is
 * not. The socket's peer credentials are those of the connect(2) call, which node-postgres makes
 * synchronously inside `connect()` for a Unix socket: the identity is switched back before any
 * other callback of this process can run.
 */
function asOwner<T>(owner: Owner, open: () => T): T {
  const root = process.geteuid?.() === 0;
  if (!root || owner.uid === 0 || !process.seteuid || !process.setegid) return open();
  process.setegid(owner.gid);
  process.seteuid(owner.uid);
  try {
    return open();
  } finally {
    process.seteuid(0);
    process.setegid(0);
  }
}

/** SQLSTATEs that say "not this role" (so the next one is tried): invalid authorization, bad password. */
const TRY_NEXT_ROLE = new Set(['28000', '28P01']);

/** A connected client to the restored server; the last failure when no role gets in. */
export async function connectRestored(a: RestoredServerAddress): Promise<pg.Client> {
  const roles = rolesToTry(loginNameOf(a.owner.uid));
  const failures: string[] = [];
  for (const user of roles) {
    const client = new pg.Client({ host: a.socketDir ?? '127.0.0.1', port: a.port ?? 5432, user, database: a.database ?? 'postgres' });
    client.on('error', () => undefined);
    try {
      await asOwner(a.owner, () => client.connect());
      return client;
    } catch (e) {
      await client.end().catch(() => undefined);
      failures.push(`as ${user}: ${(e as Error).message}`);
      if (!TRY_NEXT_ROLE.has((e as { code?: string }).code ?? '')) break;
    }
  }
  throw new Error(`${failures.join('; ')} (connecting over ${a.socketDir ? `the socket in ${a.socketDir}` : 'TCP'}${a.owner.uid !== process.geteuid?.() ? ` as OS user ${loginNameOf(a.owner.uid) ?? a.owner.uid}` : ''}; the restored pg_hba.conf must let the data directory's owner in locally)`);
}
