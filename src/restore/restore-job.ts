import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { PgbaculaError } from '../errors.js';
import type { BackupManifest, ManifestFile } from '../format/backup-manifest.js';
import { readPostmasterPid } from '../server/server-control.js';
import { verifyInWorkers, verifyNatively } from '../pipeline/page-verification.js';
import { nativePageVerifier } from '../format/kernels.js';
import type { PlanEntry } from '../pipeline/cluster-walk.js';
import { formatBytes, formatCount, ProgressTracker, type JobLog } from '../item/job-log.js';
import type { WorkerPool } from '../pipeline/pool.js';
import { orderedMerge } from '../pipeline/ordered-merge.js';
import { storedPathChecker } from '../repo/catalog.js';
import { storedLocation } from '../repo/layout.js';
import { storedFileTasks, type StoredFileJob } from './stored-file-jobs.js';
import { majorOf, versionFacts, type Major } from '../pg/versions.js';
import type { RestoreFileTask } from '../../workers/restore-file.js';
import type { CombineFileTask } from '../../workers/combine-file.js';
import { wholePathOf } from '../format/incremental-file.js';
import { chainSources } from './chain-sources.js';
import { recoveryFiles, settingsToResetAfterPromotion, type RecoveryPlan, type RecoveryTarget } from './recovery-settings.js';
import { parseLsn } from '../wal/lsn.js';
import { walSegmentNameForLsn } from '../wal/segment.js';
import { restoreCommandLine } from '../archive/archive-command.js';
import { serverBinDirFor } from './server-binaries.js';
import { restoreTopology } from './topology-restore.js';
import type { StandbyRecord, TopologyDocument } from '../format/topology.js';
import { assertOutsideProtected, freeBytes, inspectTarget, resolveOwner, RESTORE_STATE_DIR, type NamedPath, type Owner } from './target.js';
import { connectRestored } from './restored-server-client.js';
import { parseRelationFileName } from '../format/relation-file.js';
import { DEFAULT_BLOCKS_PER_SEGMENT } from '../format/page.js';
import { fileSystemError } from '../os/io-error.js';
import { writeFileAtomicSync } from '../os/durable.js';
import { giveToSync, setModeSync } from '../os/file-owner.js';
import { FileSystemSync } from '../os/file-system-sync.js';
import { OwnedDirs } from '../os/owned-dirs.js';
import { makeDirSync, makeDirsSync, removeTreeSync } from '../os/user-dirs.js';
import { appendToFileSync, removeFileSync, replaceFileSync, replaceWithSymlinkSync } from '../os/user-files.js';

const execFileAsync = promisify(execFile);

export interface RestoreRequest {
  readonly repo: string;
  readonly manifest: BackupManifest;
  readonly pgdataDir: string;
  readonly overwriteExisting: boolean;
  readonly pgBinDir: string | undefined;
  readonly restorePort: number | undefined;
  readonly remapTablespaces: ReadonlyMap<string, string>;
  readonly pool: WorkerPool;
  readonly log: JobLog;
  readonly progressIntervalMs: number;
  readonly startTimeoutSeconds: number;
  readonly skipWalReplay: boolean;
  /** A point in time (or LSN, xid, restore point) to stop at; default: the end of the WAL there is. */
  readonly target?: RecoveryTarget;
  readonly action?: 'promote' | 'pause' | 'shutdown';
  /** Restore as a standby of this primary (standby.signal + primary_conninfo, primary_slot_name). */
  readonly standby?: { readonly primaryConninfo?: string; readonly primarySlotName?: string };
  /** The replication topology the backup captured (track_replication_state): phase 5 works from it. */
  readonly topology?: TopologyDocument;
  /** recreate_replication_slots (default true) and recreate_subscriptions (default false). */
  readonly recreateSlots?: boolean;
  readonly recreateSubscriptions?: boolean;
  /** The exact restore that rebuilds a captured standby (written into its standby-<name>/ directory). */
  readonly rebuildCommand?: (s: StandbyRecord) => string;
  /** restore_command of the WAL archive to replay from after the backup's own WAL (wal-fetch). */
  readonly archiveRestoreCommand?: string;
  /** Keep the source's archive_mode/archive_command (default: archiving off in the copy). */
  readonly archiveAfterRestore?: boolean;
  /** The repository is a staging copy this restore may consume (files moved, not copied). */
  readonly consumeRepository?: boolean;
  /** Where no target may lie (default: the repository): the repository, the WAL archive, the spool. */
  readonly protectedPaths?: readonly NamedPath[];
  /**
   * Where replay must get to when restoring to the end of WAL (the recoverable window of the
   * chosen backup): "redo done at" before `lastRecord` means recovery stopped early.
   */
  readonly expectedReplay?: { readonly lastRecord: string; readonly endLsn: string; readonly segment: string };
  /**
   * `manifest` is the newest backup of a block-level chain: these are the older ones, full
   * first, already checked link by link (src/repo/chain.ts). Its incremental files are rebuilt
   * from them block by block (docs/block-incremental.md).
   */
  readonly chain?: readonly BackupManifest[];
}

/** The size a file has once restored: an incremental file stands for a file of its recorded size. */
function restoredSize(f: ManifestFile): number {
  return f.incremental?.fileSize ?? f.size;
}

/** A digest of what was asked: resuming is for the same request only. No secret is stored in clear. */
function restoreFingerprint(req: RestoreRequest): string {
  const asked = {
    backup: req.manifest.backupId,
    chain: (req.chain ?? []).map((c) => c.backupId),
    system: req.manifest.systemIdentifier,
    pgdata: req.pgdataDir,
    port: req.restorePort ?? null,
    remap: [...req.remapTablespaces].sort(([a], [b]) => (a < b ? -1 : 1)),
    skip: req.skipWalReplay,
    target: req.target ?? null,
    action: req.action ?? 'promote',
    standby: req.standby ? [req.standby.primaryConninfo ?? '', req.standby.primarySlotName ?? ''] : null,
    archive: req.archiveRestoreCommand ?? null,
    archiveAfter: req.archiveAfterRestore ?? false,
  };
  return createHash('sha256').update(JSON.stringify(asked)).digest('hex');
}

export interface RestoreSummary {
  readonly pgdataDir: string;
  readonly bytes: number;
  readonly port: number | undefined;
  readonly socketDir: string | undefined;
  readonly pagesVerified: number;
  readonly checksumFailures: number;
  /** What the server said when it stopped replaying (the target reached), if a target was set. */
  readonly stoppedAt: string | undefined;
  readonly state: 'promoted' | 'paused' | 'shut down' | 'standby';
}

interface RestoreState {
  backupId: string;
  /** SHA-256 of what was asked (backup, target, action, port, standby, remaps, …): only the same request resumes. */
  fingerprint: string;
  phasesDone: number[];
  /** Where in server.log the server started by this restore begins (older lines are another run's). */
  logOffset?: number;
  /**
   * Phase 3 held the restored subscriptions' apply workers off (max_logical_replication_workers = 0)
   * until phase 5 has disabled them: the value the restored postgresql.auto.conf had, if any.
   */
  heldLogicalWorkers?: { readonly original: string | null };
  /** Set when every phase is done: the directory then holds a restored cluster, not an interrupted restore. */
  finished?: string;
}

/**
 * The six restore phases (pre-check, lay-down, wal-setup, start, topology, verify), each logged to the job log and to an audit file in the target
 * (<pgdata>/pgbacula_restore/audit.log; backups never carry that directory). Re-running an
 * interrupted restore with the same request into the same directory resumes: phases already done
 * are skipped. A finished restore is a restored cluster like any other: a non-empty target.
 */
export class RestoreJob {
  private readonly stateDir: string;
  private state: RestoreState;
  private owner: Owner | undefined;

  private readonly stagedWalDir: string;
  private readonly plan: RecoveryPlan;
  private readonly fingerprint: string;
  /** Version directories (PG_<major>_*) of existing tablespace locations that overwrite_existing replaces. */
  private readonly tablespaceLeftovers = new Map<string, string[]>();

  constructor(private readonly req: RestoreRequest) {
    this.stateDir = join(req.pgdataDir, RESTORE_STATE_DIR);
    this.stagedWalDir = join(this.stateDir, 'wal');
    // wal-fetch serves the archive first, then the backup's own WAL staged here (--staged): the
    // backup's last segment is zero-padded after the stop LSN, and served first it would end
    // recovery there. Both are checked record by record; a damaged file stops recovery (exit
    // 200) — no shell fallback (`|| cp`) that would serve something after a refusal.
    this.plan = {
      // Not a standby (it streams the rest): the newest .partial, a receiver's open segment, is
      // the end of WAL and replayed too (RPO 0 with a synchronous wal-receive).
      restoreCommand: restoreCommandLine({ ...(req.archiveRestoreCommand ? { repo: req.repo } : {}), staged: this.stagedWalDir, latest: !req.standby }),
      // skip_wal_replay: stop as soon as the backup is consistent; otherwise the target, or all WAL there is.
      target: req.skipWalReplay ? { kind: 'immediate' } : (req.target ?? { kind: 'end-of-wal' }),
      action: req.action ?? 'promote',
      timeline: 'latest',
      ...(req.standby ? { standby: req.standby } : {}),
    };
    this.fingerprint = restoreFingerprint(req);
    this.state = { backupId: req.manifest.backupId, fingerprint: this.fingerprint, phasesDone: [] };
  }

  private phase(n: number, name: string, text: string): void {
    const line = `RESTORE PHASE ${n}/6 ${name}: ${text}`;
    this.req.log.info(line);
    if (existsSync(this.stateDir)) appendToFileSync(join(this.stateDir, 'audit.log'), `${new Date().toISOString()} ${line}\n`);
  }

  private saveState(done: number): void {
    if (!this.state.phasesDone.includes(done)) this.state.phasesDone.push(done);
    // temp + fsync + rename: a restore killed while it records its progress must find the old
    // state or the new one when run again, never half a file (which would make it a stranger).
    writeFileAtomicSync(join(this.stateDir, 'state.json'), JSON.stringify(this.state) + '\n', 0o600);
  }

  async run(): Promise<RestoreSummary> {
    const m = this.req.manifest;
    const major = majorOf(m.pgVersionNum);
    const binDir = serverBinDirFor(major, this.req.pgBinDir);
    const resumed = this.precheck(major, binDir);
    if (!resumed || !this.state.phasesDone.includes(2)) await this.layDown();
    else this.phase(2, 'lay-down', 'already done by the interrupted run');
    if (!this.state.phasesDone.includes(3)) this.walSetup();
    else this.phase(3, 'wal-setup', 'already done by the interrupted run');
    const started = await this.start(binDir, major);
    if (this.req.topology) {
      const text = await restoreTopology({
        doc: this.req.topology,
        major,
        stateDir: this.stateDir,
        owner: this.owner ?? resolveOwner(this.req.pgdataDir),
        port: started.port,
        socketDir: started.socketDir,
        state: started.state,
        recreateSlots: this.req.recreateSlots ?? true,
        recreateSubscriptions: this.req.recreateSubscriptions ?? false,
        log: this.req.log,
        rebuildCommand: this.req.rebuildCommand ?? ((st) => `pgbacula restore --repo ${this.req.repo} --backup ${m.backupId} --pgdata-dir /new/standby/data --restore-as-standby=true --standby-name=${st.name}`),
      });
      const released = started.state === 'promoted' && this.state.heldLogicalWorkers ? await this.releaseLogicalWorkers(binDir, started.port, started.socketDir) : '';
      this.phase(5, 'topology', `${text}${released}`);
    } else {
      this.phase(5, 'topology', 'no replication topology captured in this backup (track_replication_state=false)');
    }
    this.saveState(5);
    const verified = await this.verify(started.port, started.socketDir, started.state);
    this.state.finished = new Date().toISOString();
    this.saveState(6);
    return { pgdataDir: this.req.pgdataDir, bytes: m.files.reduce((s, f) => s + restoredSize(f), 0), port: started.port, socketDir: started.socketDir, stoppedAt: started.stoppedAt, state: started.state, ...verified };
  }

  /** Phase 1: nothing the user had is touched before every check has passed. */
  private precheck(major: number, binDir: string): boolean {
    const { pgdataDir, manifest: m } = this.req;
    const locations = m.tablespaces.map((ts) => ({ what: `tablespace ${ts.oid} location`, path: this.tablespaceLocation(ts.oid, ts.location) }));
    assertOutsideProtected([{ what: 'restore target', path: pgdataDir }, ...locations], this.req.protectedPaths ?? [{ what: 'repository', path: this.req.repo }]);
    // A link where the target or a tablespace location should be would carry the restore (and
    // its chown) to wherever it points.
    for (const { what, path } of [{ what: 'restore target', path: pgdataDir }, ...locations]) {
      const st = lstatOrUndefined(path);
      if (st?.isSymbolicLink()) {
        throw new PgbaculaError('RESTORE_PRECHECK', `${what} ${path} is a symbolic link: a restore does not write through it`, { hint: 'Give the directory it points to, or another path.' });
      }
      if (st && !st.isDirectory()) throw new PgbaculaError('RESTORE_PRECHECK', `${what} ${path} exists and is not a directory`, { hint: 'Choose another path.' });
    }
    const t = inspectTarget(pgdataDir);
    const earlier = t.restoreState;
    const resumable = earlier !== undefined && earlier.finished === undefined && earlier.backupId === m.backupId && earlier.fingerprint === this.fingerprint;
    if (earlier && !resumable && !this.req.overwriteExisting) {
      if (earlier.finished === undefined && earlier.fingerprint === '') {
        throw new PgbaculaError('RESTORE_PRECHECK', `restore target ${pgdataDir} holds an interrupted restore of backup ${earlier.backupId} made by an older pgbacula, which this one cannot resume`, {
          hint: 'Set overwrite_existing=true to start the restore over, or restore into an empty directory.',
        });
      }
      throw new PgbaculaError(
        'RESTORE_PRECHECK',
        earlier.finished !== undefined
          ? `restore target ${pgdataDir} holds a finished restore of backup ${earlier.backupId} (completed ${earlier.finished}): it is a restored cluster, not an interrupted restore`
          : `restore target ${pgdataDir} holds an interrupted restore of backup ${earlier.backupId} that was asked with other arguments`,
        {
          hint:
            earlier.finished !== undefined
              ? 'Restore into an empty directory, or set overwrite_existing=true to replace that cluster.'
              : 'Run the interrupted restore again with the same arguments to resume it, or set overwrite_existing=true to start over.',
        },
      );
    }
    // A server the interrupted run started (it records where the server's log begins just before
    // starting it) may keep running: the restore resumes by watching it.
    if (t.runningPid && !(resumable && earlier.logOffset !== undefined)) {
      throw new PgbaculaError('RESTORE_PRECHECK', `PostgreSQL is running in ${pgdataDir} (pid ${t.runningPid})`, { hint: 'Stop it first; a restore never writes under a running server.' });
    }
    if (t.exists && t.entries.length > 0 && !resumable && !this.req.overwriteExisting) {
      const shown = t.entries.filter((e) => e !== RESTORE_STATE_DIR);
      throw new PgbaculaError('RESTORE_PRECHECK', `restore target ${pgdataDir} is not empty (${(shown.length ? shown : t.entries).slice(0, 5).join(', ')}${t.entries.length > 5 ? ', …' : ''})`, {
        hint: 'Restore into an empty directory, or set overwrite_existing=true to replace its contents.',
      });
    }
    if (t.exists && t.entries.length > 0 && !resumable && !t.entries.includes('PG_VERSION') && !t.entries.includes(RESTORE_STATE_DIR)) {
      // overwrite_existing replaces a data directory, never an arbitrary tree (a parent typed by mistake).
      throw new PgbaculaError('RESTORE_PRECHECK', `restore target ${pgdataDir} is not empty and is not a PostgreSQL data directory (no PG_VERSION): overwrite_existing replaces a data directory only`, {
        hint: 'Check pgdata_dir (a parent of the data directory given by mistake?), or empty the directory yourself.',
      });
    }
    const owner = resolveOwner(pgdataDir);
    const versionDir = new RegExp(`^PG_${major}_\\d+$`);
    for (const ts of m.tablespaces) {
      const loc = this.tablespaceLocation(ts.oid, ts.location);
      if (!existsSync(loc)) continue;
      // PostgreSQL wants a tablespace directory owned by the server's user; an existing one is
      // used as it is — never chowned — so a location cannot hand a system directory to it.
      const st = statSync(loc);
      if (st.uid !== owner.uid) {
        throw new PgbaculaError('RESTORE_PRECHECK', `tablespace ${ts.oid} location ${loc} exists and belongs to uid ${st.uid}, not to the restored cluster's owner (uid ${owner.uid})`, {
          hint: `Give it another place with remap_tablespace=${ts.oid}=/new/dir (made for you), or chown the directory to the cluster's owner if it is meant for this cluster.`,
        });
      }
      const inside = readdirSync(loc);
      if (inside.length > 0 && !resumable && !this.req.overwriteExisting) {
        throw new PgbaculaError('RESTORE_PRECHECK', `tablespace ${ts.oid} location ${loc} is not empty`, {
          hint: `Give it another place with remap_tablespace=${ts.oid}=/new/dir, or set overwrite_existing=true (it replaces only the PG_${major}_* directory there).`,
        });
      }
      if (!resumable) this.tablespaceLeftovers.set(loc, inside.filter((n) => versionDir.test(n)));
    }
    const needed = m.files.reduce((s, f) => s + restoredSize(f), 0);
    const free = freeBytes(pgdataDir);
    // A staging repository on the target's file system is moved into place: only what is copied
    // (LZ4-stored files, tablespaces elsewhere, everything when the file systems differ) needs room.
    const copied = this.req.consumeRepository ? this.bytesCopiedFromStaging() : needed;
    if (free < copied * 1.05) {
      throw new PgbaculaError('RESTORE_PRECHECK', `not enough space for ${pgdataDir}: ${formatBytes(needed)} needed, ${formatBytes(free)} free`, { hint: 'Free space or choose another target.' });
    }
    this.owner = owner;
    if (t.exists && t.entries.length > 0 && !resumable) {
      // overwrite_existing=true: the explicit gate. Only now is anything removed.
      for (const e of t.entries) removeTreeSync(join(pgdataDir, e));
    }
    for (const [loc, names] of this.tablespaceLeftovers) for (const n of names) removeTreeSync(join(loc, n));
    makeParents(pgdataDir);
    makeDirsSync(pgdataDir, 0o700);
    giveToSync(pgdataDir, this.owner);
    // An existing empty directory given as the target (made 0755 by hand) becomes a data
    // directory: PostgreSQL refuses to start in one that others may enter (0700 or 0750 only).
    if ((statSync(pgdataDir).mode & 0o027) !== 0) setModeSync(pgdataDir, 0o700);
    makeDirsSync(this.stateDir, 0o700);
    giveToSync(this.stateDir, this.owner);
    if (resumable) {
      this.state = {
        backupId: earlier.backupId,
        fingerprint: this.fingerprint,
        phasesDone: [...earlier.phasesDone],
        ...(earlier.logOffset !== undefined ? { logOffset: earlier.logOffset } : {}),
        ...(earlier.heldLogicalWorkers !== undefined ? { heldLogicalWorkers: earlier.heldLogicalWorkers } : {}),
      };
    }
    this.saveState(1);
    this.phase(1, 'pre-check', `backup ${m.backupId} (PostgreSQL ${m.pgVersion}, ${formatBytes(needed)}) into ${pgdataDir}; ${formatBytes(free)} free; server binaries ${binDir} (major ${major})${resumable ? '; resuming an interrupted restore' : ''}`);
    return resumable;
  }

  private bytesCopiedFromStaging(): number {
    const { manifest: m, pgdataDir, repo } = this.req;
    let probe = pgdataDir;
    while (!existsSync(probe)) probe = dirname(probe);
    if (statSync(probe).dev !== statSync(repo).dev) return m.files.reduce((s, f) => s + restoredSize(f), 0);
    return m.files.filter((f) => f.stored === 'lz4' || f.incremental || f.path.startsWith('tablespaces/')).reduce((s, f) => s + restoredSize(f), 0);
  }

  private tablespaceLocation(oid: string, original: string): string {
    return this.req.remapTablespaces.get(oid) ?? original;
  }

  /**
   * Where a stored item goes in the restored cluster — a root (the data directory, a tablespace
   * location, the staged WAL) and the components below it — or undefined when it is not laid
   * down as a file. The manifest's paths were checked when it was read (plain components only);
   * this checks again, so no entry can name a place outside its root.
   */
  private placeOf(f: ManifestFile): { root: string; parts: string[] } | undefined {
    const { pgdataDir, manifest: m } = this.req;
    const parts = f.path.split('/');
    if (parts.some((c) => c === '' || c === '.' || c === '..' || c.includes('\0'))) {
      throw new PgbaculaError('REPOSITORY', `backup ${m.backupId} is damaged: its manifest names ${JSON.stringify(f.path)}`, { hint: 'Run pgbacula verify --repo; restore another backup.' });
    }
    const [area, ...rest] = parts;
    if (area === 'pgdata') {
      // Restore state of an earlier restore, in backups made before it was excluded: never ours to lay down.
      if (rest[0] === RESTORE_STATE_DIR) return undefined;
      // A block-level backup's label for pg_combinebackup: an incremental one has INCREMENTAL
      // lines a server refuses to start from. The label laid down is the top-level one.
      if (rest.length === 1 && rest[0] === 'backup_label') return undefined;
      return { root: pgdataDir, parts: f.incremental ? [...rest.slice(0, -1), wholePathOf(rest.at(-1)!)] : rest };
    }
    if (area === 'tablespaces') {
      const [oid, ...inner] = rest;
      const ts = m.tablespaces.find((t) => t.oid === oid);
      if (!ts) return undefined;
      return { root: this.tablespaceLocation(oid!, ts.location), parts: f.incremental ? [...inner.slice(0, -1), wholePathOf(inner.at(-1)!)] : inner };
    }
    if (f.path === 'backup_label') return { root: pgdataDir, parts: ['backup_label'] };
    // The backup's WAL is staged for restore_command (archive recovery), not put in pg_wal.
    if (area === 'wal') return { root: this.stagedWalDir, parts: rest };
    // tablespace_map: the links are made here, to the (possibly remapped) locations.
    return undefined;
  }

  private targetOf(f: ManifestFile): string | undefined {
    const p = this.placeOf(f);
    return p && join(p.root, ...p.parts);
  }


  /** Phase 2: every file decoded, hash-checked and written by the worker pool. */
  private async layDown(): Promise<void> {
    const { manifest: m, pool, repo } = this.req;
    const owner = this.owner!;
    const mkdirOwned = (dir: string, mode = 0o700) => {
      if (existsSync(dir)) return; // checked in phase 1: a directory of the cluster's owner, used as it is
      makeParents(dir);
      makeDirSync(dir, mode);
      giveToSync(dir, owner);
    };
    for (const ts of m.tablespaces) mkdirOwned(this.tablespaceLocation(ts.oid, ts.location));
    // Made from the root down to each file's place, refusing to pass through anything that is not
    // a plain directory (a link on the way would carry the writes outside the root).
    const dirs = new OwnedDirs(owner, (dir, found) =>
      new PgbaculaError('RESTORE_PRECHECK', `${dir} is ${found}: the restore does not write through it`, {
        hint: `Remove it, or restore into an empty directory (a backup never needs ${dir} to be anything but a directory).`,
      }),
    );
    dirs.below(this.req.pgdataDir, [RESTORE_STATE_DIR, 'wal']);
    for (const f of m.files) {
      if (f.type === 'dir') {
        const place = this.placeOf(f);
        if (place) dirs.below(place.root, place.parts, f.mode & 0o777);
      } else if (f.type === 'symlink' && f.path.startsWith('pgdata/pg_tblspc/')) {
        // The link goes where the manifest's tablespace list (or remap) says, not where the entry says.
        const oid = f.path.split('/').pop()!;
        const ts = m.tablespaces.find((t) => t.oid === oid);
        if (!ts) continue;
        const dir = dirs.below(this.req.pgdataDir, ['pg_tblspc']);
        replaceWithSymlinkSync(this.tablespaceLocation(oid, ts.location), join(dir, oid));
      }
    }
    const files = m.files.filter((f) => f.type === 'file' && this.targetOf(f) !== undefined);
    const total = files.reduce((s, f) => s + restoredSize(f), 0);
    const sourcesOf = chainSources(repo, m, this.req.chain ?? []);
    // Opened before the first file is written: the final sync reports any writeback error since.
    const fileSystems = FileSystemSync.open([this.req.pgdataDir, ...m.tablespaces.map((ts) => this.tablespaceLocation(ts.oid, ts.location))]);
    const deferSync = fileSystems !== undefined ? { deferSync: true } : {};
    const progress = new ProgressTracker(this.req.log, 'restore', total, this.req.progressIntervalMs);
    const problems: string[] = [];
    let targetFailure: { path: string; problem: string; errno: string } | undefined;
    let synced = '';
    try {
      const outside = storedPathChecker(repo);
      const jobs = files.flatMap((f): { f: ManifestFile; job: StoredFileJob }[] => {
        const at = storedLocation(repo, m.backupId, f);
        const bad = outside(at.storedPath);
        if (bad) {
          problems.push(`${f.path}: ${bad}`);
          return [];
        }
        const place = this.placeOf(f)!;
        const target = join(dirs.below(place.root, place.parts.slice(0, -1)), place.parts.at(-1)!);
        if (f.incremental) {
          const sources = sourcesOf(f, at);
          if (typeof sources === 'string') {
            problems.push(`${f.path}: ${sources}`);
            return [];
          }
          const bad = sources.map((c) => outside(c.storedPath)).find((p) => p !== undefined);
          if (bad) {
            problems.push(`${f.path}: ${bad}`);
            return [];
          }
          const combine: CombineFileTask = {
            sources,
            targetPath: target,
            blockSize: m.blockSize,
            blocksPerSegment: DEFAULT_BLOCKS_PER_SEGMENT,
            mode: f.mode,
            mtimeMs: Date.parse(f.mtime),
            uid: owner.uid,
            gid: owner.gid,
            label: wholePathOf(f.path),
            ...deferSync,
          };
          return [{ f, job: { kind: 'combine', task: combine, bytes: restoredSize(f) } }];
        }
        const task: RestoreFileTask = {
          ...at,
          encoding: f.stored ?? 'raw',
          targetPath: target,
          size: f.size,
          expectedHash: f.hash ?? '',
          rangeSize: m.rangeSize,
          mode: f.mode,
          mtimeMs: Date.parse(f.mtime),
          uid: owner.uid,
          gid: owner.gid,
          label: f.path,
          ...(this.req.consumeRepository ? { move: true } : {}),
          ...deferSync,
        };
        return [{ f, job: { kind: 'restore', task } }];
      });
      for await (const outcomes of orderedMerge(storedFileTasks(pool, jobs, m.rangeSize), { windowBytes: 64 * m.rangeSize, maxTasks: pool.options.maxThreads * 4 })) {
        for (const { f, r } of outcomes) {
          if (!r.ok && r.targetErrno) targetFailure ??= { path: this.targetOf(f)!, problem: r.problem ?? '', errno: r.targetErrno };
          else if (!r.ok) problems.push(`${f.path}: ${r.problem}`);
          progress.add(restoredSize(f));
        }
      }
      // Before anything says the files are there: phase 2 is recorded done only once they are durable.
      if (fileSystems && !targetFailure && problems.length === 0) {
        await fileSystems.sync();
        synced = `, synced to disk (${fileSystems.fileSystems === 1 ? 'one file system' : `${fileSystems.fileSystems} file systems`})`;
      }
    } finally {
      progress.stop();
      fileSystems?.close();
    }
    if (targetFailure) {
      // The backup is fine; the place it goes is not (full, read-only, not ours).
      const place = `the restore target ${targetFailure.path.startsWith(this.req.pgdataDir) ? this.req.pgdataDir : dirname(targetFailure.path)}`;
      throw fileSystemError(Object.assign(new Error(targetFailure.problem), { code: targetFailure.errno }), 'write', targetFailure.path, place);
    }
    if (problems.length > 0) {
      throw new PgbaculaError('REPOSITORY', `backup ${m.backupId} is damaged: ${problems.length} file(s) failed their check, first: ${problems[0]}`, {
        hint: 'Run pgbacula verify --repo to see every damaged file; restore another backup.',
      });
    }
    // The manifest is untrusted too: the cluster laid down must be the system it claims, or WAL of
    // that system (from its archive) would be replayed into another cluster.
    const control = join(this.req.pgdataDir, 'global', 'pg_control');
    const laid = existsSync(control) ? readFileSync(control).subarray(0, 8) : undefined;
    const systemId = laid && laid.length === 8 ? laid.readBigUInt64LE(0).toString() : 'none';
    if (systemId !== m.systemIdentifier) {
      throw new PgbaculaError('REPOSITORY', `backup ${m.backupId} is damaged: its global/pg_control belongs to database system ${systemId}, its manifest says ${m.systemIdentifier}`, {
        hint: 'Run pgbacula verify --repo; restore another backup.',
      });
    }
    const rebuilt = files.filter((f) => f.incremental).length;
    this.phase(2, 'lay-down', `${formatBytes(total)} restored (${formatCount(files.length)} files${rebuilt ? `, ${formatCount(rebuilt)} rebuilt block by block from a chain of ${(this.req.chain?.length ?? 0) + 1} backups` : ''}, every hash checked${synced})`);
    this.saveState(2);
  }

  /** Phase 3: the backup's own WAL is in pg_wal; backup_label makes the server replay it to consistency. */
  private walSetup(): void {
    const { manifest: m, pgdataDir } = this.req;
    const owner = this.owner ?? resolveOwner(pgdataDir);
    // A backup taken from a standby carries the standby's own signal/recovery files: the restored
    // cluster is to be promoted, so they go (restore_as_standby writes its own).
    const dropped: string[] = [];
    for (const name of ['standby.signal', 'recovery.signal', 'recovery.conf']) {
      const p = join(pgdataDir, name);
      if (existsSync(p)) {
        removeFileSync(p);
        dropped.push(name);
      }
    }
    if (!this.req.archiveAfterRestore) {
      // A restored copy archiving into the source's archive would add a new timeline there that
      // every later restore of the source would follow (Barman turns it off the same way).
      const auto = join(pgdataDir, 'postgresql.auto.conf');
      appendToFileSync(auto, "# pgbacula restore: no archiving from the restored copy (archive_after_restore=true keeps it)\narchive_mode = 'off'\n", { owner });
    }
    if (this.req.restorePort !== undefined) {
      const auto = join(pgdataDir, 'postgresql.auto.conf');
      appendToFileSync(auto, `# pgbacula restore: the restored server's port\nport = ${this.req.restorePort}\n`, { owner });
    }
    if (this.holdsSubscriptions()) {
      // The catalog brings the subscriptions back enabled: started as they are, their apply
      // workers would connect to the publishers and consume their slots before phase 5 could
      // disable them. No worker runs until then (docs/replication-topology.md).
      const auto = join(pgdataDir, 'postgresql.auto.conf');
      const original = existsSync(auto) ? lastSetting(readFileSync(auto, 'utf8'), 'max_logical_replication_workers') : null;
      appendToFileSync(auto, '# pgbacula restore: no logical replication workers until phase 5 has disabled the restored subscriptions\nmax_logical_replication_workers = 0\n', { owner });
      this.state.heldLogicalWorkers = { original };
    }
    const major = majorOf(m.pgVersionNum) as Major;
    for (const f of recoveryFiles(major, this.plan)) {
      const path = join(pgdataDir, f.name);
      if (f.how === 'append') appendToFileSync(path, f.content, { owner });
      else replaceFileSync(path, f.content, { mode: 0o600, owner });
    }
    const t = this.plan.target;
    const goal = this.plan.standby
      ? 'follow the primary as a standby'
      : t.kind === 'immediate'
        ? 'stop as soon as consistent (recovery_target = immediate)'
        : t.kind === 'end-of-wal'
          ? 'replay every WAL segment there is'
          : `stop at recovery_target_${t.kind} '${t.value}', then ${this.plan.action}`;
    this.phase(3, 'wal-setup', `${m.walSegments.length} WAL segment(s) ${m.walSegments[0] ?? ''}..${m.walSegments.at(-1) ?? ''} staged; restore_command: ${this.req.archiveRestoreCommand ? 'the WAL archive, then the backup\'s own WAL' : 'the backup\'s own WAL'}; ${goal}${t.kind === 'end-of-wal' || t.kind === 'immediate' ? ', then promote' : ''}; backup end ${m.stopLsn} (timeline ${m.stopTimeline}); ${versionFacts(major).recoveryConfig === 'signal-files' ? 'recovery.signal + postgresql.auto.conf' : 'recovery.conf'}${this.req.archiveAfterRestore ? '; archiving kept' : '; archiving off in the copy'}${this.req.restorePort ? `; port ${this.req.restorePort}` : ''}${dropped.length ? `; removed the source's ${dropped.join(', ')}` : ''}`);
    this.saveState(3);
  }

  /** The restore will promote a server whose catalog holds enabled subscriptions. */
  private holdsSubscriptions(): boolean {
    const t = this.plan.target;
    const promotes = !this.plan.standby && (t.kind === 'end-of-wal' || t.kind === 'immediate' || this.plan.action === 'promote');
    return promotes && (this.req.topology?.subscriptions.some((s) => s.enabled) ?? false);
  }

  /**
   * The subscriptions are disabled (phase 5): the logical replication workers come back — the
   * restored postgresql.auto.conf's own value, or none — with a restart, as that setting needs.
   */
  private async releaseLogicalWorkers(binDir: string, port: number | undefined, socketDir: string | undefined): Promise<string> {
    const original = this.state.heldLogicalWorkers?.original ?? null;
    let client: pg.Client | undefined;
    try {
      client = await connectRestored({ socketDir, port, owner: this.owner ?? resolveOwner(this.req.pgdataDir) });
      await client.query(original === null ? 'ALTER SYSTEM RESET max_logical_replication_workers' : `ALTER SYSTEM SET max_logical_replication_workers = ${Number(original) || 0}`);
    } catch (e) {
      this.req.log.warning(`logical replication workers stay off (max_logical_replication_workers = 0): ${(e as Error).message}; ALTER SYSTEM RESET max_logical_replication_workers and restart when the subscriptions are reviewed`);
      return '';
    } finally {
      await client?.end().catch(() => undefined);
    }
    const owner = this.owner ?? resolveOwner(this.req.pgdataDir);
    const logFile = join(this.stateDir, 'server.log');
    try {
      await execFileAsync(join(binDir, 'pg_ctl'), ['-D', this.req.pgdataDir, '-l', logFile, '-w', '-t', String(this.req.startTimeoutSeconds), '-m', 'fast', 'restart'], {
        uid: owner.uid,
        gid: owner.gid,
        cwd: this.req.pgdataDir,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
      });
    } catch (e) {
      throw new PgbaculaError('RESTORE_PRECHECK', `the restored server in ${this.req.pgdataDir} did not restart after its subscriptions were disabled: ${(e as Error).message.split('\n')[0]}`, {
        hint: `See ${logFile}; start it with pg_ctl -D ${this.req.pgdataDir} start.`,
      });
    }
    delete this.state.heldLogicalWorkers;
    this.saveState(4);
    return '; restarted with logical replication workers back';
  }

  /** Phase 4: start as the data directory's owner; pg_ctl waits until recovery ends and connections are accepted. */
  private async start(binDir: string, major: number): Promise<{ port: number | undefined; socketDir: string | undefined; stoppedAt: string | undefined; state: RestoreSummary['state'] }> {
    const { pgdataDir } = this.req;
    const owner = this.owner ?? resolveOwner(pgdataDir);
    const logFile = join(this.stateDir, 'server.log');
    appendToFileSync(logFile, '');
    // Only what the server started now (or by the interrupted run being resumed) writes counts:
    // earlier lines are another start's, and would announce a recovery that has not happened.
    const alreadyRunning = readPostmasterPid(pgdataDir) !== undefined;
    if (!alreadyRunning || this.state.logOffset === undefined) {
      this.state.logOffset = alreadyRunning ? 0 : statSync(logFile).size;
      this.saveState(3);
    }
    const logFrom = this.state.logOffset;
    giveToSync(this.stateDir, owner);
    giveToSync(logFile, owner);
    const plan = this.plan;
    const shutdownAtTarget = !plan.standby && plan.action === 'shutdown' && plan.target.kind !== 'end-of-wal';
    let startError: Error | undefined;
    if (!alreadyRunning) {
      try {
        await execFileAsync(join(binDir, 'pg_ctl'), ['-D', pgdataDir, '-l', logFile, '-w', '-t', String(this.req.startTimeoutSeconds), 'start'], {
          uid: owner.uid,
          gid: owner.gid,
          cwd: pgdataDir,
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
        });
      } catch (e) {
        startError = e as Error;
      }
    }
    // pg_ctl -w returns as soon as the server accepts connections — during archive recovery that
    // is read-only hot standby, long before the target. The log says when recovery is done.
    const done = plan.standby
      ? /database system is ready to accept read[ -]only connections/
      : shutdownAtTarget
        ? /shutdown at recovery target/
        : plan.action === 'pause' && plan.target.kind !== 'end-of-wal'
          ? /pausing at the end of recovery|recovery has paused/
          : /database system is ready to accept connections/;
    if (startError && !shutdownAtTarget) {
      const text = readLogFrom(logFile, logFrom);
      const refused = this.refusalIn(text, logFile);
      if (refused) throw refused;
      const tail = text.split('\n').filter(Boolean).slice(-8).join('\n  ');
      // pg_ctl says on stderr what it could not do before the server writes any log line
      // (a data directory its user cannot enter, a missing binary).
      const said = String((startError as { stderr?: unknown }).stderr ?? '').trim().split('\n').filter(Boolean).slice(-4).join('\n  ');
      throw new PgbaculaError('RESTORE_PRECHECK', `the restored server in ${pgdataDir} did not start: ${startError.message.split('\n')[0]}`, {
        hint: [tail ? `Its log (${logFile}) ends with:\n  ${tail}` : `Its log (${logFile}) is empty.`, said ? `pg_ctl said:\n  ${said}` : ''].filter(Boolean).join('\n'),
      });
    }
    const log = await this.watchLog(logFile, logFrom, done, this.req.startTimeoutSeconds * 1000, shutdownAtTarget);
    const stoppedAt = /recovery stopping (?:before|after|at) [^\n]*/.exec(log)?.[0];
    const redoDone = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1];
    const endedAt = redoDone === undefined ? '' : `: replay ended at ${redoDone}, in segment ${walSegmentNameForLsn(this.replayTimeline(log), parseLsn(redoDone), this.req.manifest.walSegmentSize)}`;
    if (plan.target.kind !== 'end-of-wal' && !plan.standby && !stoppedAt) {
      // 13+ stops with FATAL here; 10–12 promote at the end of WAL without a word.
      throw new PgbaculaError('WAL_GAP', `the restored server did not reach the recovery target (${plan.target.kind}${'value' in plan.target ? ` '${plan.target.value}'` : ''}): the WAL ended first${endedAt}`, {
        hint: `The server in ${pgdataDir} is NOT a restore to the target. pgbacula verify --repo names damaged WAL, pgbacula info --repo the recoverable window and any gap; see ${logFile}.`,
      });
    }
    const expected = this.req.expectedReplay;
    if (plan.target.kind === 'end-of-wal' && !plan.standby && expected && redoDone !== undefined && parseLsn(redoDone) < parseLsn(expected.lastRecord)) {
      throw new PgbaculaError('WAL_GAP', `recovery ended early${endedAt}; the archive holds WAL to ${expected.endLsn} (segment ${expected.segment}, last record at ${expected.lastRecord})`, {
        hint: `The server in ${pgdataDir} holds an incomplete copy: every transaction after ${redoDone} is missing. Look at the segment after ${redoDone} (pgbacula verify --repo checks every archived segment), put an intact copy in the archive and restore again — or, to accept this point, restore with --target-lsn ${redoDone}. See ${logFile}.`,
      });
    }
    const state: RestoreSummary['state'] = plan.standby ? 'standby' : shutdownAtTarget ? 'shut down' : done.source.includes('pausing') ? 'paused' : 'promoted';
    const reached = [/consistent recovery state reached at \S+/, /selected new timeline ID: \d+/].map((re) => re.exec(log)?.[0]).filter((x): x is string => x !== undefined);
    let port: number | undefined;
    let socketDir: string | undefined;
    if (state !== 'shut down') {
      const pid = readFileSync(join(pgdataDir, 'postmaster.pid'), 'utf8').split('\n');
      // postmaster.pid: line 4 = port, line 5 = first socket directory (PostgreSQL ≥ 9.1).
      port = Number(pid[3]);
      socketDir = pid[4] && pid[4] !== '' ? pid[4] : undefined;
      if (state === 'promoted') await this.afterPromotion(port, socketDir, major);
    }
    const what = { promoted: 'promoted, accepting connections', paused: 'paused at the target (read-only; SELECT pg_wal_replay_resume() to promote)', 'shut down': 'shut down at the target as asked', standby: 'running as a standby (read-only)' }[state];
    this.phase(4, 'start', `PostgreSQL ${major} as uid ${owner.uid}${port ? ` on port ${port}` : ''}: ${[stoppedAt, ...reached, ...(plan.standby ? [] : replayedEnd(log))].filter(Boolean).join('; ')}; ${what}`);
    this.saveState(4);
    return { port, socketDir, stoppedAt, state };
  }

  /**
   * wal-fetch's own refusal (its stderr is in the server log): which file and why, and that
   * recovery stopped there (exit 200 is FATAL for restore_command) rather than promoting.
   */
  private refusalIn(text: string, logFile: string): PgbaculaError | undefined {
    const refused = [...text.matchAll(/pgbacula: error: (.*)(?:\nhint: (.*))?/g)].at(-1);
    if (!refused || !/FATAL:\s+could not restore file/.test(text)) return undefined;
    return new PgbaculaError(/ is damaged: /.test(refused[1]!) ? 'WAL_DAMAGED' : 'RESTORE_PRECHECK', `the restored server in ${this.req.pgdataDir} stopped recovery: restore_command refused a file: ${refused[1]}`, {
      hint: `${refused[2] ?? ''} Nothing was promoted; the server's log is ${logFile}.`.trim(),
    });
  }

  /** The timeline of the last record replayed: the newest one the log says recovery read. */
  private replayTimeline(log: string): number {
    const names = [...log.matchAll(/restored log file "([0-9A-F]{8})[0-9A-F]{16}"/g)].map((m) => parseInt(m[1]!, 16));
    return names.at(-1) ?? this.req.manifest.stopTimeline;
  }

  /** Poll the server log until `done` matches; a FATAL/PANIC or a stopped server fails with the log's tail. */
  private async watchLog(logFile: string, from: number, done: RegExp, timeoutMs: number, stopExpected = false): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = readLogFrom(logFile, from);
      if (done.test(text)) return text;
      const fatal = /(?:FATAL|PANIC):\s+(.*)/.exec(text.split('\n').filter((l) => !/the database system is (starting up|not yet accepting)/.test(l)).join('\n'));
      if (stopExpected && !readPostmasterPid(this.req.pgdataDir)) {
        const last = readLogFrom(logFile, from);
        if (done.test(last)) return last;
      }
      if (fatal || (!stopExpected && !readPostmasterPid(this.req.pgdataDir)) || Date.now() > deadline) {
        const tail = text.split('\n').filter(Boolean).slice(-8).join('\n  ');
        const refused = fatal ? this.refusalIn(text, logFile) : undefined;
        if (refused) throw refused;
        throw new PgbaculaError('RESTORE_PRECHECK', `the restored server in ${this.req.pgdataDir} did not finish recovery${fatal ? `: ${fatal[1]}` : Date.now() > deadline ? ` within ${Math.round(timeoutMs / 1000)} s` : ' (it stopped)'}`, {
          hint: `Its log (${logFile}) ends with:\n  ${tail}`,
        });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Once promoted, the recovery settings have done their work: 12+ keeps them in
   * postgresql.auto.conf, so they are reset (ALTER SYSTEM) and the staged WAL removed.
   */
  private async afterPromotion(port: number, socketDir: string | undefined, major: number): Promise<void> {
    if (versionFacts(major).recoveryConfig === 'signal-files') {
      let client: pg.Client | undefined;
      try {
        client = await connectRestored({ socketDir, port, owner: this.owner ?? resolveOwner(this.req.pgdataDir) });
        for (const name of settingsToResetAfterPromotion(this.plan)) await client.query(`ALTER SYSTEM RESET ${name}`);
        await client.query('SELECT pg_reload_conf()');
      } catch (e) {
        this.req.log.warning(`could not reset the recovery settings in postgresql.auto.conf: ${(e as Error).message}`);
      } finally {
        await client?.end().catch(() => undefined);
      }
    }
    removeTreeSync(this.stagedWalDir);
  }

  /** Phase 6: SELECT 1, and every data page of the restored cluster verified online. */
  private async verify(port: number | undefined, socketDir: string | undefined, state: RestoreSummary['state']): Promise<{ pagesVerified: number; checksumFailures: number }> {
    const { manifest: m, pool } = this.req;
    if (state === 'shut down') {
      this.phase(6, 'verify', 'the server shut down at the target as asked (recovery_target_action=shutdown): change the target or the action and start it to continue');
      this.saveState(6);
      return { pagesVerified: 0, checksumFailures: 0 };
    }
    let client: pg.Client | undefined;
    let answered = false;
    try {
      client = await connectRestored({ socketDir, port, owner: this.owner ?? resolveOwner(this.req.pgdataDir) });
      answered = (await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one === 1;
    } catch (e) {
      this.req.log.warning(`SELECT 1 on the restored server could not run: ${(e as Error).message}`);
    } finally {
      await client?.end().catch(() => undefined);
    }
    let pagesVerified = 0;
    let failures = 0;
    if (m.pageVerification !== 'unavailable') {
      const entries: PlanEntry[] = m.files
        .filter((f) => f.type === 'file' && f.pages)
        .map((f) => {
          const abs = this.targetOf(f)!;
          const name = abs.split('/').pop()!;
          const seg = parseRelationFileName(name)?.segment ?? 0;
          return { path: wholePathOf(f.path), absPath: abs, type: 'file', mode: f.mode, mtimeMs: Date.parse(f.mtime), size: restoredSize(f), verifyPages: true, firstBlock: seg * DEFAULT_BLOCKS_PER_SEGMENT };
        });
      // The addon checks pages on its own threads without copying them into JavaScript memory:
      // several times the worker pipeline's speed (README, verify --pgdata).
      const native = nativePageVerifier();
      const r = native ? await verifyNatively(entries, native) : await verifyInWorkers(entries, pool, this.req.log);
      pagesVerified = r.pagesChecked;
      failures = r.failures.length + r.unlisted;
    }
    this.phase(6, 'verify', `SELECT 1 ${answered ? 'answered' : 'NOT answered'}; page checksums ${m.pageVerification === 'unavailable' ? 'unavailable (cluster without checksums)' : `${formatCount(pagesVerified)} pages, ${failures} failures`}`);
    if (!answered) throw new PgbaculaError('RESTORE_PRECHECK', 'the restored server does not answer SELECT 1', { hint: `See ${join(this.stateDir, 'server.log')}.` });
    this.saveState(6);
    return { pagesVerified, checksumFailures: failures };
  }
}

/** The value of the last `name = value` line of a configuration file, or null. */
function lastSetting(text: string, name: string): string | null {
  let value: string | null = null;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^\\s*${name}\\s*=\\s*'?([^'#\\s]*)'?`).exec(line);
    if (m) value = m[1]!;
  }
  return value;
}

/** The server log from a byte offset on (a whole file when it was truncated since). */
function readLogFrom(logFile: string, from: number): string {
  const all = readFileSync(logFile);
  return (all.length >= from ? all.subarray(from) : all).toString('utf8');
}

/**
 * Directories above a target that do not exist yet are made 0755: made with the target's 0700
 * they would belong to root and shut out the OS user the server runs as.
 */
function makeParents(dir: string): void {
  makeDirsSync(dirname(dir), 0o755);
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * What the server log says replay ended with: the last commit recovered and its time (every
 * major logs "last completed transaction was at log time" at the end of recovery), and the
 * incomplete segment wal-fetch served as the end of WAL, if it did.
 */
export function replayedEnd(log: string): string[] {
  const out: string[] = [];
  const partial = [...log.matchAll(/([0-9A-F]{24}): served the incomplete copy (\S+) as the end of WAL/g)].at(-1);
  if (partial) out.push(`replayed the open segment ${partial[2]!.split('/').pop()} to its last valid record`);
  const last = [...log.matchAll(/last completed transaction was at log time ([^\n]+)/g)].at(-1)?.[1]?.trim();
  out.push(last ? `last commit recovered at ${last}` : 'no commit replayed after the backup');
  return out;
}
