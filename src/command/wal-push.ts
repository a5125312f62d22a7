import { resolve } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { pushWalFile } from '../archive/push.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './result.js';
import { pushingDataDirectory, walTarget } from './wal-target.js';

/**
 * `pgbacula wal-push [--repo DIR] %p` — archive_command. Silent on success (its output lands
 * in the server log); exit 0 only once the file is durable in the archive, or when the same
 * bytes were already there.
 */
export async function runWalPushCommand(ctx: CommandContext): Promise<CommandResult> {
  const [path, ...extra] = ctx.argv.positional;
  if (path === undefined || extra.length > 0) {
    throw new PgbaculaError('USAGE', 'wal-push takes exactly one file: the %p of archive_command', {
      hint: "Set archive_command = 'pgbacula wal-push --repo /backup/pg %p' (or --wal-spool DIR).",
    });
  }
  const target = await walTarget(ctx, true);
  const dataDir = await pushingDataDirectory(ctx);
  const result = await pushWalFile({
    root: target.root,
    sourcePath: resolve(process.cwd(), path),
    expectedSystemId: dataDir.systemId,
    pgdata: dataDir.pgdata,
    singleSystem: target.singleSystem,
    warn: (t) => ctx.log.warning(t),
  });
  for (const h of result.historiesArchived) ctx.log.info(`archived ${h} from ${dataDir.pgdata}/pg_wal first (timeline history before the WAL of its timeline)`);
  return ok({ ...result, archive: target.root }, '');
}
