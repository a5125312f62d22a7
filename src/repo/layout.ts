import { join } from 'node:path';

/**
 * On-disk layout of a standalone repository (docs/repository-format.md):
 *
 *   REPO/pgbacula-repo.json           format marker
 *   REPO/lock                         pid of the process writing to the repository
 *   REPO/backups/<id>/files/<path>    one stored file per backed-up file (".lz4": a standard LZ4 frame)
 *   REPO/backups/<id>/backup.in-progress  while the backup is written (removed after the manifest)
 *   REPO/backups/<id>/manifest.json   written last: a backup without it is incomplete
 */
export const REPO_MARKER = 'pgbacula-repo.json';
export const REPO_FORMAT = 1;

export function backupsDir(repo: string): string {
  return join(repo, 'backups');
}

export function backupDir(repo: string, id: string): string {
  return join(repo, 'backups', id);
}

export function storedFilePath(repo: string, id: string, itemPath: string, encoding: 'raw' | 'lz4'): string {
  return join(repo, 'backups', id, 'files', encoding === 'lz4' ? `${itemPath}.lz4` : itemPath);
}

/** Present while a backup is written; with no manifest beside it, the backup was interrupted. */
export function inProgressPath(repo: string, id: string): string {
  return join(repo, 'backups', id, 'backup.in-progress');
}

export function manifestPath(repo: string, id: string): string {
  return join(repo, 'backups', id, 'manifest.json');
}

/** Backup ids sort by time: 20261126-120000F (F full, I incremental, D differential). */
export function newBackupId(now: Date, level: 'full' | 'incremental' | 'differential'): string {
  const iso = now.toISOString();
  const stamp = `${iso.slice(0, 10).replace(/-/g, '')}-${iso.slice(11, 19).replace(/:/g, '')}`;
  return `${stamp}${level === 'full' ? 'F' : level === 'incremental' ? 'I' : 'D'}`;
}

export const BACKUP_ID = /^\d{8}-\d{6}[FID](?:-\d+)?$/;
