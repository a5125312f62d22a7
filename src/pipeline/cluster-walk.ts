import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { carriesPageChecksums, parseRelationFileName } from '../format/relation-file.js';
import { DEFAULT_BLOCKS_PER_SEGMENT } from '../format/page.js';
import { walkedEntries, type WalkedDir } from '../../workers/walk-dir.js';
import { decideEntry, walSubdirectories } from './exclusions.js';
import type { WorkerPool } from './pool.js';
import { valueSymbol } from 'piscina';
import { walkDir } from '../../workers/walk-dir.js';

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
  /**
   * Stored as an incremental file (docs/block-incremental.md): `path` names `INCREMENTAL.<name>`,
   * `absPath` the relation file, `size` the incremental file's size.
   */
  readonly incremental?: IncrementalPlan;
}

export interface IncrementalPlan {
  /** The incremental file's header, padding included (src/format/incremental-file.ts). */
  readonly header: Uint8Array;
  /** Changed blocks, relative to the file, ascending: the pages that follow the header. */
  readonly blocks: Uint32Array;
  readonly truncationBlocks: number;
  /** The relation file's size when planned. */
  readonly fileSize: number;
}

/** The directory an entry was found in: paths are built from it on demand, not stored per entry. */
interface PlanDir {
  readonly absDir: string;
  readonly pathPrefix: string;
}

/**
 * A walked entry that stores only its name: a cluster with 100,000 relation files would
 * otherwise hold 200,000 path strings (~70 MB) for the whole backup.
 */
class WalkedPlanEntry implements PlanEntry {
  constructor(
    private readonly dir: PlanDir,
    readonly name: string,
    readonly type: 'file' | 'dir' | 'symlink',
    readonly mode: number,
    readonly mtimeMs: number,
    readonly size: number,
    readonly verifyPages: boolean,
    readonly firstBlock: number,
    readonly linkTarget?: string,
  ) {}

  get path(): string {
    return `${this.dir.pathPrefix}/${this.name}`;
  }

  get absPath(): string {
    return `${this.dir.absDir}/${this.name}`;
  }
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
 * global/pg_control last (a standby backup's end point comes from it).
 */
export async function planCluster(pool: Pick<WorkerPool, 'run'> & { options: { maxThreads: number } }, pgdata: string, major: number, excludeTablespaces: readonly string[] = []): Promise<ClusterPlan> {
  // Entries by the backup path of the directory holding them; assembled depth-first at the end.
  const children = new Map<string, WalkedPlanEntry[]>();
  const tablespaces: TablespaceLink[] = [];
  const excluded = new Map<string, number>();
  let pgControl: PlanEntry | undefined;
  let totalBytes = 0;
  let fileCount = 0;
  const queue: DirJob[] = [{ absDir: pgdata, ruleDir: '', pathPrefix: 'pgdata' }];
  const maxParallel = Math.max(2, pool.options.maxThreads * 2);
  const count = (reason: string) => excluded.set(reason, (excluded.get(reason) ?? 0) + 1);
  const listOf = (prefix: string) => {
    let l = children.get(prefix);
    if (!l) children.set(prefix, (l = []));
    return l;
  };

  const handle = (job: DirJob, walked: WalkedDir) => {
    const dir: PlanDir = { absDir: job.absDir, pathPrefix: job.pathPrefix };
    const list = listOf(job.pathPrefix);
    // The unlogged-relation rule only asks whether <relfilenode>_init exists here.
    const initForks = new Set<string>();
    for (const e of walkedEntries(walked)) if (e.name.endsWith('_init')) initForks.add(e.name);
    for (const e of walkedEntries(walked)) {
      // Tablespace links: stored under tablespaces/<oid>/, recreated from the map at restore.
      if (job.ruleDir === 'pg_tblspc' && e.kind === 'symlink' && /^\d+$/.test(e.name)) {
        if (excludeTablespaces.includes(e.name)) {
          count('excluded tablespace');
          continue;
        }
        // Recorded normalised (a link made by hand may read "/srv/ts/" or "/srv//ts"); a relative
        // link is resolved against pg_tblspc, as the server resolves it.
        const location = normalizeLocation(join(pgdata, 'pg_tblspc'), e.linkTarget!);
        tablespaces.push({ oid: e.name, location });
        list.push(new WalkedPlanEntry(dir, e.name, 'symlink', e.mode, e.mtimeMs, 0, false, 0, location));
        // Only the version directory of the running server belongs to this cluster.
        const tsDir: PlanDir = { absDir: location, pathPrefix: `tablespaces/${e.name}` };
        for (const v of readdirOrNone(location).filter((n) => n.startsWith(`PG_${major}_`))) {
          queue.push({ absDir: join(location, v), ruleDir: `pg_tblspc/${e.name}/${v}`, pathPrefix: `tablespaces/${e.name}/${v}` });
          listOf(tsDir.pathPrefix).push(new WalkedPlanEntry(tsDir, v, 'dir', 0o700, e.mtimeMs, 0, false, 0));
        }
        continue;
      }
      const decision = decideEntry(job.ruleDir, e, initForks, major);
      switch (decision.action) {
        case 'skip':
          count(decision.reason);
          break;
        case 'empty-dir':
          list.push(new WalkedPlanEntry(dir, e.name, 'dir', e.mode, e.mtimeMs, 0, false, 0));
          if (job.ruleDir === '' && e.name === 'pg_wal') {
            const walDir: PlanDir = { absDir: join(pgdata, 'pg_wal'), pathPrefix: 'pgdata/pg_wal' };
            for (const sub of walSubdirectories(major)) listOf('pgdata/pg_wal').push(new WalkedPlanEntry(walDir, sub.split('/').pop()!, 'dir', e.mode, e.mtimeMs, 0, false, 0));
          }
          count(`contents of ${e.name}`);
          break;
        case 'last':
          pgControl = new WalkedPlanEntry(dir, e.name, 'file', e.mode, e.mtimeMs, e.size, false, 0);
          totalBytes += e.size;
          fileCount++;
          break;
        case 'include':
          if (e.kind === 'dir') {
            list.push(new WalkedPlanEntry(dir, e.name, 'dir', e.mode, e.mtimeMs, 0, false, 0));
            queue.push({ absDir: join(job.absDir, e.name), ruleDir: job.ruleDir === '' ? e.name : `${job.ruleDir}/${e.name}`, pathPrefix: `${job.pathPrefix}/${e.name}` });
          } else if (e.kind === 'file') {
            const verify = carriesPageChecksums(job.ruleDir, e.name);
            const seg = verify ? (parseRelationFileName(e.name)?.segment ?? 0) : 0;
            list.push(new WalkedPlanEntry(dir, e.name, 'file', e.mode, e.mtimeMs, e.size, verify, seg * DEFAULT_BLOCKS_PER_SEGMENT));
            totalBytes += e.size;
            fileCount++;
          } else if (e.kind === 'symlink') {
            list.push(new WalkedPlanEntry(dir, e.name, 'symlink', e.mode, e.mtimeMs, 0, false, 0, e.linkTarget!));
          }
          break;
      }
    }
  };

  // Results are awaited here, not handled in callbacks on the pool's promises: the pool may keep
  // a finished task's callbacks reachable, and a callback holding the plan would pin all of it.
  const inFlight = new Map<number, { job: DirJob; result: Promise<WalkedDir> }>();
  let nextId = 0;
  while (queue.length > 0 || inFlight.size > 0) {
    while (queue.length > 0 && inFlight.size < maxParallel) {
      const job = queue.shift()!;
      inFlight.set(nextId++, { job, result: pool.run({ absDir: job.absDir }, { name: 'walkDir' }) as Promise<WalkedDir> });
    }
    const [id, walked] = await Promise.race([...inFlight].map(([k, v]) => v.result.then((w) => [k, w] as const)));
    const { job } = inFlight.get(id)!;
    inFlight.delete(id);
    handle(job, walked);
  }

  // Depth-first, names sorted in each directory (a directory's contents follow it, as in a tar),
  // PGDATA first, then each tablespace; global/pg_control last.
  const entries: PlanEntry[] = [];
  const visit = (prefix: string) => {
    const list = children.get(prefix);
    if (!list) return;
    list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of list) {
      entries.push(e);
      if (e.type === 'dir') visit(`${prefix}/${e.name}`);
    }
    children.delete(prefix);
  };
  visit('pgdata');
  for (const ts of [...tablespaces].sort((a, b) => Number(a.oid) - Number(b.oid))) visit(`tablespaces/${ts.oid}`);
  if (pgControl) entries.push(pgControl);
  return { entries, tablespaces, totalBytes, fileCount, excluded };
}

/**
 * Walks directories on the calling thread: for a short-lived command that would spend longer
 * starting worker threads than walking (verify --pgdata on a native verifier).
 */
export function inlineWalker(): Pick<WorkerPool, 'run'> & { options: { maxThreads: number } } {
  return {
    options: { maxThreads: 1 },
    run: async (task: unknown) => {
      const moved = walkDir(task as { absDir: string }) as { [valueSymbol]?: unknown };
      return moved[valueSymbol] ?? moved;
    },
  } as unknown as Pick<WorkerPool, 'run'> & { options: { maxThreads: number } };
}

function normalizeLocation(base: string, link: string): string {
  return resolve(base, link);
}

/** A tablespace dropped since pg_tblspc was listed has no directory any more: nothing of it to back up. */
function readdirOrNone(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}
