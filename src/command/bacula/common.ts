/**
 * What every mode's job under `pgbacula backend` shares: the where= restore to plain files, and
 * the release of child processes and staging on every exit path.
 */
import type { JobContext } from '../../bacula/conversation.js';
import { FileRestoreTarget } from '../../restore/file-target.js';
import { stopAllTools } from '../../server/tool-process.js';
import type { RestoreTarget } from '../../item/restore-target.js';
import { removeAllScratchNow } from '../../pipeline/scratch-dirs.js';

/**
 * A restore with where= (or regexwhere=) writes the stored files as they are, under it: for a
 * look at them or a restore by hand. Undefined when the restore goes to its real destination.
 */
export function filesRestoreTarget(ctx: JobContext, what: string, untouched: string): RestoreTarget | undefined {
  const job = ctx.job;
  const toFiles = (job.regexWhere !== undefined && job.regexWhere !== '') || (job.where !== undefined && job.where !== '' && job.where !== '/');
  if (!toFiles) return undefined;
  const where = job.regexWhere ? `regexwhere ${job.regexWhere}` : job.where!;
  ctx.log.info(`restoring the ${what} under ${where} (where= set: ${untouched})`);
  return new FileRestoreTarget({ where, replace: job.replace ?? 'a' }, ctx.log);
}

/** Every child process and staging directory of the job goes, on every exit path. */
export async function releaseJobResources(): Promise<void> {
  await stopAllTools();
  removeAllScratchNow();
}
