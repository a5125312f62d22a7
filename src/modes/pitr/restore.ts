/**
 * Restore of mode pitr through Bacula: the items of the selected jobs (a Full, then later
 * Incrementals/Differentials — see pitr.ts for their paths) arrive from the FD and are staged as
 * a repository next to the target data directory:
 *
 *   <pgdata_dir>.pgbacula-restore-<job>/backups/<id>/files/...   base backups, stored form kept
 *   <pgdata_dir>.pgbacula-restore-<job>/backups/<id>/manifest.json
 *   <pgdata_dir>.pgbacula-restore-<job>/wal/<system>/...          WAL, validated by the archive's rules
 *
 * When the stream ends the standalone restore runs on that repository: the base backup is the
 * latest that ends before the target, the target is checked against the WAL there is (gaps named)
 * before anything is written, then the six phases, with wal-fetch serving the staged WAL. The
 * staged base backups go when the restore is done; the staged WAL stays while the server may
 * still read it (paused, shut down at the target, standby).
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PgbaculaError } from '../../errors.js';
import type { ItemTrailer } from '../../item/item.js';
import { formatBytes, formatCount } from '../../item/job-log.js';
import type { RestoreDecision, RestoreEntry, RestoreTarget } from '../../item/restore-target.js';
import { forgetScratch, registerScratch, removeScratch } from '../../pipeline/scratch-dirs.js';
import { initRepository } from '../../repo/catalog.js';
import { BACKUP_ID } from '../../repo/layout.js';
import { assertOutsideProtected, inspectTarget, resolveOwner, RESTORE_STATE_DIR } from '../../restore/target.js';
import { completeBackups, pickBaseBackup, restoreFromRepository, type RestoreOptions } from '../../restore/repo-restore.js';
import { parseWalFileName } from '../../wal/segment.js';
import { majorOf } from '../../pg/versions.js';
import { serverBinDirFor } from '../../restore/server-binaries.js';
import { pushWalFile } from '../../archive/push.js';
import { walArchiveRoot } from '../../archive/layout.js';
import { adoptNewerWal, holdsWalBeyond, newestWal } from '../../archive/adopt-wal.js';
import type { RestoreLog } from '../../restore/file-target.js';
import { giveTreeToSync, setMode } from '../../os/file-owner.js';
import { NewFile } from '../../os/new-file.js';
import { makeDir, makeDirs, removeTree } from '../../os/user-dirs.js';
import { moveFile } from '../../os/user-files.js';

export interface PitrRestoreSettings {
  readonly options: RestoreOptions;
  /** How the operator names the server binaries where this restore runs (the hint when none are found). */
  readonly binDirHint: string;
  readonly jobId: number;
  readonly progressIntervalMs: number;
}

type Placement =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'manifest'; readonly backupId: string; readonly path: string }
  | { readonly kind: 'wal'; readonly name: string; readonly path: string }
  | { readonly kind: 'dir'; readonly path: string }
  | { readonly kind: 'ignore' };

/** Where an item of `<cluster>/pitr/...` or `<cluster>/wal/...` goes in the staging repository. */
export function placeItem(staging: string, namespacePath: string, type: RestoreEntry['type']): Placement | undefined {
  const parts = namespacePath.split('/');
  if (parts.length < 3 || parts.some((p) => p === '' || p === '.' || p === '..')) return undefined;
  const [, area, ...rest] = parts;
  if (area === 'pitr') {
    const [id, ...inner] = rest;
    if (!id || !BACKUP_ID.test(id)) return undefined;
    if (inner.length === 0) return type === 'dir' ? { kind: 'dir', path: join(staging, 'backups', id) } : undefined;
    if (inner.length === 1 && inner[0] === 'manifest.json') return { kind: 'manifest', backupId: id, path: join(staging, 'backups', id, 'manifest.json') };
    const path = join(staging, 'backups', id, 'files', ...inner);
    if (type === 'dir') return { kind: 'dir', path };
    // Links are recorded in the manifest and made by the restore itself.
    if (type === 'symlink') return { kind: 'ignore' };
    return { kind: 'file', path };
  }
  if (area === 'wal') {
    if (type === 'dir') return { kind: 'ignore' };
    if (rest.length !== 2 || !/^[0-9A-F]{8}$/.test(rest[0]!)) return undefined;
    const name = rest[1]!;
    const parsed = parseWalFileName(name);
    // A .partial is a cdp job's copy of the receiver's open segment: the end of WAL of a restore
    // to latest (never served over a complete copy: src/archive/partial-at-end.ts).
    if (!parsed || parsed.kind === 'backup') return parsed ? { kind: 'ignore' } : undefined;
    return { kind: 'wal', name, path: join(staging, 'incoming', name) };
  }
  return undefined;
}

export class PitrRestoreTarget implements RestoreTarget {
  private readonly pgdataDir: string;
  private readonly staging: string;
  private current: { placement: Placement; fh: NewFile | undefined; tmp: string | undefined; bytes: number } | undefined;
  private readonly walNames = new Set<string>();
  private readonly backupIds = new Set<string>();
  private files = 0;
  private bytes = 0;
  /** What pgdata_dir was before this job: a failed restore puts it back (undefined: leave it). */
  private targetBefore: 'absent' | 'empty' | undefined;

  constructor(
    private readonly s: PitrRestoreSettings,
    private readonly log: RestoreLog,
  ) {
    const dir = s.options.pgdataDir;
    if (!dir) {
      throw new PgbaculaError('PARAM_MISSING', 'a pitr restore through Bacula needs pgdata_dir (the directory to lay PGDATA in)', {
        hint: 'In bconsole: mod → Plugin Options → pgdata_dir=/new/data/dir (an empty or new directory). Or restore the files with where=/some/dir.',
      });
    }
    if (!dir.startsWith('/')) {
      throw new PgbaculaError('PARAM_INVALID', `pgdata_dir=${dir} is not an absolute path`, { hint: 'Give the new data directory as an absolute path, e.g. /srv/pg/restored.' });
    }
    this.pgdataDir = dir.replace(/\/+$/, '');
    this.staging = `${this.pgdataDir}.pgbacula-restore-${s.jobId}`;
  }

  /** Before the first byte: the target must be usable, or nothing is received. */
  async prepare(): Promise<void> {
    assertOutsideProtected([{ what: 'restore target', path: this.pgdataDir }], [{ what: 'WAL spool', path: this.s.options.walSpool }]);
    const t = inspectTarget(this.pgdataDir);
    if (t.runningPid) {
      throw new PgbaculaError('RESTORE_PRECHECK', `PostgreSQL is running in ${this.pgdataDir} (pid ${t.runningPid})`, { hint: 'Stop it first, or choose another pgdata_dir.' });
    }
    const foreign = t.entries.filter((e) => e !== RESTORE_STATE_DIR);
    if (foreign.length > 0 && !this.s.options.overwriteExisting) {
      throw new PgbaculaError('RESTORE_PRECHECK', `restore target ${this.pgdataDir} is not empty (${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? ', …' : ''})`, {
        hint: 'Choose an empty or new pgdata_dir, or set the Plugin Option overwrite_existing=yes to replace its contents.',
      });
    }
    this.targetBefore = !t.exists ? 'absent' : foreign.length === 0 ? 'empty' : undefined;
    await removeTree(this.staging);
    // Made exclusively (not mkdir -p): a name planted in between (a link) fails here instead of
    // being written through. Root-owned: only the WAL inside is handed to the server's user.
    await makeDir(this.staging, 0o755);
    registerScratch(this.staging);
    await initRepository(this.staging);
    this.log.info(`staging the restored jobs in ${this.staging} (a repository; removed when the restore is done)`);
  }

  async begin(entry: RestoreEntry): Promise<RestoreDecision> {
    const placement = entry.namespacePath === undefined ? undefined : placeItem(this.staging, entry.namespacePath, entry.type);
    if (!placement) {
      throw new PgbaculaError('RESTORE_PRECHECK', `${entry.fname} is not a file of a pitr backup`, {
        hint: 'Select only /@pgbacula/<cluster>/pitr/... and /@pgbacula/<cluster>/wal/... files, or restore with where=/some/dir.',
      });
    }
    if (placement.kind === 'ignore') {
      this.current = { placement, fh: undefined, tmp: undefined, bytes: 0 };
      return 'restore';
    }
    if (placement.kind === 'dir') {
      await makeDirs(placement.path, 0o750);
      this.current = { placement, fh: undefined, tmp: undefined, bytes: 0 };
      return 'restore';
    }
    await makeDirs(dirname(placement.path), 0o750);
    // Written under a temporary name: a manifest marks its backup complete, a WAL file is
    // archived from incoming/ only when whole.
    const tmp = `${placement.path}.part`;
    const fh = await NewFile.create(tmp, 0o640);
    this.current = { placement, fh, tmp, bytes: 0 };
    return 'restore';
  }

  async write(chunk: Uint8Array): Promise<void> {
    const c = this.current;
    if (!c?.fh) return;
    c.fh.appendSync(chunk);
    c.bytes += chunk.length;
  }

  async end(_trailer: ItemTrailer): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (!c?.fh || !c.tmp) return;
    await c.fh.close();
    const p = c.placement as Exclude<Placement, { kind: 'ignore' | 'dir' }>;
    await moveFile(c.tmp, p.path);
    this.files++;
    this.bytes += c.bytes;
    if (p.kind === 'manifest') this.backupIds.add(p.backupId);
    if (p.kind === 'wal') this.walNames.add(p.name);
  }

  async settle(): Promise<void> {
    // Entries are independent.
  }

  async finish(): Promise<void> {
    try {
      await this.restore();
    } catch (e) {
      // A server started by the failed restore may still read the staged WAL (restore_command).
      const running = inspectTarget(this.pgdataDir).runningPid !== undefined;
      await this.cleanup(running);
      // The staged files were moved into the target, so a Bacula restore cannot resume: put an
      // empty or new pgdata_dir back as it was, so the same restore can simply be run again.
      let reset = '';
      if (!running && this.targetBefore) {
        if (this.targetBefore === 'absent') await removeTree(this.pgdataDir);
        else for (const name of await readdir(this.pgdataDir).catch(() => [] as string[])) await removeTree(join(this.pgdataDir, name));
        reset = ` ${this.pgdataDir} is as it was before the restore (${this.targetBefore}).`;
      }
      throw forBacula(e, reset);
    }
  }

  private async restore(): Promise<void> {
    if (this.files === 0) throw new PgbaculaError('RESTORE_PRECHECK', 'nothing was restored: the selection held no pitr files');
    // WAL into the staged archive: history files first (a timeline's history before its WAL),
    // then segments in order; each validated (system, size, page headers) like wal-push does.
    const root = walArchiveRoot({ repo: this.staging });
    const incoming = join(this.staging, 'incoming');
    const names = [...this.walNames].sort((a, b) => {
      const ha = a.endsWith('.history') ? 0 : 1;
      const hb = b.endsWith('.history') ? 0 : 1;
      return ha - hb || (a.slice(8) < b.slice(8) ? -1 : a.slice(8) > b.slice(8) ? 1 : a < b ? -1 : 1);
    });
    const complete = await completeBackups(this.staging);
    if (complete.length === 0) {
      throw new PgbaculaError('RESTORE_PRECHECK', `the restored files hold no complete base backup${this.backupIds.size === 0 ? ' (no manifest.json among them)' : ''}`, {
        hint: 'Select the Full job of the chain together with the later jobs (bconsole: restore client=… fileset=… where=/ current select all done, or jobid=<Full>,<later jobs>).',
      });
    }
    // The WAL of the system whose backup the restore will use (a chain may span a re-created cluster).
    const chosen = pickBaseBackup(complete, this.s.options.target, 'the restored Bacula jobs');
    // The server binaries before any work: the hint names the Plugin Option, the one place a
    // bconsole restore can name them (the CLI's --pg-bin-dir does not exist here).
    const binDir = serverBinDirFor(majorOf(chosen.pgVersionNum), this.s.options.pgBinDir, this.s.binDirHint);
    const systemId = chosen.systemIdentifier;
    let segments = 0;
    let newestPartial: string | undefined;
    let foreign = 0;
    let first = '';
    let last = '';
    for (const name of names) {
      let res;
      try {
        // Staged for replay only: no block summaries (a restore counts no changed blocks).
        res = await pushWalFile({ root, sourcePath: join(incoming, name), expectedSystemId: systemId, singleSystem: true, summarize: false, warn: (t) => this.log.warning(t) });
      } catch (e) {
        if (e instanceof PgbaculaError && e.code === 'WAL_CONFLICT' && /belongs to database system/.test(e.message)) {
          foreign++;
          continue;
        }
        throw e;
      }
      if (res.kind === 'segment') {
        segments++;
        first ||= name;
        last = name;
      } else if (res.kind === 'partial') newestPartial = name;
    }
    if (foreign) this.log.info(`${foreign} WAL segments of another system (an earlier cluster of this chain) were left out`);
    await removeTree(incoming);
    const spool = this.s.options.walSpool;
    if (this.s.options.walFromSpool) {
      const a = await adoptNewerWal({ from: spool, into: root, systemId, warn: (t) => this.log.warning(t) });
      if (a.none) {
        throw new PgbaculaError('RESTORE_PRECHECK', `wal_from_spool=yes, but the spool ${spool} holds no WAL of database system ${systemId} (the cluster of base backup ${chosen.backupId})`, {
          hint: 'Name the spool that received this cluster\'s WAL with the Plugin Option wal_spool=DIR (on this client), or restore without wal_from_spool to replay the WAL of the restored jobs only.',
        });
      }
      this.log.info(
        `WAL from the spool ${spool}: ${a.segments ? `${a.first}..${a.last} (${a.segments} segment${a.segments === 1 ? '' : 's'})` : 'no complete segment'} beyond the restored jobs${a.histories ? `, ${a.histories} history file${a.histories === 1 ? '' : 's'}` : ''}${a.partial ? `; open segment ${a.partial.name} (from ${a.partial.source})` : ''}${a.refused.length ? `; ${a.refused.length} left out (warnings above)` : ''}`,
      );
    } else {
      // Said, never passed over: a restore from media alone may end before WAL this host still has.
      const inSpool = await newestWal(spool, systemId).catch(() => undefined);
      if (inSpool !== undefined && (await holdsWalBeyond(inSpool, await newestWal(root, systemId)).catch(() => false))) {
        this.log.info(`the spool ${spool} on this client holds WAL beyond the restored jobs (up to ${inSpool.name}): the Plugin Option wal_from_spool=yes replays it too`);
      }
    }
    const ids = complete.map((m) => m.backupId).join(', ');
    this.log.info(`received ${formatCount(this.files)} files (${formatBytes(this.bytes)}): base backup${complete.length === 1 ? '' : 's'} ${ids}; WAL ${segments ? `${first}..${last} (${segments} segments)` : 'none beyond the backups\' own'}${newestPartial ? `; open segment ${newestPartial}` : ''}`);
    const owner = resolveOwner(this.pgdataDir);
    // The server's user reads the staged WAL (restore_command); the staged base backups stay
    // root's, so nothing it does can change a file between its check and its move into place.
    await setMode(this.staging, 0o755);
    if (existsSync(join(this.staging, 'wal'))) giveTreeToSync(join(this.staging, 'wal'), owner);
    const result = await restoreFromRepository({
      repo: this.staging,
      options: { ...this.s.options, pgBinDir: binDir },
      log: this.log,
      progressIntervalMs: this.s.progressIntervalMs,
      manifest: chosen,
      // The staging sits next to the target: files are moved into place, not written twice.
      consume: true,
      onChosen: (m) => this.log.info(`base backup ${m.backupId} chosen (lsn ${m.startLsn}..${m.stopLsn}, ended ${m.stopTime}, PostgreSQL ${m.pgVersion})`),
    });
    this.log.info(
      `restore complete: ${result.pgdataDir}${result.stoppedAt ? `; ${result.stoppedAt}` : ''}; PostgreSQL ${result.state === 'shut down' ? 'shut down at the target' : `is ${result.state} on port ${result.port}`}`,
    );
    await this.cleanup(result.state !== 'promoted');
  }

  /** The staged base backups always go; the staged WAL stays while a server may read it. */
  private async cleanup(keepWal: boolean): Promise<void> {
    if (!keepWal) {
      await removeTree(this.staging);
      removeScratch(this.staging);
      return;
    }
    await removeTree(join(this.staging, 'backups'));
    await removeTree(join(this.staging, 'incoming'));
    forgetScratch(this.staging);
    if (await readdir(join(this.staging, 'wal')).then((l) => l.length > 0, () => false)) {
      this.log.info(`the staged WAL stays in ${this.staging} while the restored server may still read it (restore_command); remove it once recovery has ended`);
    } else {
      await removeTree(this.staging);
    }
  }

  dispose(): void {
    void this.current?.fh?.close().catch(() => undefined);
  }
}

/**
 * A failed restore's error as a Bacula operator can act on it: the CLI's remedies (verify --repo
 * on a repository) do not exist here, the staging repository is gone.
 */
function forBacula(e: unknown, reset: string): unknown {
  if (!(e instanceof PgbaculaError)) return e;
  if (e.code === 'REPOSITORY' && /is damaged/.test(e.message)) {
    return new PgbaculaError('REPOSITORY', e.message, {
      hint: `The files Bacula restored do not match the manifest sealed at backup time (a damaged volume, or a change on the way): run the restore again, or restore an earlier Full with its later jobs.${reset}`,
      cause: e,
    });
  }
  if (e.code === 'REPOSITORY' && /cannot be restored: .*not a complete backup here/.test(e.message)) {
    // The CLI's remedy (another chain of the repository) means another job selection here.
    return new PgbaculaError('REPOSITORY', e.message, {
      hint: `A block-level backup is restored with its chain: select the Full job and every later job up to the one restored (a Differential needs only its Full), e.g. bconsole restore … fileset=… current select all done; each job stores its base backup under /@pgbacula/<cluster>/pitr/<backup-id>/.${reset}`,
      cause: e,
    });
  }
  if (!reset) return e;
  return new PgbaculaError(e.code, e.message, { hint: `${e.hint ? `${e.hint.replace(/\.?$/, '.')}` : ''}${reset}`, cause: e });
}
