import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { asPgbaculaError, EXIT, PgbaculaError } from '../errors.js';
import { fetchWalFile, type FetchResult } from '../archive/fetch.js';
import { listArchivedSystems } from '../archive/listing.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './result.js';
import { pushingDataDirectory, walTarget } from './wal-target.js';

/**
 * `pgbacula wal-fetch [--repo DIR] [--staged DIR] %f %p` — restore_command. Three answers, as
 * PostgreSQL reads them:
 * - exit 0: the complete file is at %p;
 * - exit 1, without a word: it is not archived (the server asks for history files and segments
 *   that do not exist: that is how it finds the end of WAL);
 * - exit 200 (EXIT.RECOVERY_FATAL) with the reason: a file that is there could not be served —
 *   damaged, foreign, unreadable — or restore_command is wrong. Any status above 125 makes the
 *   server stop recovery with FATAL; exit 1 there would make it promote without that WAL.
 */
export async function runWalFetchCommand(ctx: CommandContext): Promise<CommandResult> {
  try {
    return await walFetch(ctx);
  } catch (e) {
    const err = asPgbaculaError(e);
    throw new PgbaculaError(err.code, err.message, { hint: err.hint, cause: err, exitCode: EXIT.RECOVERY_FATAL });
  }
}

async function walFetch(ctx: CommandContext): Promise<CommandResult> {
  const [fileName, dest, ...extra] = ctx.argv.positional;
  if (fileName === undefined || dest === undefined || extra.length > 0) {
    throw new PgbaculaError('USAGE', 'wal-fetch takes two arguments: the %f and %p of restore_command', {
      hint: "Set restore_command = 'pgbacula wal-fetch --repo /backup/pg %f %p' (or --wal-spool DIR).",
    });
  }
  const stagedFlag = ctx.argv.globals.staged;
  // A restore to the end of WAL replays the newest .partial (the receiver's open segment) too.
  const partialAtEnd = ctx.argv.globals.latest === true;
  const stagedDir = typeof stagedFlag === 'string' ? resolve(process.cwd(), stagedFlag) : undefined;
  // `--staged DIR` alone: a restore without a WAL archive serves its backup's own WAL only (the
  // repository may not even be readable by the server's OS user that runs restore_command).
  const archiveNamed = ctx.argv.globals.repo !== undefined || ctx.argv.params.some((p) => p.key.replace(/-/g, '_') === 'wal_spool');
  if (stagedDir !== undefined && !archiveNamed) {
    const dataDir = await pushingDataDirectory(ctx);
    if (dataDir.systemId === undefined) {
      throw new PgbaculaError('USAGE', `cannot tell which database system ${fileName} is for: run wal-fetch --staged from the data directory being recovered, or name it with --pgdata`);
    }
    return answer(ctx, fileName, await fetchWalFile({ root: stagedDir, systemId: dataDir.systemId, fileName, destPath: resolve(process.cwd(), dest), stagedDir, stagedOnly: true }));
  }
  const target = await walTarget(ctx, false);
  // With the backup's own WAL at hand, an archive that holds nothing yet is not an error.
  const archiveExists = existsSync(target.root);
  if (!archiveExists && stagedDir === undefined) {
    throw new PgbaculaError('REPOSITORY', `no WAL archive at ${target.root} (${target.describe})`, {
      hint: 'Check the --repo / --wal-spool of restore_command; WAL is archived there by wal-push or wal-receive.',
    });
  }
  const dataDir = await pushingDataDirectory(ctx);
  let systemId = dataDir.systemId;
  if (systemId === undefined) {
    const systems = archiveExists ? await listArchivedSystems(target.root) : [];
    if (systems.length !== 1) {
      throw new PgbaculaError('USAGE', `cannot tell which database system to fetch ${fileName} for: ${target.root} holds ${systems.length === 0 ? 'none' : systems.join(', ')}`, {
        hint: 'Run wal-fetch from the data directory being recovered (restore_command does), or name it with --pgdata.',
      });
    }
    systemId = systems[0]!;
  } else if (!existsSync(resolve(target.root, systemId)) && stagedDir === undefined) {
    throw new PgbaculaError('REPOSITORY', `the WAL archive ${target.root} holds no WAL of database system ${systemId}`, {
      hint: 'The data directory being recovered belongs to another cluster than the archive; check --repo / --wal-spool.',
    });
  }
  const r = await fetchWalFile({ root: target.root, systemId, fileName, destPath: resolve(process.cwd(), dest), partialAtEnd, ...(stagedDir === undefined ? {} : { stagedDir }) });
  return answer(ctx, fileName, r);
}

function answer(ctx: CommandContext, fileName: string, r: FetchResult): CommandResult {
  if (r.status === 'absent') {
    if (r.partial !== undefined) {
      ctx.log.info(`${fileName} is not archived complete; an incomplete copy exists (${r.partial}) and is never served as a complete segment — to recover the WAL it holds, copy it by hand into pg_wal/${fileName}`);
    }
    return ok({ status: 'absent', fileName, partial: r.partial ?? null }, '', EXIT.FAILURE);
  }
  // In the server's log: what the restore reports as the end of the WAL it replayed.
  if (r.fromPartial) ctx.log.info(`${fileName}: served the incomplete copy ${r.source} as the end of WAL (recovery replays up to its last valid record)`);
  return ok({ ...r, fileName }, '');
}
