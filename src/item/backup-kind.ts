/**
 * What a backup job is asked to store, in words no sink owns: everything, the changes since the
 * previous backup, or the changes since the last full one. The sink that schedules jobs (Bacula's
 * levels, src/command/bacula) maps its own terms onto these; a mode reads only these.
 */
export type BackupKind = 'full' | 'incremental' | 'differential';

/** "Full", "Incremental", "Differential": how job-log lines name a kind. */
export function backupKindName(kind: BackupKind): string {
  return kind === 'incremental' ? 'Incremental' : kind === 'differential' ? 'Differential' : 'Full';
}
