import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { ManifestError, parseManifest, type BackupManifest } from '../format/backup-manifest.js';
import { writeFileAtomic } from '../os/durable.js';
import { BACKUP_ID, backupDir, backupsDir, manifestPath, REPO_FORMAT, REPO_MARKER } from './layout.js';

export type BackupState =
  | { readonly id: string; readonly state: 'complete'; readonly manifest: BackupManifest; readonly storedBytes: number }
  | { readonly id: string; readonly state: 'incomplete'; readonly reason: string };

/** Create the repository if needed; refuse a directory that holds something else. */
export async function initRepository(repo: string): Promise<void> {
  if (!repo.startsWith('/')) {
    throw new PgbaculaError('PARAM_INVALID', `repository path ${repo} is not absolute`, { hint: 'Give --repo an absolute path.' });
  }
  await mkdir(backupsDir(repo), { recursive: true, mode: 0o750 });
  const marker = join(repo, REPO_MARKER);
  if (!existsSync(marker)) {
    // wal/ may come first: wal-push can archive into a repository before its first backup.
    const others = (await readdir(repo)).filter((n) => n !== 'backups' && n !== 'lock' && n !== 'wal');
    if (others.length > 0) {
      throw new PgbaculaError('REPOSITORY', `${repo} is not a pgbacula repository and is not empty (${others.slice(0, 3).join(', ')}…)`, {
        hint: 'Use an empty directory or an existing repository.',
      });
    }
    await writeFileAtomic(marker, JSON.stringify({ format: REPO_FORMAT, created: new Date().toISOString() }) + '\n');
  }
}

export async function assertRepository(repo: string): Promise<void> {
  const marker = join(repo, REPO_MARKER);
  let text: string;
  try {
    text = await readFile(marker, 'utf8');
  } catch {
    throw new PgbaculaError('REPOSITORY', `${repo} is not a pgbacula repository (no ${REPO_MARKER})`, {
      hint: 'Check --repo; a repository is created by the first pgbacula backup --repo DIR.',
    });
  }
  const format = (JSON.parse(text) as { format?: number }).format;
  if (format !== REPO_FORMAT) {
    throw new PgbaculaError('REPOSITORY', `repository ${repo} has format ${format}; this pgbacula reads format ${REPO_FORMAT}`);
  }
}

async function sizeOfTree(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}

/** Every backup directory with its state. Only a sealed, parseable manifest makes "complete". */
export async function listBackups(repo: string, withSizes = false): Promise<BackupState[]> {
  const ids = (await readdir(backupsDir(repo)).catch(() => [] as string[])).filter((n) => BACKUP_ID.test(n)).sort();
  const out: BackupState[] = [];
  for (const id of ids) {
    let text: string;
    try {
      text = await readFile(manifestPath(repo, id), 'utf8');
    } catch {
      out.push({ id, state: 'incomplete', reason: 'no manifest (interrupted or still running)' });
      continue;
    }
    try {
      const manifest = parseManifest(text);
      out.push({ id, state: 'complete', manifest, storedBytes: withSizes ? await sizeOfTree(backupDir(repo, id)) : 0 });
    } catch (e) {
      out.push({ id, state: 'incomplete', reason: e instanceof ManifestError ? e.message : String(e) });
    }
  }
  return out;
}

export async function loadBackup(repo: string, id?: string): Promise<BackupManifest> {
  const all = await listBackups(repo);
  const complete = all.filter((b): b is Extract<BackupState, { state: 'complete' }> => b.state === 'complete');
  if (id === undefined) {
    const last = complete.at(-1);
    if (!last) throw new PgbaculaError('REPOSITORY', `repository ${repo} holds no complete backup`, { hint: 'Run pgbacula backup first.' });
    return last.manifest;
  }
  const found = all.find((b) => b.id === id);
  if (!found) throw new PgbaculaError('REPOSITORY', `no backup ${id} in repository ${repo}`, { hint: 'pgbacula info --repo lists them.' });
  if (found.state !== 'complete') throw new PgbaculaError('REPOSITORY', `backup ${id} is incomplete: ${found.reason}`, { hint: 'Use a complete backup.' });
  return found.manifest;
}

/** Remove incomplete backups (call with the repository lock held). Returns the ids removed. */
export async function removeIncompleteBackups(repo: string): Promise<string[]> {
  const removed: string[] = [];
  for (const b of await listBackups(repo)) {
    if (b.state === 'incomplete') {
      await rm(backupDir(repo, b.id), { recursive: true, force: true });
      removed.push(b.id);
    }
  }
  return removed;
}
