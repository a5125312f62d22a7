/**
 * Which earlier backup a block-level backup counts its changed blocks from (docs/block-incremental.md):
 * an incremental against the newest complete backup of the system, a differential against the
 * newest full one. Anything that makes that reference unusable makes the backup a full one, and
 * the reason is kept for the job log and the manifest. Pure: manifests in, a decision out.
 */
import type { BackupManifest } from '../../format/backup-manifest.js';
import { ChainError, chainOf } from '../../repo/chain.js';

export type BlockBackupType = 'full' | 'incr' | 'diff';

export type ReferenceChoice =
  | { readonly kind: 'reference'; readonly reference: BackupManifest; readonly level: 'incremental' | 'differential' }
  | { readonly kind: 'full'; readonly because?: string };

/** Modes whose backups can serve as a reference: whole physical base backups and block-level ones. */
const PHYSICAL = new Set(['pitr', 'pitr_block']);

export interface ReferenceRequest {
  readonly type: BlockBackupType;
  readonly systemId: string;
  readonly timeline: number;
  readonly blockSize: number;
  /** Newest usable reference age (pitr_block_summary_days). */
  readonly maxAgeDays: number;
  readonly now: Date;
}

/** Whether a backup may be the reference: the newest one of these is taken. */
export function isReferenceCandidate(m: BackupManifest, r: Pick<ReferenceRequest, 'type' | 'systemId'>): boolean {
  return PHYSICAL.has(m.mode) && m.systemIdentifier === r.systemId && (r.type !== 'diff' || m.level === 'full');
}

export function chooseReference(complete: readonly BackupManifest[], r: ReferenceRequest): ReferenceChoice {
  if (r.type === 'full') return { kind: 'full' };
  const asked = r.type === 'incr' ? 'an incremental' : 'a differential';
  const reference = complete.filter((m) => isReferenceCandidate(m, r)).at(-1);
  if (!reference) {
    return { kind: 'full', because: `${asked} backup needs an earlier ${r.type === 'incr' ? '' : 'full '}backup of database system ${r.systemId} in the repository, and there is none` };
  }
  return checkReference(reference, complete, r);
}

/**
 * Whether a reference chosen elsewhere (Bacula names it by its job) can be counted from: same
 * system and timeline, not too old, its own chain complete in `complete`.
 */
export function checkReference(reference: BackupManifest, complete: readonly BackupManifest[], r: ReferenceRequest): ReferenceChoice {
  if (r.type === 'full') return { kind: 'full' };
  if (!PHYSICAL.has(reference.mode) || reference.systemIdentifier !== r.systemId) {
    return { kind: 'full', because: `the reference ${reference.backupId} is a ${reference.mode} backup of database system ${reference.systemIdentifier}, the server is database system ${r.systemId}` };
  }
  if (r.type === 'diff' && reference.level !== 'full') return { kind: 'full', because: `the reference ${reference.backupId} of a differential backup is not a full backup` };
  if (r.blockSize !== 8192) return { kind: 'full', because: `block-level backups need 8 kB blocks; this cluster has ${r.blockSize}-byte blocks` };
  if (reference.stopTimeline !== r.timeline || reference.startTimeline !== r.timeline) {
    return { kind: 'full', because: `the server is on timeline ${r.timeline} and the reference ${reference.backupId} on timeline ${reference.stopTimeline}: after a promotion or a point-in-time restore, blocks are counted again from a new full backup` };
  }
  const ageDays = (r.now.getTime() - Date.parse(reference.startTime)) / 86_400_000;
  if (ageDays > r.maxAgeDays) {
    return { kind: 'full', because: `the reference ${reference.backupId} is ${Math.floor(ageDays)} days old, more than pitr_block_summary_days=${r.maxAgeDays}` };
  }
  const broken = chainProblem(reference, complete);
  if (broken) return { kind: 'full', because: `the reference ${reference.backupId} cannot be restored: ${broken}` };
  return { kind: 'reference', reference, level: r.type === 'incr' ? 'incremental' : 'differential' };
}

function chainProblem(reference: BackupManifest, complete: readonly BackupManifest[]): string | undefined {
  try {
    chainOf(reference, complete);
    return undefined;
  } catch (e) {
    if (e instanceof ChainError) return e.message;
    throw e;
  }
}
