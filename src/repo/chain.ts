/**
 * The chain of a block-level backup (docs/block-incremental.md): the backup, its reference, that
 * one's reference, … back to a full backup. Every link is checked against what the later backup
 * recorded of its reference (start LSN, timeline, system): a backup replaced under the same id
 * breaks the chain instead of feeding a restore the wrong blocks.
 */
import type { BackupManifest } from '../format/backup-manifest.js';

/**
 * The chain of a backup, full first: each backup's reference, back to a full one. Throws with
 * what is missing; `complete` holds the complete backups of the repository.
 */
export function chainOf(newest: BackupManifest, complete: readonly BackupManifest[]): BackupManifest[] {
  const byId = new Map(complete.map((m) => [m.backupId, m]));
  const chain: BackupManifest[] = [newest];
  for (let at = newest; at.reference !== undefined; ) {
    const ref = at.reference;
    const next = byId.get(ref.backupId);
    if (!next) throw new ChainError(`backup ${at.backupId} was taken against ${ref.backupId}, which is not a complete backup here`);
    if (next.systemIdentifier !== newest.systemIdentifier) throw new ChainError(`backup ${next.backupId} belongs to database system ${next.systemIdentifier}, ${newest.backupId} to ${newest.systemIdentifier}`);
    if (next.startLsn !== ref.startLsn || next.stopTimeline !== ref.timeline) {
      throw new ChainError(`backup ${at.backupId} was taken against ${ref.backupId} starting at ${ref.startLsn} on timeline ${ref.timeline}, but that backup starts at ${next.startLsn} on timeline ${next.stopTimeline}`);
    }
    if (chain.includes(next) || chain.length > 10_000) throw new ChainError(`the references of backup ${newest.backupId} go round in a circle`);
    chain.push(next);
    at = next;
  }
  return chain.reverse();
}

export class ChainError extends Error {}
