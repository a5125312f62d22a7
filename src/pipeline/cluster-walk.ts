import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BLOCKS_PER_SEGMENT, carriesPageChecksums, parseRelationFileName } from '../format/relation-file.js';
import type { WalkedEntry } from '../../workers/walk-dir.js';
import { decideEntry, walSubdirectories } from './exclusions.js';
import type { WorkerPool } from './pool.js';

/** One file, directory or link of the backup plan, in the order it will be emitted. */
export interface PlanEntry {
  /** Path inside the backup: `pgdata/...` or `tablespaces/<oid>/...`. */
  readonly path: string;
  readonly absPath: string;
  readonly type: 'file' | 'dir' | 'symlink';
  readonly mode: number;
  readonly mtimeMs: number;
  readonly size: number;
  readonly linkTarget?: string;
  /** Verify page checksums of this file (a relation file of a relation directory). */
  readonly verifyPages: boolean;
  /** Relation-wide number of the file's first block (segment × blocks per segment). */
  readonly firstBlock: number;
}

export interface TablespaceLink {
  readonly oid: string;
  readonly location: string;
}

export interface ClusterPlan {
  readonly entries: PlanEntry[];
  readonly tablespaces: TablespaceLink[];
  readonly totalBytes: number;
  readonly fileCount: number;
  readonly excluded: Map<string, number>;
}

interface DirJob {
  readonly absDir: string;
  /** Directory as the server's rules see it, relative to PGDATA ('' = root). */
  readonly ruleDir: string;
  /** Prefix of backup paths of its entries. */
  readonly pathPrefix: string;
}

/**
 * Walk PGDATA and its tablespaces in the worker pool (readdir + lstat per directory), apply
 * the server's exclusion rules, and return the plan sorted by backup path with
 * global/pg_control last (spec §1.8 rule 7: a standby backup's end point comes from it).
 */
export async function planCluster(pool: WorkerPool, pgdata: string, major: number, excludeTablespaces: readonly string[] = []): Promise<ClusterPlan> {
  const entries: PlanEntry[] = [];
  const tablespaces: TablespaceLink[] = [];
  const excluded = new Map<string, number>();
  let pgControl: PlanEntry | undefined;
  const queue: DirJob[] = [{ absDir: pgdata, ruleDir: '', pathPrefix: 'pgdata' }];
  const running = new Set<Promise<void>>();
  const maxParallel = Math.max(2, pool.options.maxThreads * 2);

  const emitDir = (path: string, absPath: string, e: WalkedEntry) =>
    entries.push({ path, absPath, type: 'dir', mode: e.mode, mtimeMs: e.mtimeMs, size: 0, verifyPages: false, firstBlock: 0 });

  const handle = (job: DirJob, list: WalkedEntry[]) => {
    const names = new Set(list.map((e) => e.name));
    for (const e of list) {
      const abs = join(job.absDir, e.name);
      const path = `${job.pathPrefix}/${e.name}`;
      const ruleDir = job.ruleDir === '' ? e.name : `${job.ruleDir}/${e.name}`;
      // Tablespace links: stored under tablespaces/<oid>/, recreated from the map at restore.
      if (job.ruleDir === 'pg_tblspc' && e.kind === 'symlink' && /^\d+$/.test(e.name)) {
        if (excludeTablespaces.includes(e.name)) {
          excluded.set('excluded tablespace', (excluded.get('excluded tablespace') ?? 0) + 1);
          continue;
        }
        tablespaces.push({ oid: e.name, location: e.linkTarget! });
        entries.push({ path, absPath: abs, type: 'symlink', mode: e.mode, mtimeMs: e.mtimeMs, size: 0, linkTarget: e.linkTarget!, verifyPages: false, firstBlock: 0 });
        // Only the version directory of the running server belongs to this cluster.
        const versionDirs = readdirSync(e.linkTarget!).filter((n) => n.startsWith(`PG_${major}_`));
        for (const v of versionDirs) {
          queue.push({ absDir: join(e.linkTarget!, v), ruleDir: `pg_tblspc/${e.name}/${v}`, pathPrefix: `tablespaces/${e.name}/${v}` });
          entries.push({ path: `tablespaces/${e.name}/${v}`, absPath: join(e.linkTarget!, v), type: 'dir', mode: 0o700, mtimeMs: e.mtimeMs, size: 0, verifyPages: false, firstBlock: 0 });
        }
        continue;
      }
      const decision = decideEntry(job.ruleDir, e, names, major);
      switch (decision.action) {
        case 'skip':
          excluded.set(decision.reason, (excluded.get(decision.reason) ?? 0) + 1);
          break;
        case 'empty-dir':
          emitDir(path, abs, e);
          if (job.ruleDir === '' && e.name === 'pg_wal') {
            for (const sub of walSubdirectories(major)) emitDir(`pgdata/${sub}`, join(pgdata, sub), e);
          }
          excluded.set(`contents of ${e.name}`, (excluded.get(`contents of ${e.name}`) ?? 0) + 1);
          break;
        case 'last':
          pgControl = { path, absPath: abs, type: 'file', mode: e.mode, mtimeMs: e.mtimeMs, size: e.size, verifyPages: false, firstBlock: 0 };
          break;
        case 'include':
          if (e.kind === 'dir') {
            emitDir(path, abs, e);
            queue.push({ absDir: abs, ruleDir, pathPrefix: path });
          } else if (e.kind === 'file') {
            const verify = carriesPageChecksums(job.ruleDir, e.name);
            const seg = verify ? (parseRelationFileName(e.name)?.segment ?? 0) : 0;
            entries.push({ path, absPath: abs, type: 'file', mode: e.mode, mtimeMs: e.mtimeMs, size: e.size, verifyPages: verify, firstBlock: seg * BLOCKS_PER_SEGMENT });
          } else if (e.kind === 'symlink') {
            entries.push({ path, absPath: abs, type: 'symlink', mode: e.mode, mtimeMs: e.mtimeMs, size: 0, linkTarget: e.linkTarget!, verifyPages: false, firstBlock: 0 });
          }
          break;
      }
    }
  };

  while (queue.length > 0 || running.size > 0) {
    while (queue.length > 0 && running.size < maxParallel) {
      const job = queue.shift()!;
      const p: Promise<void> = (pool.run({ absDir: job.absDir }, { name: 'walkDir' }) as Promise<WalkedEntry[]>)
        .then((list) => handle(job, list))
        .finally(() => running.delete(p));
      running.add(p);
    }
    if (running.size > 0) await Promise.race(running);
  }

  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (pgControl) entries.push(pgControl);
  const files = entries.filter((e) => e.type === 'file');
  return { entries, tablespaces, totalBytes: files.reduce((s, e) => s + e.size, 0), fileCount: files.length, excluded };
}
