import { join } from 'node:path';
import type { ManifestFile } from '../format/backup-manifest.js';

/**
 * On-disk layout of a standalone repository (docs/repository-format.md):
 *
 *   REPO/pgbacula-repo.json           format marker
 *   REPO/lock                         pid of the process writing to the repository
 *   REPO/backups/<id>/files/<path>    one stored file per backed-up file (".lz4": a standard LZ4 frame)
 *   REPO/backups/<id>/bundles/<n>     small files of the cluster stored one after another
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

export function bundlesDir(repo: string, id: string): string {
  return join(repo, 'backups', id, 'bundles');
}

export function bundlePath(repo: string, id: string, bundle: number): string {
  return join(repo, 'backups', id, 'bundles', String(bundle));
}

/** Where the stored bytes of a manifest entry are: its own file, or a region of a bundle. */
export interface StoredLocation {
  readonly storedPath: string;
  readonly region?: { readonly offset: number; readonly length: number };
}

export function storedLocation(repo: string, id: string, f: ManifestFile): StoredLocation {
  if (f.bundle) return { storedPath: bundlePath(repo, id, f.bundle.id), region: { offset: f.bundle.offset, length: f.bundle.length } };
  return { storedPath: storedFilePath(repo, id, f.path, f.stored ?? 'raw') };
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
