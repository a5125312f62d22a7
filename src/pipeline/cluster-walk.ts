import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { carriesPageChecksums, parseRelationFileName } from '../format/relation-file.js';
import { DEFAULT_BLOCKS_PER_SEGMENT } from '../format/page.js';
import { KINDS, listDir, walkedEntryAt, type WalkedDir } from '../../workers/list-dir.js';
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

/**
 * A backup plan's entries, in emission order. The plan of a cluster is columnar (PlanColumns):
 * an entry becomes an object only while it is used, so that a cluster of a million relation
 * files costs tens of megabytes, not hundreds. Arrays of entries satisfy it too.
 */
export interface PlanEntryList extends Iterable<PlanEntry> {
  readonly length: number;
  at(index: number): PlanEntry | undefined;
}

/** One walked directory as the walker returned it (columns), plus what the plan needs of it. */
interface WalkedColumns {
  readonly absDir: string;
  readonly ruleDir: string;
  readonly pathPrefix: string;
  readonly walked: WalkedDir;
  /** Where each name starts in walked.names (one more than the names: the end). */
  readonly nameStarts: Uint32Array;
  /** The walked indexes the plan keeps, in name order (the walker sorts). */
  readonly kept: number[];
}

const EXTRA = 0xffffffff;

/**
 * The entries of a cluster's plan as columns: for each entry the directory it was walked in and
 * its index there, or (EXTRA) an entry made by the rules rather than found (directories whose
 * contents are left out, tablespace links and version directories, global/pg_control).
 */
class PlanColumns implements PlanEntryList {
  constructor(
    private readonly dirs: readonly WalkedColumns[],
    private readonly extras: readonly PlanEntry[],
    private readonly dirOf: Uint32Array,
    private readonly indexOf: Uint32Array,
  ) {}

  get length(): number {
    return this.dirOf.length;
  }

  at(i: number): PlanEntry | undefined {
    if (i < 0 || i >= this.dirOf.length) return undefined;
    const d = this.dirOf[i]!;
    const j = this.indexOf[i]!;
    if (d === EXTRA) return this.extras[j];
    return walkedEntry(this.dirs[d]!, j);
  }

  *[Symbol.iterator](): Iterator<PlanEntry> {
    for (let i = 0; i < this.dirOf.length; i++) yield this.at(i)!;
  }
}

function nameAt(c: WalkedColumns, j: number): string {
  return c.walked.names.slice(c.nameStarts[j]!, c.nameStarts[j + 1]! - 1);
}

function walkedEntry(c: WalkedColumns, j: number): PlanEntry {
  const name = nameAt(c, j);
  const kind = KINDS[c.walked.kinds[j]!]!;
  const base = { path: `${c.pathPrefix}/${name}`, absPath: `${c.absDir}/${name}`, mode: c.walked.modes[j]!, mtimeMs: c.walked.mtimes[j]! };
  if (kind === 'file') {
    const verifyPages = carriesPageChecksums(c.ruleDir, name);
    const seg = verifyPages ? (parseRelationFileName(name)?.segment ?? 0) : 0;
    return { ...base, type: 'file', size: c.walked.sizes[j]!, verifyPages, firstBlock: seg * DEFAULT_BLOCKS_PER_SEGMENT };
  }
  if (kind === 'symlink') return { ...base, type: 'symlink', size: 0, verifyPages: false, firstBlock: 0, linkTarget: c.walked.links[j]! };
  return { ...base, type: 'dir', size: 0, verifyPages: false, firstBlock: 0 };
}

function madeEntry(pathPrefix: string, absDir: string, name: string, type: 'file' | 'dir' | 'symlink', mode: number, mtimeMs: number, size = 0, linkTarget?: string): PlanEntry {
  return { path: `${pathPrefix}/${name}`, absPath: `${absDir}/${name}`, type, mode, mtimeMs, size, verifyPages: false, firstBlock: 0, ...(linkTarget !== undefined ? { linkTarget } : {}) };
}

function nameStartsOf(names: string, count: number): Uint32Array {
  const starts = new Uint32Array(count + 1);
  let k = 1;
  for (let i = 0; i < names.length && k < count; i++) if (names.charCodeAt(i) === 0) starts[k++] = i + 1;
  starts[count] = names.length + 1;
  return starts;
}

export interface TablespaceLink {
  readonly oid: string;
  readonly location: string;
}

export interface ClusterPlan {
  readonly entries: PlanEntryList;
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
  // What each directory holds, by its backup path: the walked entries kept (columns) and entries
  // made by the rules; assembled depth-first at the end.
  const dirs: WalkedColumns[] = [];
  const listings = new Map<string, { dir?: number; made: { name: string; entry: PlanEntry }[] }>();
  const tablespaces: TablespaceLink[] = [];
  const excluded = new Map<string, number>();
  let pgControl: PlanEntry | undefined;
  let totalBytes = 0;
  let fileCount = 0;
  const queue: DirJob[] = [{ absDir: pgdata, ruleDir: '', pathPrefix: 'pgdata' }];
  const maxParallel = Math.max(2, pool.options.maxThreads * 2);
  const count = (reason: string) => excluded.set(reason, (excluded.get(reason) ?? 0) + 1);
  const listOf = (prefix: string) => {
    let l = listings.get(prefix);
    if (!l) listings.set(prefix, (l = { made: [] }));
    return l;
  };
  const make = (prefix: string, absDir: string, name: string, type: 'file' | 'dir' | 'symlink', mode: number, mtimeMs: number, size = 0, linkTarget?: string) =>
    listOf(prefix).made.push({ name, entry: madeEntry(prefix, absDir, name, type, mode, mtimeMs, size, linkTarget) });

  const handle = (job: DirJob, walked: WalkedDir) => {
    const kept: number[] = [];
    const cols: WalkedColumns = { absDir: job.absDir, ruleDir: job.ruleDir, pathPrefix: job.pathPrefix, walked, nameStarts: nameStartsOf(walked.names, walked.kinds.length), kept };
    listOf(job.pathPrefix).dir = dirs.push(cols) - 1;
    // The unlogged-relation rule only asks whether <relfilenode>_init exists here.
    // Names are cut from the walk's one string as they are looked at, never all held at once.
    const initForks = new Set<string>();
    const entryCount = walked.kinds.length;
    for (let j = 0; j < entryCount; j++) {
      const name = nameAt(cols, j);
      if (name.endsWith('_init')) initForks.add(name);
    }
    for (let j = 0; j < entryCount; j++) {
      const e = walkedEntryAt(walked, nameAt(cols, j), j);
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
        make(job.pathPrefix, job.absDir, e.name, 'symlink', e.mode, e.mtimeMs, 0, location);
        // Only the version directory of the running server belongs to this cluster.
        for (const v of readdirOrNone(location).filter((n) => n.startsWith(`PG_${major}_`))) {
          queue.push({ absDir: join(location, v), ruleDir: `pg_tblspc/${e.name}/${v}`, pathPrefix: `tablespaces/${e.name}/${v}` });
          make(`tablespaces/${e.name}`, location, v, 'dir', 0o700, e.mtimeMs);
        }
        continue;
      }
      const decision = decideEntry(job.ruleDir, e, initForks, major);
      switch (decision.action) {
        case 'skip':
          count(decision.reason);
          break;
        case 'empty-dir':
          make(job.pathPrefix, job.absDir, e.name, 'dir', e.mode, e.mtimeMs);
          if (job.ruleDir === '' && e.name === 'pg_wal') {
            for (const sub of walSubdirectories(major)) make('pgdata/pg_wal', join(pgdata, 'pg_wal'), sub.split('/').pop()!, 'dir', e.mode, e.mtimeMs);
          }
          count(`contents of ${e.name}`);
          break;
        case 'last':
          pgControl = madeEntry(job.pathPrefix, job.absDir, e.name, 'file', e.mode, e.mtimeMs, e.size);
          totalBytes += e.size;
          fileCount++;
          break;
        case 'include':
          if (e.kind === 'dir') {
            kept.push(j);
            queue.push({ absDir: join(job.absDir, e.name), ruleDir: job.ruleDir === '' ? e.name : `${job.ruleDir}/${e.name}`, pathPrefix: `${job.pathPrefix}/${e.name}` });
          } else if (e.kind === 'file') {
            kept.push(j);
            totalBytes += e.size;
            fileCount++;
          } else if (e.kind === 'symlink') {
            kept.push(j);
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
  // PGDATA first, then each tablespace; global/pg_control last. The walker lists names sorted;
  // the few entries made by the rules are merged in.
  const extras: PlanEntry[] = [];
  let total = 0;
  for (const l of listings.values()) total += l.made.length + (l.dir !== undefined ? dirs[l.dir]!.kept.length : 0);
  if (pgControl) total++;
  const dirOf = new Uint32Array(total);
  const indexOf = new Uint32Array(total);
  let n = 0;
  const visit = (prefix: string) => {
    const l = listings.get(prefix);
    if (!l) return;
    listings.delete(prefix);
    const made = l.made.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const cols = l.dir !== undefined ? dirs[l.dir]! : undefined;
    const kept = cols?.kept ?? [];
    let m = 0;
    let k = 0;
    while (m < made.length || k < kept.length) {
      const walkedName = k < kept.length ? nameAt(cols!, kept[k]!) : undefined;
      if (walkedName === undefined || (m < made.length && made[m]!.name < walkedName)) {
        const e = made[m++]!.entry;
        dirOf[n] = EXTRA;
        indexOf[n++] = extras.push(e) - 1;
        if (e.type === 'dir') visit(e.path);
      } else {
        const j = kept[k++]!;
        dirOf[n] = l.dir!;
        indexOf[n++] = j;
        if (cols!.walked.kinds[j] === 1) visit(`${prefix}/${walkedName}`);
      }
    }
  };
  visit('pgdata');
  for (const ts of [...tablespaces].sort((a, b) => Number(a.oid) - Number(b.oid))) visit(`tablespaces/${ts.oid}`);
  if (pgControl) {
    dirOf[n] = EXTRA;
    indexOf[n++] = extras.push(pgControl) - 1;
  }
  const entries = new PlanColumns(dirs, extras, dirOf.subarray(0, n), indexOf.subarray(0, n));
  return { entries, tablespaces, totalBytes, fileCount, excluded };
}

/**
 * Walks directories on the calling thread: for a short-lived command that would spend longer
 * starting worker threads than walking (verify --pgdata on a native verifier).
 */
export function inlineWalker(): Pick<WorkerPool, 'run'> & { options: { maxThreads: number } } {
  return {
    options: { maxThreads: 1 },
    run: async (task: unknown) => listDir(task as { absDir: string }),
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
