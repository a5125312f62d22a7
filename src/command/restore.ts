import { PgbaculaError } from '../errors.js';
import { formatBytes } from '../item/job-log.js';
import { restoreFromRepository } from '../restore/repo-restore.js';
import { requireRepo } from './backup.js';
import { restoreOptionsOf } from './restore-settings.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './result.js';

/** `pgbacula restore --repo DIR --pgdata-dir DIR`: the six phases, to consistency or a point in time. */
export async function runRestoreCommand(ctx: CommandContext): Promise<CommandResult> {
  const repo = requireRepo(ctx);
  const options = restoreOptionsOf(ctx.params);
  if (options.walFromSpool) {
    // A repository's WAL archive is the archive a standalone restore replays; it is not a
    // scratch copy the spool's WAL could be added to.
    throw new PgbaculaError('PARAM_INVALID', 'wal_from_spool applies to restores through Bacula: a standalone restore replays the WAL archive of its repository', {
      hint: 'Feed the repository itself (wal-receive --repo DIR, archive_command = pgbacula wal-push --repo DIR %p), or restore through Bacula with the Plugin Option wal_from_spool=yes.',
    });
  }
  const explicit = typeof ctx.argv.globals.backup === 'string' ? ctx.argv.globals.backup : undefined;
  const s = await restoreFromRepository({
    repo,
    options,
    log: ctx.log,
    progressIntervalMs: ctx.progressIntervalMs,
    ...(explicit !== undefined ? { backupId: explicit } : {}),
  });
  return ok(
    { backupId: s.manifest.backupId, ...withoutManifest(s) },
    `restored backup ${s.manifest.backupId} (${formatBytes(s.bytes)}) into ${s.pgdataDir}${s.stoppedAt ? `; ${s.stoppedAt}` : ''}; PostgreSQL ${s.state === 'shut down' ? 'shut down at the target' : `is ${s.state} on port ${s.port} (socket ${s.socketDir ?? 'none'})`}`,
  );
}

function withoutManifest<T extends { manifest: unknown }>(s: T): Omit<T, 'manifest'> {
  const { manifest: _m, ...rest } = s;
  return rest;
}
