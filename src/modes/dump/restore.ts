/**
 * Restore of dump backups: the items of a dump job (layout.ts) arriving from a restore
 * source (the Bacula FD) go either
 *
 * - to files (Bacula `where=/dir`): every archive written as the file it was, under the restore
 *   prefix — for pg_restore by hand, or to keep (src/restore/file-target.ts, for every mode); or
 * - into a server (Bacula `where=/`, i.e. empty): globals first (psql), then each database:
 *   custom and tar archives streamed into `pg_restore --create`, plain scripts into psql, directory
 *   archives staged and restored with `pg_restore -j parallel_jobs`. `target_database` restores one
 *   database (and the globals it needs); an existing database is replaced only when it is empty or
 *   `overwrite_existing=true`.
 *
 * Every failure of a database is that database's error (the others are still restored); the job
 * ends with an error status whenever anything failed.
 */
import type { WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { describeEndpoint, type ConnectionSettings } from '../../config/connection.js';
import { PgbaculaError } from '../../errors.js';
import { findClientTools, toolConninfo, toolEnvironment, type ClientTools } from '../../server/client-tools.js';
import { openSession } from '../../server/session.js';
import { versionFacts } from '../../pg/versions.js';
import { serverVersion } from '../../server/server-facts.js';
import { startTool, succeeded, toolFailure, type ToolExit, type ToolProcess } from '../../server/tool-process.js';
import type { ItemTrailer } from '../../item/item.js';
import { formatBytes, ProgressTracker } from '../../item/job-log.js';
import type { RestoreDecision, RestoreEntry, RestoreTarget } from '../../item/restore-target.js';
import { registerScratch, removeScratch } from '../../pipeline/scratch-dirs.js';
import { createFileStream } from '../../os/new-file.js';
import { makeDirs, removeTree } from '../../os/user-dirs.js';
import { encodeName } from '../../format/path-name.js';
import { parseDumpManifest, parseDumpPath, type DumpFormat, type DumpManifest, type DumpPath } from './layout.js';
import { prepareTmpdir } from '../../os/tmpdir.js';
import { writeWithBackpressure, type RestoreLog } from '../../restore/file-target.js';

// ---------------------------------------------------------------------------------------------
// Restore into a server (where= empty)
// ---------------------------------------------------------------------------------------------

export interface ServerRestoreSettings {
  readonly connection: ConnectionSettings;
  readonly targetDatabase: string | undefined;
  readonly overwriteExisting: boolean;
  /** remap_tablespace entries: `<oid or name>=/new/dir`. */
  readonly remapTablespaces: readonly string[];
  /** pg_restore -j for directory archives. */
  readonly parallelJobs: number;
  readonly tmpdir: string;
  readonly pgBinDir: string | undefined;
  readonly job: string;
  readonly progressIntervalMs: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const quoteLiteral = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/** psql error lines of a globals script that only mean "it is already there". */
function isAlreadyThere(line: string): boolean {
  return /ERROR:\s+(role|tablespace) ".*" already exists/.test(line);
}

/** psql's own error lines (`psql:<stdin>:12: ERROR:  ...`). */
function psqlErrors(exit: ToolExit): string[] {
  return exit.stderr.filter((l) => /\b(ERROR|FATAL|PANIC):/.test(l) || /^psql: error:/.test(l));
}

/**
 * Rewrite `CREATE TABLESPACE <name> OWNER <o> LOCATION '<dir>';` lines of a pg_dumpall globals
 * script for remap_tablespace (keys: tablespace name or OID from the manifest). Pure.
 */
export function remapTablespaceLocations(
  script: string,
  remap: readonly string[],
  known: DumpManifest['tablespaces'],
): { script: string; applied: Array<{ name: string; from: string; to: string }>; unused: string[] } {
  const wanted = new Map<string, string>();
  for (const item of remap) {
    const eq = item.indexOf('=');
    const key = eq > 0 ? item.slice(0, eq).trim() : '';
    const dir = eq > 0 ? item.slice(eq + 1).trim() : '';
    if (!key || !dir.startsWith('/')) {
      throw new PgbaculaError('PARAM_INVALID', `invalid value "${item}" for parameter remap_tablespace`, {
        hint: 'Accepted: <tablespace name or OID>=/absolute/dir, comma separated.',
      });
    }
    const byOid = /^\d+$/.test(key) ? known.find((t) => String(t.oid) === key)?.name : undefined;
    wanted.set(byOid ?? key, dir);
  }
  const used = new Set<string>();
  const applied: Array<{ name: string; from: string; to: string }> = [];
  const out = script.replace(
    /^CREATE TABLESPACE ("(?:[^"]|"")+"|[^\s"]+) OWNER (.+?) LOCATION '((?:[^']|'')*)';$/gm,
    (line, rawName: string, owner: string, loc: string) => {
      const name = rawName.startsWith('"') ? rawName.slice(1, -1).replace(/""/g, '"') : rawName;
      const to = wanted.get(name);
      if (to === undefined) return line;
      used.add(name);
      applied.push({ name, from: loc.replace(/''/g, "'"), to });
      return `CREATE TABLESPACE ${rawName} OWNER ${owner} LOCATION ${quoteLiteral(to)};`;
    },
  );
  const unused = [...wanted.keys()].filter((k) => !used.has(k));
  return { script: out, applied, unused };
}

type Sink =
  | { kind: 'buffer'; what: 'manifest' | 'globals'; chunks: Buffer[] }
  | { kind: 'tool'; db: string; format: DumpFormat; proc: ToolProcess; input: Writable; gunzip?: Gunzip; tracker: ProgressTracker; failed?: unknown }
  | { kind: 'staged-file'; db: string; out: WriteStream }
  | { kind: 'none' };

interface PendingDirectory {
  readonly db: string;
  readonly dir: string;
}

export class ServerRestoreTarget implements RestoreTarget {
  private tools!: ClientTools;
  private serverVersion = '';
  private serverMajor = 0;
  private manifest: DumpManifest | undefined;
  private sink: Sink = { kind: 'none' };
  private pending: PendingDirectory | undefined;
  private readonly restored: string[] = [];
  private readonly failed: string[] = [];
  private readonly skippedDbs = new Set<string>();
  private globalsDone = false;
  private readonly t0 = Date.now();
  private readonly staging: string;
  private readonly env: Record<string, string>;

  constructor(
    private readonly s: ServerRestoreSettings,
    private readonly log: RestoreLog,
  ) {
    this.staging = join(s.tmpdir, `pgbacula-restore-${encodeName(s.job)}-${process.pid}`);
    this.env = toolEnvironment(s.connection, s.env ?? process.env);
  }

  private get endpoint(): string {
    return describeEndpoint(this.s.connection);
  }

  /** Connect to the target, choose the tools; fails the restore before any data moves. */
  async prepare(): Promise<void> {
    const session = await openSession(this.s.connection, { applicationName: 'pgbacula restore' });
    try {
      const r = await serverVersion(session);
      if (r.inRecovery) {
        throw new PgbaculaError('RESTORE_PRECHECK', `${this.endpoint} is a standby (in recovery): a dump cannot be restored into it`, {
          hint: 'Restore into the primary, or into another server (Plugin Options host/port).',
        });
      }
      this.serverVersion = r.version;
      this.serverMajor = r.major;
    } finally {
      await session.end().catch(() => undefined);
    }
    this.tools = findClientTools(this.s.pgBinDir, this.s.env ?? process.env);
    this.log.info(
      `restoring dumps into PostgreSQL ${this.serverVersion} at ${this.endpoint} as ${this.s.connection.user} ` +
        `(pg_restore ${this.tools.version}; databases: ${this.s.targetDatabase ?? 'all'}; overwrite_existing=${this.s.overwriteExisting})`,
    );
  }

  private skipDatabase(db: string): boolean {
    return this.s.targetDatabase !== undefined && db !== this.s.targetDatabase;
  }

  async begin(entry: RestoreEntry): Promise<RestoreDecision> {
    const at = entry.namespacePath ? parseDumpPath(entry.namespacePath) : undefined;
    if (!at) {
      throw new PgbaculaError('RESTORE_PRECHECK', `${entry.fname} is not part of a pgbacula dump backup`, {
        hint: 'Restore it with where=/some/dir to get the file itself.',
      });
    }
    switch (at.kind) {
      case 'manifest':
        this.sink = { kind: 'buffer', what: 'manifest', chunks: [] };
        return 'restore';
      case 'globals':
        this.sink = { kind: 'buffer', what: 'globals', chunks: [] };
        return 'restore';
      case 'archive':
        if (this.skipDatabase(at.database!)) return this.skip(at.database!);
        await this.prepareDatabase(at.database!);
        this.sink = this.startArchiveRestore(at);
        return 'restore';
      case 'archive-dir': {
        if (this.skipDatabase(at.database!)) return this.skip(at.database!);
        await this.prepareDatabase(at.database!);
        if (this.pending) throw new PgbaculaError('INTERNAL', `directory archive of ${this.pending.db} still pending`);
        const dir = join(this.staging, encodeName(at.database!) + '.dir');
        await prepareTmpdir(this.s.tmpdir, this.log);
        registerScratch(this.staging);
        await removeTree(dir);
        await makeDirs(dir, 0o700);
        this.pending = { db: at.database!, dir };
        this.log.info(`restoring database ${at.database} (directory archive: staged in ${dir}, then pg_restore -j ${this.s.parallelJobs})`);
        this.sink = { kind: 'none' };
        return 'restore';
      }
      case 'archive-member': {
        if (this.skipDatabase(at.database!)) return 'skip';
        if (!this.pending || this.pending.db !== at.database) {
          throw new PgbaculaError('RESTORE_PRECHECK', `${entry.fname} is one file of a directory archive; it cannot be restored into a server alone`, {
            hint: 'Select the whole directory archive, or restore with where=/some/dir.',
          });
        }
        if (at.member!.includes('/') || at.member === '.' || at.member === '..') throw new PgbaculaError('RESTORE_PRECHECK', `unexpected nested file ${at.member} in a directory archive`);
        const out = createFileStream(join(this.pending.dir, at.member!), 0o600);
        out.on('error', () => undefined);
        this.sink = { kind: 'staged-file', db: at.database!, out };
        return 'restore';
      }
    }
  }

  private skip(db: string): RestoreDecision {
    if (!this.skippedDbs.has(db)) {
      this.skippedDbs.add(db);
      this.log.info(`database ${db}: skipped (target_database=${this.s.targetDatabase})`);
    }
    return 'skip';
  }

  /** The database the tools connect to first (never the one being replaced). */
  private maintenanceDb(db: string): string {
    const configured = this.s.connection.database;
    if (configured !== db) return configured;
    return db === 'template1' ? 'postgres' : 'template1';
  }

  /**
   * Make room for the database: absent → nothing to do; present and empty (e.g. the `postgres`
   * database of a fresh server) or overwrite_existing=true → dropped, to be recreated from the
   * archive with its own properties; present with objects → refused.
   */
  private async prepareDatabase(db: string): Promise<void> {
    try {
      await this.makeRoomFor(db);
    } catch (e) {
      this.failed.push(db);
      throw e;
    }
  }

  private async makeRoomFor(db: string): Promise<void> {
    const maint = await openSession({ ...this.s.connection, database: this.maintenanceDb(db) }, { applicationName: 'pgbacula restore' });
    try {
      const exists = (await maint.query('SELECT 1 FROM pg_database WHERE datname = $1', [db])).rowCount === 1;
      if (!exists) return;
      const empty = await this.isEmpty(db);
      if (!empty && !this.s.overwriteExisting) {
        throw new PgbaculaError('RESTORE_PRECHECK', `database ${db} already exists on ${this.endpoint} and is not empty`, {
          hint: 'Set the Plugin Option overwrite_existing=yes to drop and recreate it, restore it into another server (host/port), or restore the archive as a file (where=/dir).',
        });
      }
      const force = this.s.overwriteExisting && versionFacts(this.serverMajor).dropDatabaseForce ? ' WITH (FORCE)' : '';
      try {
        await maint.query(`DROP DATABASE ${quoteIdent(db)}${force}`);
      } catch (e) {
        throw new PgbaculaError('RESTORE_PRECHECK', `cannot replace database ${db} on ${this.endpoint}: ${(e as Error).message}`, {
          hint: this.s.overwriteExisting ? 'Close the sessions connected to it and run the restore again.' : 'Close the sessions connected to it, or set overwrite_existing=yes (drops them on PostgreSQL 13+).',
          cause: e,
        });
      }
      this.log.info(`database ${db}: dropped the existing ${empty ? 'empty ' : ''}database, recreating it from the backup${empty ? '' : ' (overwrite_existing)'}`);
    } finally {
      await maint.end().catch(() => undefined);
    }
  }

  /** No user objects: nothing with an OID past initdb's (FirstNormalObjectId = 16384), no large objects. */
  private async isEmpty(db: string): Promise<boolean> {
    let c;
    try {
      c = await openSession({ ...this.s.connection, database: db }, { applicationName: 'pgbacula restore' });
    } catch {
      return false; // cannot look inside: treat as not empty
    }
    try {
      const r = await c.query<{ n: string }>(
        `SELECT (SELECT count(*) FROM pg_class WHERE oid >= 16384) + (SELECT count(*) FROM pg_namespace WHERE oid >= 16384)
              + (SELECT count(*) FROM pg_proc WHERE oid >= 16384) + (SELECT count(*) FROM pg_type WHERE oid >= 16384)
              + (SELECT count(*) FROM pg_extension WHERE oid >= 16384) + (SELECT count(*) FROM pg_largeobject_metadata) AS n`,
      );
      return Number(r.rows[0]!.n) === 0;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  private conninfo(database: string): string {
    return toolConninfo(this.s.connection, { database, applicationName: 'pgbacula restore' });
  }

  private startArchiveRestore(at: DumpPath): Sink {
    const db = at.database!;
    const format = at.format!;
    const maint = this.maintenanceDb(db);
    let proc: ToolProcess;
    if (format === 'plain') {
      proc = startTool(this.tools.psql, ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=0', `--dbname=${this.conninfo(maint)}`, '--file=-'], {
        env: this.env,
        stdin: 'pipe',
      });
    } else {
      proc = startTool(this.tools.pgRestore, ['--no-password', '--create', `--format=${format === 'tar' ? 't' : 'c'}`, `--dbname=${this.conninfo(maint)}`], {
        env: this.env,
        stdin: 'pipe',
      });
    }
    this.log.info(`restoring database ${db} (${format}${at.gzip ? ', gzip' : ''}, streamed into ${format === 'plain' ? 'psql' : 'pg_restore'})`);
    const tracker = new ProgressTracker(this.log, `restoring ${db}`, 0, this.s.progressIntervalMs);
    if (at.gzip) {
      const gunzip = createGunzip();
      gunzip.pipe(proc.stdin!);
      gunzip.on('error', () => undefined);
      return { kind: 'tool', db, format, proc, input: gunzip, gunzip, tracker };
    }
    return { kind: 'tool', db, format, proc, input: proc.stdin!, tracker };
  }

  async write(chunk: Uint8Array): Promise<void> {
    const sink = this.sink;
    switch (sink.kind) {
      case 'buffer':
        sink.chunks.push(Buffer.from(chunk));
        return;
      case 'staged-file':
        await writeWithBackpressure(sink.out, chunk, () => `staging ${sink.db}`);
        return;
      case 'tool':
        if (sink.failed) return;
        try {
          await writeWithBackpressure(sink.input, chunk, () => `feeding ${sink.proc.name} for database ${sink.db}`);
          sink.tracker.add(chunk.length);
        } catch (e) {
          // The program stopped reading: its exit and stderr say why (reported by end()).
          sink.failed = e;
        }
        return;
      case 'none':
        return;
    }
  }

  async end(_trailer: ItemTrailer): Promise<void> {
    const sink = this.sink;
    this.sink = { kind: 'none' };
    switch (sink.kind) {
      case 'buffer': {
        const text = Buffer.concat(sink.chunks).toString('utf8');
        if (sink.what === 'manifest') {
          this.manifest = parseDumpManifest(text);
          const m = this.manifest;
          this.log.info(`backup of ${m.cluster} (job ${m.job}, ${m.mode}, format ${m.dumpFormat}, PostgreSQL ${m.server.version}): databases ${m.databases.map((d) => d.name).join(', ')}`);
          if (m.server.major > this.serverMajor) {
            this.log.warning(`the backup comes from PostgreSQL ${m.server.version}, the target runs ${this.serverVersion}: restoring into an older major may fail`);
          }
          if (this.s.targetDatabase !== undefined && !m.databases.some((d) => d.name === this.s.targetDatabase)) {
            throw new PgbaculaError('RESTORE_PRECHECK', `target_database ${this.s.targetDatabase} is not in this backup`, {
              hint: `It holds: ${m.databases.map((d) => d.name).join(', ')}.`,
            });
          }
        } else {
          await this.restoreGlobals(text);
        }
        return;
      }
      case 'staged-file':
        await new Promise<void>((resolve, reject) => {
          sink.out.once('error', reject);
          sink.out.end(() => resolve());
        });
        return;
      case 'tool':
        await this.finishArchiveRestore(sink);
        return;
      case 'none':
        return;
    }
  }

  private async restoreGlobals(script: string): Promise<void> {
    let text = script;
    if (this.s.remapTablespaces.length) {
      const r = remapTablespaceLocations(script, this.s.remapTablespaces, this.manifest?.tablespaces ?? []);
      text = r.script;
      for (const a of r.applied) this.log.info(`tablespace ${a.name}: location ${a.from} → ${a.to} (remap_tablespace)`);
      for (const u of r.unused) this.log.warning(`remap_tablespace: this backup has no tablespace "${u}"`);
    }
    const proc = startTool(this.tools.psql, ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=0', `--dbname=${this.conninfo(this.s.connection.database)}`, '--file=-'], {
      env: this.env,
      stdin: 'pipe',
    });
    try {
      await writeWithBackpressure(proc.stdin!, Buffer.from(text, 'utf8'), () => 'feeding psql the globals');
    } catch {
      // psql's exit says why
    }
    proc.stdin!.end();
    const exit = await proc.exited;
    this.globalsDone = true;
    const errors = psqlErrors(exit);
    const benign = errors.filter(isAlreadyThere);
    const real = errors.filter((l) => !isAlreadyThere(l));
    if (benign.length) this.log.info(`globals: ${benign.length} role/tablespace definition${benign.length === 1 ? ' was' : 's were'} already there (kept; their attributes were applied)`);
    if (!succeeded(exit) || real.length) {
      throw new PgbaculaError('CHILD_PROCESS', `restoring the globals (roles, tablespaces) reported ${real.length || 1} error${real.length === 1 ? '' : 's'}: ${(real.length ? real : exit.stderr).slice(0, 8).join('; ')}`, {
        hint: 'Databases are restored anyway; objects owned by a missing role or stored in a missing tablespace may fail (see remap_tablespace).',
      });
    }
    this.log.info('globals (roles, tablespaces) restored');
  }

  private async finishArchiveRestore(sink: Extract<Sink, { kind: 'tool' }>): Promise<void> {
    if (!sink.failed) {
      await new Promise<void>((resolve) => sink.input.end(() => resolve()));
    } else {
      sink.input.destroy();
      sink.proc.stdin?.destroy();
    }
    const exit = await sink.proc.exited;
    sink.tracker.stop();
    const errors = sink.format === 'plain' ? psqlErrors(exit) : exit.stderr.filter((l) => /error:/i.test(l));
    if (!succeeded(exit) || errors.length || sink.failed) {
      this.failed.push(sink.db);
      const what = `restore of database ${sink.db}`;
      if (sink.format === 'plain' && succeeded(exit)) {
        throw new PgbaculaError('CHILD_PROCESS', `${what} reported ${errors.length} error${errors.length === 1 ? '' : 's'}: ${errors.slice(0, 8).join('; ')}`);
      }
      throw toolFailure(what, sink.proc.name, exit);
    }
    this.restored.push(sink.db);
    this.log.info(`database ${sink.db} restored (${formatBytes(sink.tracker.doneBytes)})`);
  }

  async settle(next: RestoreEntry | undefined): Promise<void> {
    const pending = this.pending;
    if (!pending) return;
    if (next?.namespacePath) {
      const at = parseDumpPath(next.namespacePath);
      if (at?.kind === 'archive-member' && at.database === pending.db) return; // still arriving
    }
    this.pending = undefined;
    try {
      const proc = startTool(this.tools.pgRestore, ['--no-password', '--create', '--format=d', `--jobs=${this.s.parallelJobs}`, `--dbname=${this.conninfo(this.maintenanceDb(pending.db))}`, pending.dir], {
        env: this.env,
      });
      const exit = await proc.exited;
      if (!succeeded(exit)) {
        this.failed.push(pending.db);
        throw toolFailure(`restore of database ${pending.db}`, 'pg_restore', exit);
      }
      this.restored.push(pending.db);
      this.log.info(`database ${pending.db} restored (directory archive, ${this.s.parallelJobs} parallel job${this.s.parallelJobs === 1 ? '' : 's'})`);
    } finally {
      await removeTree(pending.dir);
    }
  }

  async finish(): Promise<void> {
    removeScratch(this.staging);
    const seconds = ((Date.now() - this.t0) / 1000).toFixed(1);
    if (this.s.targetDatabase !== undefined && !this.restored.includes(this.s.targetDatabase) && !this.failed.includes(this.s.targetDatabase)) {
      throw new PgbaculaError('RESTORE_PRECHECK', `target_database ${this.s.targetDatabase} was not in the restored files`, {
        hint: this.manifest ? `The backup holds: ${this.manifest.databases.map((d) => d.name).join(', ')}.` : 'Check the name and the files selected for the restore.',
      });
    }
    const summary = `${this.restored.length} database${this.restored.length === 1 ? '' : 's'}${this.restored.length ? ` (${this.restored.join(', ')})` : ''}${this.globalsDone ? ' and globals' : ''} into ${this.endpoint} in ${seconds} s`;
    if (this.failed.length) {
      throw new PgbaculaError('CHILD_PROCESS', `restore finished with errors: ${summary}; failed: ${this.failed.join(', ')}`);
    }
    this.log.info(`restore complete: ${summary}`);
  }

  /** Stop programs and remove staging (cancel, abort). */
  dispose(): void {
    const sink = this.sink;
    if (sink.kind === 'tool') sink.proc.kill('SIGKILL');
    removeScratch(this.staging);
  }
}
