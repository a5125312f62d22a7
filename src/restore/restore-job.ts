import { execFile } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { PgbaculaError } from '../errors.js';
import type { BackupManifest, ManifestFile } from '../format/backup-manifest.js';
import { readPostmasterPid } from '../pg/server-control.js';
import { emitFiles } from '../pipeline/emit-files.js';
import type { PlanEntry } from '../pipeline/cluster-walk.js';
import { formatBytes, formatCount, ProgressTracker, type JobLog } from '../pipeline/job-log.js';
import type { WorkerPool } from '../pipeline/pool.js';
import { orderedMerge } from '../pipeline/ordered-merge.js';
import { storedFilePath } from '../repo/layout.js';
import { majorOf, type Major } from '../pg/versions.js';
import type { RestoreFileResult, RestoreFileTask } from '../../workers/restore-file.js';
import { recoveryFiles, settingsToResetAfterPromotion, shellQuote, type RecoveryPlan, type RecoveryTarget } from './recovery-settings.js';
import { serverBinDirFor } from './server-binaries.js';
import { freeBytes, inspectTarget, resolveOwner, RESTORE_STATE_DIR, type Owner } from './target.js';
import { BLOCKS_PER_SEGMENT, carriesPageChecksums, parseRelationFileName } from '../format/relation-file.js';
import { fileSystemError } from '../os/io-error.js';

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
  /** Restore as a standby of this primary (standby.signal + primary_conninfo). */
  readonly standby?: { readonly primaryConninfo?: string };
  /** restore_command of the WAL archive to replay from after the backup's own WAL (wal-fetch). */
  readonly archiveRestoreCommand?: string;
  /** Keep the source's archive_mode/archive_command (default: archiving off in the copy). */
  readonly archiveAfterRestore?: boolean;
  /** The repository is a staging copy this restore may consume (files moved, not copied). */
  readonly consumeRepository?: boolean;
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
  phasesDone: number[];
}

/**
 * The six restore phases (pre-check, lay-down, wal-setup, start, topology, verify), each logged to the job log and to an audit file in
 * the target (<pgdata>/pgbacula_restore/audit.log). Re-running an interrupted restore of the
 * same backup into the same directory resumes: phases already done are skipped.
 */
export class RestoreJob {
  private readonly stateDir: string;
  private state: RestoreState;
  private owner: Owner | undefined;

  private readonly stagedWalDir: string;
  private readonly plan: RecoveryPlan;

  constructor(private readonly req: RestoreRequest) {
    this.stateDir = join(req.pgdataDir, RESTORE_STATE_DIR);
    this.stagedWalDir = join(this.stateDir, 'wal');
    // The archive first, then the backup's own WAL (staged here): the backup's last segment is
    // zero-padded after the stop LSN, and served first it would end recovery there. wal-fetch
    // exits 1 quietly when a file is not archived. '%' in paths is doubled.
    const staged = `cp ${shellQuote(`${this.stagedWalDir}/`).replace(/%/g, '%%')}%f "%p"`;
    this.plan = {
      restoreCommand: req.archiveRestoreCommand ? `${req.archiveRestoreCommand} || ${staged}` : staged,
      // skip_wal_replay: stop as soon as the backup is consistent; otherwise the target, or all WAL there is.
      target: req.skipWalReplay ? { kind: 'immediate' } : (req.target ?? { kind: 'end-of-wal' }),
      action: req.action ?? 'promote',
      timeline: 'latest',
      ...(req.standby ? { standby: req.standby } : {}),
    };
    this.state = { backupId: req.manifest.backupId, phasesDone: [] };
  }

  private phase(n: number, name: string, text: string): void {
    const line = `RESTORE PHASE ${n}/6 ${name}: ${text}`;
    this.req.log.info(line);
    if (existsSync(this.stateDir)) appendFileSync(join(this.stateDir, 'audit.log'), `${new Date().toISOString()} ${line}\n`);
  }

  private saveState(done: number): void {
    if (!this.state.phasesDone.includes(done)) this.state.phasesDone.push(done);
    writeFileSync(join(this.stateDir, 'state.json'), JSON.stringify(this.state) + '\n', { mode: 0o600 });
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
    this.phase(5, 'topology', 'no replication topology captured in this backup');
    this.saveState(5);
    const verified = await this.verify(started.port, started.socketDir, started.state);
    return { pgdataDir: this.req.pgdataDir, bytes: m.files.reduce((s, f) => s + f.size, 0), port: started.port, socketDir: started.socketDir, stoppedAt: started.stoppedAt, state: started.state, ...verified };
  }

  /** Phase 1: nothing the user had is touched before every check has passed. */
  private precheck(major: number, binDir: string): boolean {
    const { pgdataDir, manifest: m } = this.req;
    const t = inspectTarget(pgdataDir);
    const resumable = t.resumableBackupId === m.backupId;
    let earlier: RestoreState | undefined;
    if (resumable) earlier = JSON.parse(readFileSync(join(this.stateDir, 'state.json'), 'utf8')) as RestoreState;
    // A server we started ourselves in an interrupted run may keep running: phases 5–6 resume.
    if (t.runningPid && !earlier?.phasesDone.includes(4)) {
      throw new PgbaculaError('RESTORE_PRECHECK', `PostgreSQL is running in ${pgdataDir} (pid ${t.runningPid})`, { hint: 'Stop it first; a restore never writes under a running server.' });
    }
    const foreign = t.entries.filter((e) => e !== RESTORE_STATE_DIR);
    if (t.exists && foreign.length > 0 && !resumable && !this.req.overwriteExisting) {
      throw new PgbaculaError('RESTORE_PRECHECK', `restore target ${pgdataDir} is not empty (${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? ', …' : ''})`, {
        hint: 'Restore into an empty directory, or set overwrite_existing=true to replace its contents.',
      });
    }
    for (const ts of m.tablespaces) {
      const loc = this.tablespaceLocation(ts.oid, ts.location);
      if (existsSync(loc) && readdirSync(loc).length > 0 && !resumable && !this.req.overwriteExisting) {
        throw new PgbaculaError('RESTORE_PRECHECK', `tablespace ${ts.oid} location ${loc} is not empty`, {
          hint: `Give it another place with remap_tablespace=${ts.oid}=/new/dir, or set overwrite_existing=true.`,
        });
      }
    }
    const needed = m.files.reduce((s, f) => s + f.size, 0);
    const free = freeBytes(pgdataDir);
    // A staging repository on the target's file system is moved into place: only what is copied
    // (LZ4-stored files, tablespaces elsewhere, everything when the file systems differ) needs room.
    const copied = this.req.consumeRepository ? this.bytesCopiedFromStaging() : needed;
    if (free < copied * 1.05) {
      throw new PgbaculaError('RESTORE_PRECHECK', `not enough space for ${pgdataDir}: ${formatBytes(needed)} needed, ${formatBytes(free)} free`, { hint: 'Free space or choose another target.' });
    }
    this.owner = resolveOwner(pgdataDir);
    if (t.exists && foreign.length > 0 && !resumable) {
      // overwrite_existing=true: the explicit gate. Only now is anything removed.
      for (const e of t.entries) rmSync(join(pgdataDir, e), { recursive: true, force: true });
    }
    mkdirSync(pgdataDir, { recursive: true, mode: 0o700 });
    chownSync(pgdataDir, this.owner.uid, this.owner.gid);
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    chownSync(this.stateDir, this.owner.uid, this.owner.gid);
    if (earlier) this.state = earlier;
    this.phase(1, 'pre-check', `backup ${m.backupId} (PostgreSQL ${m.pgVersion}, ${formatBytes(needed)}) into ${pgdataDir}; ${formatBytes(free)} free; server binaries ${binDir} (major ${major})${resumable ? '; resuming an interrupted restore' : ''}`);
    this.saveState(1);
    return resumable;
  }

  private bytesCopiedFromStaging(): number {
    const { manifest: m, pgdataDir, repo } = this.req;
    let probe = pgdataDir;
    while (!existsSync(probe)) probe = dirname(probe);
    if (statSync(probe).dev !== statSync(repo).dev) return m.files.reduce((s, f) => s + f.size, 0);
    return m.files.filter((f) => f.stored === 'lz4' || f.path.startsWith('tablespaces/')).reduce((s, f) => s + f.size, 0);
  }

  private tablespaceLocation(oid: string, original: string): string {
    return this.req.remapTablespaces.get(oid) ?? original;
  }

  /** Where a stored item goes in the restored cluster, or undefined when it is not laid down as a file. */
  private targetOf(f: ManifestFile): string | undefined {
    const { pgdataDir, manifest: m } = this.req;
    if (f.path.startsWith('pgdata/')) return join(pgdataDir, f.path.slice('pgdata/'.length));
    if (f.path.startsWith('tablespaces/')) {
      const [, oid, ...rest] = f.path.split('/');
      const ts = m.tablespaces.find((t) => t.oid === oid);
      if (!ts) return undefined;
      return join(this.tablespaceLocation(oid!, ts.location), ...rest);
    }
    if (f.path === 'backup_label') return join(pgdataDir, 'backup_label');
    // The backup's WAL is staged for restore_command (archive recovery), not put in pg_wal.
    if (f.path.startsWith('wal/')) return join(this.stagedWalDir, f.path.slice('wal/'.length));
    // tablespace_map: the links are made here, to the (possibly remapped) locations.
    return undefined;
  }

  /** Phase 2: every file decoded, hash-checked and written by the worker pool. */
  private async layDown(): Promise<void> {
    const { manifest: m, pool, repo } = this.req;
    const owner = this.owner!;
    const mkdirOwned = (dir: string, mode = 0o700) => {
      mkdirSync(dir, { recursive: true, mode });
      chownSync(dir, owner.uid, owner.gid);
    };
    for (const ts of m.tablespaces) mkdirOwned(this.tablespaceLocation(ts.oid, ts.location));
    for (const f of m.files) {
      if (f.type === 'dir') {
        const target = this.targetOf(f);
        if (target) mkdirOwned(target, f.mode & 0o777);
      } else if (f.type === 'symlink' && f.path.startsWith('pgdata/pg_tblspc/')) {
        const oid = f.path.split('/').pop()!;
        const link = join(this.req.pgdataDir, 'pg_tblspc', oid);
        mkdirOwned(dirname(link));
        rmSync(link, { force: true });
        symlinkSync(this.tablespaceLocation(oid, f.linkTarget!), link);
      }
    }
    const files = m.files.filter((f) => f.type === 'file' && this.targetOf(f) !== undefined);
    const total = files.reduce((s, f) => s + f.size, 0);
    const progress = new ProgressTracker(this.req.log, 'restore', total, this.req.progressIntervalMs);
    const problems: string[] = [];
    let targetFailure: { path: string; problem: string; errno: string } | undefined;
    try {
      const tasks = files.map((f) => {
        const target = this.targetOf(f)!;
        mkdirOwned(dirname(target));
        const task: RestoreFileTask = {
          storedPath: storedFilePath(repo, m.backupId, f.path, f.stored ?? 'raw'),
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
        };
        return { bytes: Math.min(f.size, m.rangeSize), start: async () => ({ f, r: (await pool.run(task, { name: 'restoreFile' })) as RestoreFileResult }) };
      });
      for await (const { f, r } of orderedMerge(tasks, { windowBytes: 64 * m.rangeSize, maxTasks: pool.options.maxThreads * 4 })) {
        if (!r.ok && r.targetErrno) targetFailure ??= { path: this.targetOf(f)!, problem: r.problem ?? '', errno: r.targetErrno };
        else if (!r.ok) problems.push(`${f.path}: ${r.problem}`);
        progress.add(f.size);
      }
    } finally {
      progress.stop();
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
    this.phase(2, 'lay-down', `${formatBytes(total)} restored (${formatCount(files.length)} files, every hash checked)`);
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
        rmSync(p);
        dropped.push(name);
      }
    }
    if (!this.req.archiveAfterRestore) {
      // A restored copy archiving into the source's archive would add a new timeline there that
      // every later restore of the source would follow (Barman turns it off the same way).
      const auto = join(pgdataDir, 'postgresql.auto.conf');
      appendFileSync(auto, "# pgbacula restore: no archiving from the restored copy (archive_after_restore=true keeps it)\narchive_mode = 'off'\n");
      chownSync(auto, owner.uid, owner.gid);
    }
    if (this.req.restorePort !== undefined) {
      const auto = join(pgdataDir, 'postgresql.auto.conf');
      appendFileSync(auto, `# pgbacula restore: the restored server's port\nport = ${this.req.restorePort}\n`);
      chownSync(auto, owner.uid, owner.gid);
    }
    const major = majorOf(m.pgVersionNum) as Major;
    for (const f of recoveryFiles(major, this.plan)) {
      const path = join(pgdataDir, f.name);
      if (f.how === 'append') appendFileSync(path, f.content);
      else writeFileSync(path, f.content, { mode: 0o600 });
      chownSync(path, owner.uid, owner.gid);
    }
    const t = this.plan.target;
    const goal = this.plan.standby
      ? 'follow the primary as a standby'
      : t.kind === 'immediate'
        ? 'stop as soon as consistent (recovery_target = immediate)'
        : t.kind === 'end-of-wal'
          ? 'replay every WAL segment there is'
          : `stop at recovery_target_${t.kind} '${t.value}', then ${this.plan.action}`;
    this.phase(3, 'wal-setup', `${m.walSegments.length} WAL segment(s) ${m.walSegments[0] ?? ''}..${m.walSegments.at(-1) ?? ''} staged; restore_command: ${this.req.archiveRestoreCommand ? 'the WAL archive, then the backup\'s own WAL' : 'the backup\'s own WAL'}; ${goal}${t.kind === 'end-of-wal' || t.kind === 'immediate' ? ', then promote' : ''}; backup end ${m.stopLsn} (timeline ${m.stopTimeline}); ${major >= 12 ? 'recovery.signal + postgresql.auto.conf' : 'recovery.conf'}${this.req.archiveAfterRestore ? '; archiving kept' : '; archiving off in the copy'}${this.req.restorePort ? `; port ${this.req.restorePort}` : ''}${dropped.length ? `; removed the source's ${dropped.join(', ')}` : ''}`);
    this.saveState(3);
  }

  /** Phase 4: start as the data directory's owner; pg_ctl waits until recovery ends and connections are accepted. */
  private async start(binDir: string, major: number): Promise<{ port: number | undefined; socketDir: string | undefined; stoppedAt: string | undefined; state: RestoreSummary['state'] }> {
    const { pgdataDir } = this.req;
    const owner = this.owner ?? resolveOwner(pgdataDir);
    const logFile = join(this.stateDir, 'server.log');
    writeFileSync(logFile, '', { flag: 'a' });
    chownSync(this.stateDir, owner.uid, owner.gid);
    chownSync(logFile, owner.uid, owner.gid);
    const plan = this.plan;
    const shutdownAtTarget = !plan.standby && plan.action === 'shutdown' && plan.target.kind !== 'end-of-wal';
    let startError: Error | undefined;
    if (!readPostmasterPid(pgdataDir)) {
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
      const tail = readFileSync(logFile, 'utf8').split('\n').filter(Boolean).slice(-8).join('\n  ');
      throw new PgbaculaError('RESTORE_PRECHECK', `the restored server in ${pgdataDir} did not start: ${startError.message.split('\n')[0]}`, {
        hint: `Its log (${logFile}) ends with:\n  ${tail}`,
      });
    }
    const log = await this.watchLog(logFile, done, this.req.startTimeoutSeconds * 1000, shutdownAtTarget);
    const stoppedAt = /recovery stopping (?:before|after|at) [^\n]*/.exec(log)?.[0];
    if (plan.target.kind !== 'end-of-wal' && !plan.standby && !stoppedAt) {
      throw new PgbaculaError('WAL_GAP', `the restored server did not reach the recovery target (${plan.target.kind}${'value' in plan.target ? ` '${plan.target.value}'` : ''}): the WAL ended first`, {
        hint: `pgbacula info --repo shows the recoverable window and any WAL gap; see ${logFile}.`,
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
    this.phase(4, 'start', `PostgreSQL ${major} as uid ${owner.uid}${port ? ` on port ${port}` : ''}: ${[stoppedAt, ...reached].filter(Boolean).join('; ')}; ${what}`);
    this.saveState(4);
    return { port, socketDir, stoppedAt, state };
  }

  /** Poll the server log until `done` matches; a FATAL/PANIC or a stopped server fails with the log's tail. */
  private async watchLog(logFile: string, done: RegExp, timeoutMs: number, stopExpected = false): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = readFileSync(logFile, 'utf8');
      if (done.test(text)) return text;
      const fatal = /(?:FATAL|PANIC):\s+(.*)/.exec(text.split('\n').filter((l) => !/the database system is (starting up|not yet accepting)/.test(l)).join('\n'));
      if (stopExpected && !readPostmasterPid(this.req.pgdataDir) && done.test(readFileSync(logFile, 'utf8'))) return readFileSync(logFile, 'utf8');
      if (fatal || (!stopExpected && !readPostmasterPid(this.req.pgdataDir)) || Date.now() > deadline) {
        const tail = text.split('\n').filter(Boolean).slice(-8).join('\n  ');
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
    if (major >= 12) {
      const client = new pg.Client({ host: socketDir ?? '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      client.on('error', () => undefined);
      try {
        await client.connect();
        for (const name of settingsToResetAfterPromotion(this.plan)) await client.query(`ALTER SYSTEM RESET ${name}`);
        await client.query('SELECT pg_reload_conf()');
      } catch (e) {
        this.req.log.warning(`could not reset the recovery settings in postgresql.auto.conf: ${(e as Error).message}`);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    rmSync(this.stagedWalDir, { recursive: true, force: true });
  }

  /** Phase 6: SELECT 1, and every data page of the restored cluster verified online. */
  private async verify(port: number | undefined, socketDir: string | undefined, state: RestoreSummary['state']): Promise<{ pagesVerified: number; checksumFailures: number }> {
    const { manifest: m, pool } = this.req;
    if (state === 'shut down') {
      this.phase(6, 'verify', 'the server shut down at the target as asked (recovery_target_action=shutdown): change the target or the action and start it to continue');
      this.saveState(6);
      return { pagesVerified: 0, checksumFailures: 0 };
    }
    const client = new pg.Client({ host: socketDir ?? '127.0.0.1', port: port ?? 5432, user: 'postgres', database: 'postgres' });
    client.on('error', () => undefined);
    let answered = false;
    try {
      await client.connect();
      answered = (await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one === 1;
    } catch (e) {
      this.req.log.warning(`SELECT 1 on the restored server could not run as postgres over ${socketDir ?? 'TCP'}: ${(e as Error).message}`);
    } finally {
      await client.end().catch(() => undefined);
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
          return { path: f.path, absPath: abs, type: 'file', mode: f.mode, mtimeMs: Date.parse(f.mtime), size: f.size, verifyPages: true, firstBlock: seg * BLOCKS_PER_SEGMENT };
        });
      const nullSink = { begin: async () => undefined, write: async () => undefined, end: async () => undefined };
      const r = await emitFiles(entries, { pool, sink: nullSink, log: this.req.log, verifyPages: true, compress: false });
      pagesVerified = r.pagesChecked;
      failures = r.failures.length;
      void carriesPageChecksums;
    }
    this.phase(6, 'verify', `SELECT 1 ${answered ? 'answered' : 'NOT answered'}; page checksums ${m.pageVerification === 'unavailable' ? 'unavailable (cluster without checksums)' : `${formatCount(pagesVerified)} pages, ${failures} failures`}`);
    if (!answered) throw new PgbaculaError('RESTORE_PRECHECK', 'the restored server does not answer SELECT 1', { hint: `See ${join(this.stateDir, 'server.log')}.` });
    this.saveState(6);
    return { pagesVerified, checksumFailures: failures };
  }
}
