import { realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { ManifestError, parseManifest, type BackupManifest } from '../format/backup-manifest.js';
import { pidAlive } from '../os/pid-alive.js';
import { posixStorage } from '../storage/posix.js';
import { errorCode, temporaryNameOwner, type Storage } from '../storage/storage.js';
import { BACKUP_ID, backupDir, backupsDir, inProgressPath, manifestPath, REPO_FORMAT, REPO_MARKER } from './layout.js';

export type BackupState =
  | { readonly id: string; readonly state: 'complete'; readonly manifest: BackupManifest; readonly storedBytes: number }
  /** Left by a pgbacula run that was interrupted (its marker, no manifest): the next backup removes it. */
  | { readonly id: string; readonly state: 'incomplete'; readonly reason: string }
  /** A backup being written by a live process. */
  | { readonly id: string; readonly state: 'running'; readonly reason: string }
  /** Anything else: a manifest that does not parse or check, or a directory pgbacula did not leave. Kept and reported. */
  | { readonly id: string; readonly state: 'damaged'; readonly reason: string };

/** The marker's temporary names: Storage's (`.pgbacula-repo.json.tmp-…`) and older versions' (`pgbacula-repo.json.tmp-…`). */
const isMarkerTemporary = (n: string): boolean => n.startsWith(`.${REPO_MARKER}.tmp-`) || n.startsWith(`${REPO_MARKER}.tmp-`);

/**
 * Create the repository if needed; refuse a directory that holds something else. Safe when
 * several processes do it at once (four archivers pushing their first segments): the marker is
 * published with link(2), which never replaces, and a marker's temporary file left by a process
 * that died (a full disk) neither blocks the repository nor stays.
 */
export async function initRepository(repo: string, storage: Storage = posixStorage): Promise<void> {
  if (!repo.startsWith('/')) {
    throw new PgbaculaError('PARAM_INVALID', `repository path ${repo} is not absolute`, { hint: 'Give --repo an absolute path.' });
  }
  await storage.makeDirs(backupsDir(repo), { mode: 0o750 }).catch((e: unknown) => {
    throw repoIoError(e, `cannot create the repository ${repo}`);
  });
  const marker = join(repo, REPO_MARKER);
  if (await storage.exists(marker).catch(() => false)) return;
  // wal/ may come first: wal-push can archive into a repository before its first backup.
  const entries = await storage.list(repo);
  // The marker itself may be there now: another process published it since the check above.
  const others = entries.filter((n) => n !== REPO_MARKER && n !== 'backups' && n !== 'lock' && n !== 'wal' && !isMarkerTemporary(n));
  if (others.length > 0) {
    throw new PgbaculaError('REPOSITORY', `${repo} is not a pgbacula repository and is not empty (${others.slice(0, 3).join(', ')}…)`, {
      hint: 'Use an empty directory or an existing repository.',
    });
  }
  for (const n of entries) {
    const pid = temporaryNameOwner(n);
    if (isMarkerTemporary(n) && pid !== undefined && pid !== process.pid && !pidAlive(pid)) await storage.removeFile(join(repo, n)).catch(() => undefined);
  }
  try {
    const content = JSON.stringify({ format: REPO_FORMAT, created: new Date().toISOString() }) + '\n';
    // Not published: another process made it first (same content); its directory fsync may be pending.
    if (!(await storage.publishIfAbsent(marker, content, { mode: 0o640 }))) await storage.syncDir(repo);
  } catch (e) {
    throw repoIoError(e, `cannot create the repository marker ${marker}`);
  }
}

function repoIoError(e: unknown, what: string): PgbaculaError {
  if (e instanceof PgbaculaError) return e;
  const err = e as NodeJS.ErrnoException;
  const hint =
    err.code === 'ENOSPC'
      ? 'The file system of the repository is full: free space there and run the command again.'
      : err.code === 'EACCES' || err.code === 'EPERM'
        ? 'The repository must be writable by the OS user that runs pgbacula (archive_command runs as the server\'s user, usually postgres).'
        : 'Check the repository directory: permissions, free space, file system errors.';
  return new PgbaculaError('IO', `${what}: ${err.message ?? String(e)}`, { hint, cause: e });
}

export async function assertRepository(repo: string, storage: Storage = posixStorage): Promise<void> {
  const marker = join(repo, REPO_MARKER);
  let text: string;
  try {
    text = (await storage.readFile(marker)).toString('utf8');
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

async function sizeOfTree(storage: Storage, dir: string): Promise<number> {
  let total = 0;
  for (const name of await storage.list(dir)) {
    const path = join(dir, name);
    const info = await storage.stat(path);
    if (info?.kind === 'file') total += info.size;
    else if (info?.kind === 'directory') total += await sizeOfTree(storage, path);
  }
  return total;
}

/** Every backup directory with its state. Only a sealed, checked manifest makes "complete". */
export async function listBackups(repo: string, withSizes = false, storage: Storage = posixStorage): Promise<BackupState[]> {
  const out: BackupState[] = [];
  for (const id of await backupIds(repo, storage)) out.push(await backupState(repo, id, withSizes, storage));
  return out;
}

/** The names of the backup directories, in time order. */
async function backupIds(repo: string, storage: Storage): Promise<string[]> {
  return sortBackupIds((await storage.list(backupsDir(repo)).catch(() => [] as string[])).filter((n) => BACKUP_ID.test(n)));
}

/** One backup directory's state. */
async function backupState(repo: string, id: string, withSizes: boolean, storage: Storage): Promise<BackupState> {
  let text: string | undefined;
  try {
    text = (await storage.readFile(manifestPath(repo, id))).toString('utf8');
  } catch (e) {
    if (errorCode(e) !== 'ENOENT') return { id, state: 'damaged', reason: `manifest.json cannot be read: ${(e as Error).message}` };
  }
  if (text === undefined) return withoutManifest(repo, id, storage);
  try {
    const manifest = parseManifest(text);
    if (manifest.backupId !== id) throw new ManifestError(`manifest names backup ${JSON.stringify(manifest.backupId)}, stored under ${id}`);
    return { id, state: 'complete', manifest, storedBytes: withSizes ? await sizeOfTree(storage, backupDir(repo, id)) : 0 };
  } catch (e) {
    return { id, state: 'damaged', reason: `manifest.json is damaged: ${e instanceof ManifestError ? e.message : (e as Error).message}` };
  }
}

/** The state of a backup directory that has no manifest: running, interrupted or damaged. */
async function withoutManifest(repo: string, id: string, storage: Storage): Promise<BackupState> {
  const marker = await readInProgressMarker(storage, repo, id);
  const start = marker === undefined ? await markerBeingWritten(storage, repo, id) : undefined;
  if (start === 'running') return { id, state: 'running', reason: 'being created by a live process' };
  if (start === 'interrupted') return { id, state: 'incomplete', reason: 'interrupted while it was being created' };
  if (marker === undefined) {
    return { id, state: 'damaged', reason: 'no manifest.json and no in-progress marker: not left by an interrupted pgbacula backup (kept; remove it by hand if it is not needed)' };
  }
  if (marker.host !== hostname()) {
    // A process on another host cannot be asked whether it still runs: never removed on a guess.
    return { id, state: 'running', reason: `being written on host ${marker.host} by process ${marker.pid} (if it no longer runs there, remove ${backupDir(repo, id)} by hand)` };
  }
  if (marker.pid !== process.pid && pidAlive(marker.pid)) return { id, state: 'running', reason: `being written by process ${marker.pid}` };
  return { id, state: 'incomplete', reason: 'no manifest (interrupted)' };
}

/**
 * The newest complete backup that `wanted` accepts, with the backups it was taken against back to
 * its full one, and the complete backups newer than it — oldest first; every other manifest is
 * left unread. A block-level backup needs just these to choose and check its reference, and a
 * repository that keeps months of backups would otherwise parse every manifest at each start.
 */
export async function newestCompleteWithChain(repo: string, wanted: (m: BackupManifest) => boolean, storage: Storage = posixStorage): Promise<BackupManifest[]> {
  const ids = await backupIds(repo, storage);
  const known = new Set(ids);
  const out = new Map<string, BackupManifest>();
  const complete = async (id: string): Promise<BackupManifest | undefined> => {
    const b = await backupState(repo, id, false, storage);
    return b.state === 'complete' ? b.manifest : undefined;
  };
  for (let i = ids.length - 1; i >= 0; i--) {
    const m = await complete(ids[i]!);
    if (!m) continue;
    out.set(m.backupId, m);
    if (!wanted(m)) continue;
    // Its chain: what is missing or damaged on the way is left out, and the chain check says so.
    for (let at = m.reference?.backupId; at !== undefined && known.has(at) && !out.has(at); ) {
      const r = await complete(at);
      if (!r) break;
      out.set(at, r);
      at = r.reference?.backupId;
    }
    break;
  }
  return sortBackupIds([...out.keys()]).map((id) => out.get(id)!);
}

/** Backup ids in time order: `…F` before `…F-2` before `…F-10`. */
export function sortBackupIds(ids: readonly string[]): string[] {
  const key = (id: string): [string, number] => {
    const dash = id.indexOf('-', 9);
    return dash < 0 ? [id, 0] : [id.slice(0, dash), Number(id.slice(dash + 1))];
  };
  return [...ids].sort((a, b) => {
    const [sa, na] = key(a);
    const [sb, nb] = key(b);
    return sa < sb ? -1 : sa > sb ? 1 : na - nb;
  });
}

export interface InProgressMarker {
  readonly pid: number;
  readonly host: string;
  readonly started: string;
}

/**
 * A backup directory is made, then its in-progress marker written to a temporary name, fsynced
 * and renamed: a process killed in between (a slow fsync under load is a wide window) leaves the
 * directory empty or holding only that temporary marker. Such a directory is ours: 'running'
 * while its writer lives (a reader may look in between), 'interrupted' once it is gone (or when
 * nothing names a writer: an empty directory loses nothing). Anything else in it: undefined.
 */
async function markerBeingWritten(storage: Storage, repo: string, id: string): Promise<'running' | 'interrupted' | undefined> {
  const names = await storage.list(backupDir(repo, id)).catch(() => undefined);
  if (names === undefined) return undefined;
  const marker = basename(inProgressPath(repo, id));
  if (!names.every((n) => n.startsWith(`.${marker}.tmp-`) || n.startsWith(`${marker}.tmp-`))) return undefined;
  const owners = names.map(temporaryNameOwner);
  if (owners.some((pid) => pid === undefined)) return undefined;
  return owners.some((pid) => pid !== process.pid && pidAlive(pid!)) ? 'running' : 'interrupted';
}

async function readInProgressMarker(storage: Storage, repo: string, id: string): Promise<InProgressMarker | undefined> {
  try {
    const m = JSON.parse((await storage.readFile(inProgressPath(repo, id))).toString('utf8')) as InProgressMarker;
    return Number.isInteger(m.pid) && m.pid > 0 ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Create a new backup's directory exclusively, with its in-progress marker: two backups that
 * start in the same second get distinct ids (`…F`, `…F-2`), never one directory.
 */
export async function createBackupDir(repo: string, baseId: string, storage: Storage = posixStorage): Promise<string> {
  for (let n = 1; n < 1000; n++) {
    const id = n === 1 ? baseId : `${baseId}-${n}`;
    try {
      await storage.makeDir(backupDir(repo, id), { mode: 0o750 });
    } catch (e) {
      if (errorCode(e) === 'EEXIST') continue;
      throw repoIoError(e, `cannot create backup directory ${backupDir(repo, id)}`);
    }
    const marker: InProgressMarker = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
    try {
      await storage.writeFileDurable(inProgressPath(repo, id), JSON.stringify(marker) + '\n', { mode: 0o640 });
      await storage.syncDir(backupsDir(repo));
    } catch (e) {
      throw repoIoError(e, `cannot create backup directory ${backupDir(repo, id)}`);
    }
    return id;
  }
  throw new PgbaculaError('REPOSITORY', `more than 999 backups named ${baseId} in ${repo}`);
}

export async function loadBackup(repo: string, id?: string, storage: Storage = posixStorage): Promise<BackupManifest> {
  if (id !== undefined && BACKUP_ID.test(id) && (await backupIds(repo, storage)).includes(id)) {
    // The one asked for: no other manifest needs reading.
    const found = await backupState(repo, id, false, storage);
    if (found.state === 'complete') return found.manifest;
    throw new PgbaculaError('REPOSITORY', `backup ${id} is ${found.state}: ${found.reason}`, { hint: found.state === 'damaged' ? 'pgbacula verify --repo reports what is wrong; use another backup.' : 'Use a complete backup.' });
  }
  const all = await listBackups(repo, false, storage);
  const complete = all.filter((b): b is Extract<BackupState, { state: 'complete' }> => b.state === 'complete');
  if (id === undefined) {
    const last = complete.at(-1);
    if (!last) throw new PgbaculaError('REPOSITORY', `repository ${repo} holds no complete backup`, { hint: 'Run pgbacula backup first.' });
    return last.manifest;
  }
  const found = all.find((b) => b.id === id);
  if (!found) throw new PgbaculaError('REPOSITORY', `no backup ${id} in repository ${repo}`, { hint: 'pgbacula info --repo lists them.' });
  if (found.state !== 'complete') {
    throw new PgbaculaError('REPOSITORY', `backup ${id} is ${found.state}: ${found.reason}`, { hint: found.state === 'damaged' ? 'pgbacula verify --repo reports what is wrong; use another backup.' : 'Use a complete backup.' });
  }
  return found.manifest;
}

/** A backup directory being removed is first renamed to this prefix: never half a backup under its id. */
const REMOVING = '.removing-';

/**
 * Remove the backups pgbacula itself knows were interrupted (call with the repository lock
 * held): their in-progress marker is there, no manifest, and the process that wrote them is gone.
 * A damaged backup is never removed on a guess. Each goes out of the backups' names in one
 * rename before its files are deleted, so a removal that is itself killed leaves no half
 * backup (which would look damaged) — only a `.removing-…` directory the next run deletes.
 * Returns the ids removed.
 */
export async function removeInterruptedBackups(repo: string, storage: Storage = posixStorage): Promise<string[]> {
  for (const n of await storage.list(backupsDir(repo)).catch(() => [] as string[])) {
    if (n.startsWith(REMOVING)) await storage.removeTree(join(backupsDir(repo), n));
  }
  const removed: string[] = [];
  for (const id of await backupIds(repo, storage)) {
    // A backup with a manifest is complete or damaged, never interrupted: its manifest is not
    // read here (a repository of months of backups of a large cluster holds gigabytes of them).
    if (await storage.exists(manifestPath(repo, id))) continue;
    const b = await withoutManifest(repo, id, storage);
    if (b.state === 'incomplete') {
      const aside = join(backupsDir(repo), `${REMOVING}${b.id}-${process.pid}`);
      await storage.rename(backupDir(repo, b.id), aside);
      await storage.syncDir(backupsDir(repo));
      await storage.removeTree(aside);
      removed.push(b.id);
    }
  }
  return removed;
}

/**
 * A check for stored files: their directory, links resolved, must lie inside the repository. A
 * directory of the repository replaced by a link would otherwise feed a restore (run as root)
 * files from anywhere. Returns the problem for a path, or undefined. POSIX only: links exist only
 * on a real file system (src/storage/memory.ts has none).
 */
export function storedPathChecker(repo: string): (storedPath: string) => string | undefined {
  const root = realpathSync(repo);
  const seen = new Map<string, boolean>();
  return (storedPath) => {
    const dir = dirname(storedPath);
    let inside = seen.get(dir);
    if (inside === undefined) {
      try {
        inside = `${realpathSync(dir)}/`.startsWith(`${root}/`);
      } catch {
        inside = true; // missing: the read reports it
      }
      seen.set(dir, inside);
    }
    return inside ? undefined : 'stored beneath a symbolic link that leads out of the repository';
  };
}
