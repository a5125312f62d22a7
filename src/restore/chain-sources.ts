/**
 * Where each incremental file of a block-level backup is rebuilt from (docs/block-incremental.md):
 * the stored files of the same relation segment in the older backups of its chain, newest first,
 * back to the first whole copy — as PostgreSQL's pg_combinebackup walks a chain. Used by the
 * restore (rebuild into the target) and by verify --repo (rebuild to nowhere, every hash checked).
 */
import type { BackupManifest, ManifestFile } from '../format/backup-manifest.js';
import { incrementalPathOf, wholePathOf } from '../format/incremental-file.js';
import { storedLocation, type StoredLocation } from '../repo/layout.js';
import type { CombineSource } from '../../workers/combine-file.js';

/**
 * `chain`: the older backups of `newest`'s chain, full first. Returns, for an incremental entry of
 * `newest` and its stored path, the sources newest first — or why there are none.
 */
export function chainSources(repo: string, newest: BackupManifest, chain: readonly BackupManifest[]): (f: ManifestFile, stored: StoredLocation) => CombineSource[] | string {
  const m = newest;
  // Older backups, newest first, each with its files by path.
  const older = [...chain].reverse().map((b) => ({ b, files: new Map(b.files.map((x) => [x.path, x])) }));
  return (f, stored) => {
    const whole = wholePathOf(f.path);
    const sources: CombineSource[] = [{ ...stored, encoding: f.stored ?? 'raw', kind: 'incremental', size: f.size, expectedHash: f.hash ?? '', rangeSize: m.rangeSize, ...(f.rangeHashes ? { rangeHashes: f.rangeHashes } : {}), label: `${m.backupId}:${f.path}` }];
    for (const { b, files } of older) {
      const full = files.get(whole);
      const inc = full ? undefined : files.get(incrementalPathOf(whole));
      const x = full ?? inc;
      if (!x || x.type !== 'file') return `backup ${b.backupId} of its chain holds neither ${whole} nor an incremental file of it`;
      if (inc && !inc.incremental) return `backup ${b.backupId} lists ${inc.path} without its block counts`;
      sources.push({ ...storedLocation(repo, b.backupId, x), encoding: x.stored ?? 'raw', kind: full ? 'full' : 'incremental', size: x.size, expectedHash: x.hash ?? '', rangeSize: b.rangeSize, ...(x.rangeHashes ? { rangeHashes: x.rangeHashes } : {}), label: `${b.backupId}:${x.path}` });
      if (full) return sources;
    }
    return older.length === 0 ? `backup ${m.backupId} holds an incremental file but names no chain of earlier backups` : `the full backup of the chain holds only an incremental file of ${whole}`;
  };
}
