import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { EXIT, PgbaculaError } from '../errors.js';
import { fetchWalFile, listArchivedSystems } from '../wal/spool.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './output.js';
import { pushingDataDirectory, walTarget } from './wal-target.js';

/**
 * `pgbacula wal-fetch [--repo DIR] %f %p` — restore_command. Exit 0 only when the complete
 * file is at %p; exit 1 without a word when it is simply not archived (the server asks for
 * history files and segments that do not exist: that is how it finds the end); a damaged or
 * foreign archived file is an error with its reason.
 */
export async function runWalFetchCommand(ctx: CommandContext): Promise<CommandResult> {
  const [fileName, dest, ...extra] = ctx.argv.positional;
  if (fileName === undefined || dest === undefined || extra.length > 0) {
    throw new PgbaculaError('USAGE', 'wal-fetch takes two arguments: the %f and %p of restore_command', {
      hint: "Set restore_command = 'pgbacula wal-fetch --repo /backup/pg %f %p' (or --wal-spool DIR).",
    });
  }
  const target = await walTarget(ctx, false);
  if (!existsSync(target.root)) {
    throw new PgbaculaError('REPOSITORY', `no WAL archive at ${target.root} (${target.describe})`, {
      hint: 'Check the --repo / --wal-spool of restore_command; WAL is archived there by wal-push or wal-receive.',
    });
  }
  const dataDir = await pushingDataDirectory(ctx);
  let systemId = dataDir.systemId;
  if (systemId === undefined) {
    const systems = await listArchivedSystems(target.root);
    if (systems.length !== 1) {
      throw new PgbaculaError('USAGE', `cannot tell which database system to fetch ${fileName} for: ${target.root} holds ${systems.length === 0 ? 'none' : systems.join(', ')}`, {
        hint: 'Run wal-fetch from the data directory being recovered (restore_command does), or name it with --pgdata.',
      });
    }
    systemId = systems[0]!;
  } else if (!existsSync(resolve(target.root, systemId))) {
    throw new PgbaculaError('REPOSITORY', `the WAL archive ${target.root} holds no WAL of database system ${systemId}`, {
      hint: 'The data directory being recovered belongs to another cluster than the archive; check --repo / --wal-spool.',
    });
  }
  const r = await fetchWalFile({ root: target.root, systemId, fileName, destPath: resolve(process.cwd(), dest) });
  if (r.status === 'absent') {
    if (r.partial !== undefined) {
      ctx.log.info(`${fileName} is not archived complete; an incomplete copy exists (${r.partial}) and is never served as a complete segment — to recover the WAL it holds, copy it by hand into pg_wal/${fileName}`);
    }
    return ok({ status: 'absent', fileName, partial: r.partial ?? null }, '', EXIT.FAILURE);
  }
  return ok({ ...r, fileName }, '');
}
