/**
 * Bacula's levels in the words a mode reads (src/item/backup-kind.ts): the FD sends F, I or D
 * (15.0.3 forwards no other level; none at all for an estimate of a Full).
 */
import type { JobLevelLetter } from '../../bacula/job-info.js';
import type { BackupKind } from '../../item/backup-kind.js';

export function backupKindOf(level: JobLevelLetter | undefined): BackupKind {
  return level === 'I' ? 'incremental' : level === 'D' ? 'differential' : 'full';
}
