import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { getString } from '../config/params.js';
import { PgbaculaError } from '../errors.js';
import { REPO_MARKER } from '../repo/layout.js';
import { dataDirectorySystemId } from '../archive/data-directory.js';
import { walArchiveRoot } from '../archive/layout.js';
import type { CommandContext } from './context.js';

/** Where wal-push / wal-fetch / wal-receive read and write WAL (layout: src/archive/layout.ts). */
export interface WalTarget {
  /** ROOT: `<repo>/wal`, or the spool directory. */
  readonly root: string;
  readonly repo: string | undefined;
  /** A repository holds the WAL of one system only. */
  readonly singleSystem: boolean;
  /** For messages: `repository /backup/pg` or `spool /var/lib/pgbacula/wal-spool`. */
  readonly describe: string;
}

/**
 * `--repo DIR` → DIR/wal (creating the repository when `create` and it does not exist yet, so
 * an archive_command may run before the first backup); otherwise wal_spool.
 */
export async function walTarget(ctx: CommandContext, create: boolean): Promise<WalTarget> {
  const repo = ctx.argv.globals.repo;
  if (typeof repo === 'string') {
    // Loaded only the first time: wal-push runs once per segment, every import costs start-up time.
    if (create && !existsSync(join(repo, REPO_MARKER))) await (await import('../repo/catalog.js')).initRepository(repo);
    return { root: walArchiveRoot({ repo }), repo, singleSystem: true, describe: `repository ${repo}` };
  }
  const spool = getString(ctx.params, 'wal_spool')!;
  return { root: walArchiveRoot({ spool }), repo: undefined, singleSystem: false, describe: `spool ${spool}` };
}

/**
 * The data directory whose pg_control names the system: --pgdata, else the working directory
 * when it is one (archive_command and restore_command run in the data directory).
 */
export async function pushingDataDirectory(ctx: CommandContext): Promise<{ pgdata: string | undefined; systemId: string | undefined }> {
  const flag = ctx.argv.globals.pgdata;
  if (typeof flag === 'string') {
    const systemId = await dataDirectorySystemId(flag);
    if (systemId === undefined) {
      throw new PgbaculaError('PARAM_INVALID', `--pgdata ${flag} is not a PostgreSQL data directory (no global/pg_control)`, { hint: 'Name the data directory of the server whose WAL this is.' });
    }
    return { pgdata: flag, systemId };
  }
  const cwd = process.cwd();
  const systemId = await dataDirectorySystemId(cwd).catch(() => undefined);
  return systemId === undefined ? { pgdata: undefined, systemId: undefined } : { pgdata: cwd, systemId };
}
