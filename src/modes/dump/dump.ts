/**
 * Modes `dump` and `parallel_dump` as item sources: cluster
 * globals (`pg_dumpall --globals-only`) and one archive per database.
 *
 * - custom, tar, plain: `pg_dump -F<c|t|p>` on a pipe, streamed into the sink as it is written —
 *   nothing of the dump touches the disk; the sink's back-pressure throttles pg_dump.
 * - directory (`dump_format=directory`, and always for `parallel_dump` with `-j parallel_jobs`):
 *   pg_dump writes a directory, so it is staged under `tmpdir`, then emitted file by file and
 *   removed (see parallel-dump.ts).
 *
 * Every level is a full dump; an Incremental or Differential job says so in its log. Any
 * pg_dump/pg_dumpall failure fails the job with pg_dump's own words (the caller aborts).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { describeEndpoint, type ConnectionSettings } from '../../config/connection.js';
import { PgbaculaError } from '../../errors.js';
import { checkToolsCanDump, findClientTools, toolConninfo, toolEnvironment } from '../../server/client-tools.js';
import { openSession } from '../../server/session.js';
import { startTool, succeeded, toolFailure, warningRelay, type ToolProcess } from '../../server/tool-process.js';
import { isSupportedMajor, SUPPORTED_RANGE, versionFacts } from '../../pg/versions.js';
import { serverVersion } from '../../server/server-facts.js';
import type { ItemHeader, ItemSink } from '../../item/item.js';
import { encodeName } from '../../format/path-name.js';
import { backupKindName } from '../../item/backup-kind.js';
import { formatBytes, ProgressTracker, type JobLog } from '../../item/job-log.js';
import { registerScratch, removeScratch } from '../../pipeline/scratch-dirs.js';
import {
  archiveName, dumpJobDir, DUMP_MANIFEST_FORMAT, DUMP_MANIFEST_VERSION, GLOBALS_FILE, MANIFEST_FILE, MANIFEST_LEVEL,
  type DumpManifest,
} from './layout.js';
import { pgDumpArgs, type DumpSettings } from './settings.js';
import { emitStagedDirectory, stageDirectoryDump } from './parallel-dump.js';
import type { DumpDatabase, DumpPlan, DumpRunContext, DumpTools } from './plan.js';
import { prepareTmpdir } from '../../os/tmpdir.js';
import { removeTreeSync } from '../../os/user-dirs.js';

/** Size of an item whose length is not known before its data (a streamed archive). */
export const SIZE_NOT_KNOWN = -1;

function clusterNameFallback(c: ConnectionSettings): string {
  return `${c.host.replace(/^\/+/, '').replace(/[/:]/g, '_')}_${c.port}`;
}

async function systemIdentifier(session: pg.Client): Promise<string | null> {
  try {
    const r = await session.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    return r.rows[0]?.id ?? null;
  } catch {
    return null; // pg_control_system() not granted to this role
  }
}

/**
 * Connect, check the server and the client tools, and decide what to dump — everything that can
 * fail before any data moves (the start command is answered only after this).
 */
export async function planDump(settings: DumpSettings, connection: ConnectionSettings, log: JobLog, env: Readonly<Record<string, string | undefined>> = process.env): Promise<DumpPlan> {
  const session = await openSession(connection, { applicationName: 'pgbacula dump' });
  try {
    const { version, major, inRecovery } = await serverVersion(session);
    if (!isSupportedMajor(major)) {
      throw new PgbaculaError('VERSION_UNSUPPORTED', `PostgreSQL ${version} at ${describeEndpoint(connection)} is not supported`, { hint: `pgbacula supports ${SUPPORTED_RANGE}.` });
    }
    if (settings.backupFromStandby && !inRecovery) {
      throw new PgbaculaError('PREREQUISITE', `backup_from_standby=true but ${describeEndpoint(connection)} is a primary`, {
        hint: 'Point the connection (or standby_host) at a standby, or set backup_from_standby=false.',
      });
    }
    const tools = findClientTools(settings.pgBinDir, env);
    checkToolsCanDump(tools, version, major, settings.pgBinDir !== undefined);

    const all = (await session.query<{ datname: string; datallowconn: boolean; datistemplate: boolean; size: string }>(
      `SELECT datname, datallowconn, datistemplate,
              CASE WHEN datallowconn AND has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) ELSE 0 END AS size
         FROM pg_database ORDER BY datname`,
    )).rows;
    const dumpable = all.filter((d) => d.datallowconn && !d.datistemplate);
    let chosen = dumpable;
    if (settings.databases.length) {
      const missing = settings.databases.filter((n) => !all.some((d) => d.datname === n));
      if (missing.length) {
        throw new PgbaculaError('PARAM_INVALID', `database ${missing.map((m) => `"${m}"`).join(', ')} does not exist on ${describeEndpoint(connection)}`, {
          hint: `Databases there: ${dumpable.map((d) => d.datname).join(', ') || 'none'}. Fix database= in the FileSet's Plugin string.`,
        });
      }
      const refused = settings.databases.filter((n) => !dumpable.some((d) => d.datname === n));
      if (refused.length) {
        throw new PgbaculaError('PARAM_INVALID', `database ${refused.join(', ')} cannot be dumped: it is a template or does not accept connections`, {
          hint: 'Remove it from database=.',
        });
      }
      chosen = dumpable.filter((d) => settings.databases.includes(d.datname));
    }
    for (const x of settings.excludeDatabases) {
      if (!all.some((d) => d.datname === x)) log.warning(`exclude_database: there is no database "${x}" on ${describeEndpoint(connection)}`);
    }
    chosen = chosen.filter((d) => !settings.excludeDatabases.includes(d.datname));
    if (chosen.length === 0) {
      throw new PgbaculaError('PARAM_INVALID', 'no database left to dump', {
        hint: `database=${settings.databases.join(',') || '*'} exclude_database=${settings.excludeDatabases.join(',')} select nothing among: ${dumpable.map((d) => d.datname).join(', ')}.`,
      });
    }
    const tablespaces = (await session.query<{ oid: number; spcname: string; location: string }>(
      "SELECT oid::int AS oid, spcname, pg_tablespace_location(oid) AS location FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY spcname",
    )).rows.map((t) => ({ oid: t.oid, name: t.spcname, location: t.location }));
    const sysid = await systemIdentifier(session);
    let cluster = settings.cluster ?? sysid;
    if (!cluster) {
      cluster = clusterNameFallback(connection);
      log.warning(`the system identifier is not readable by ${connection.user} (pg_control_system): paths use "${cluster}"; set cluster= to name this cluster`);
    }
    return {
      settings,
      connection,
      tools,
      cluster,
      systemIdentifier: sysid,
      server: { version, major, role: inRecovery ? 'standby' : 'primary' },
      databases: chosen.map((d) => ({ name: d.datname, sizeBytes: Number(d.size) })),
      tablespaces,
    };
  } finally {
    await session.end().catch(() => undefined);
  }
}

function cancelled(): PgbaculaError {
  return new PgbaculaError('CANCELLED', 'the dump was canceled');
}

function dumpTools(plan: DumpPlan, ctx: DumpRunContext): DumpTools {
  const standby = plan.settings.backupFromStandby && versionFacts(plan.tools.major).targetSessionAttrsStandby ? 'standby' : undefined;
  return {
    plan,
    ctx,
    env: toolEnvironment(plan.connection, ctx.env ?? process.env),
    conninfo: (database) => toolConninfo(plan.connection, { database, applicationName: 'pgbacula dump', ...(standby ? { targetSessionAttrs: standby } : {}) }),
  };
}

/** Kill the child when the job is canceled; returns the undo. */
function killOnAbort(signal: AbortSignal, proc: ToolProcess): () => void {
  const onAbort = (): void => proc.kill('SIGTERM');
  if (signal.aborted) onAbort();
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

async function emitBuffer(sink: ItemSink, path: string, content: Buffer, mtimeMs: number): Promise<void> {
  await sink.begin({ path, type: 'file', mode: 0o600, mtimeMs, size: content.length, encoding: 'raw' });
  if (content.length) await sink.write(content);
  await sink.end({ hash: '', rawSize: content.length, storedSize: content.length });
}

const MAX_GLOBALS_BYTES = 256 * 1024 * 1024;

/** pg_dumpall --globals-only into memory (small; knowing its size and exit first is worth it). */
async function dumpGlobals(t: DumpTools, noRolePasswords: boolean): Promise<{ content: Buffer; exit: Awaited<ToolProcess['exited']> }> {
  const args = ['--globals-only', '--no-password', `--dbname=${t.conninfo(t.plan.connection.database)}`, `--database=${t.plan.connection.database}`];
  if (noRolePasswords) args.push('--no-role-passwords');
  const proc = startTool(t.plan.tools.pgDumpall, args, { env: t.env, stdout: 'pipe', onStderrLine: warningRelay(t.ctx.log, 'pg_dumpall') });
  const undo = killOnAbort(t.ctx.signal, proc);
  try {
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const c of proc.stdout! as AsyncIterable<Buffer>) {
      bytes += c.length;
      if (bytes > MAX_GLOBALS_BYTES) {
        proc.kill('SIGKILL');
        throw new PgbaculaError('CHILD_PROCESS', `pg_dumpall --globals-only wrote more than ${formatBytes(MAX_GLOBALS_BYTES)}`);
      }
      chunks.push(c);
    }
    return { content: Buffer.concat(chunks), exit: await proc.exited };
  } finally {
    undo();
  }
}

async function streamArchive(t: DumpTools, db: DumpDatabase, path: string, sink: ItemSink): Promise<number> {
  const { plan, ctx } = t;
  const proc = startTool(plan.tools.pgDump, pgDumpArgs(plan.settings, t.conninfo(db.name)), {
    env: t.env,
    stdout: 'pipe',
    onStderrLine: warningRelay(ctx.log, `pg_dump ${db.name}`),
  });
  const undo = killOnAbort(ctx.signal, proc);
  const tracker = new ProgressTracker(ctx.log, `dumping ${db.name}`, 0, ctx.progressIntervalMs);
  let begun = false;
  const header: ItemHeader = { path, type: 'file', mode: 0o600, mtimeMs: Date.now(), size: SIZE_NOT_KNOWN, encoding: 'raw' };
  try {
    // The item begins with pg_dump's first bytes: a dump that fails at once (connection,
    // permissions) fails the job before a half item exists.
    for await (const chunk of proc.stdout! as AsyncIterable<Buffer>) {
      if (ctx.signal.aborted) break;
      if (!begun) {
        await sink.begin(header);
        begun = true;
      }
      await sink.write(chunk);
      tracker.add(chunk.length);
    }
    const exit = await proc.exited;
    if (ctx.signal.aborted) throw cancelled();
    if (!succeeded(exit)) throw toolFailure(`pg_dump of database ${db.name}`, 'pg_dump', exit);
    if (!begun) await sink.begin(header);
    await sink.end({ hash: '', rawSize: tracker.doneBytes, storedSize: tracker.doneBytes });
    return tracker.doneBytes;
  } finally {
    tracker.stop();
    undo();
    proc.kill('SIGKILL');
  }
}

/**
 * Is `pid` a running pgbacula process? A killed backend can linger as a zombie of the FD (seen
 * with 15.0.3 after a SIGKILL), and a pid can be reused by another program: neither owns staging.
 */
function isLiveBackend(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('pgbacula');
  } catch {
    if (existsSync('/proc/self/stat')) return false; // Linux: no /proc entry, no process
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/** Remove staging directories of earlier backend runs that did not live to clean up. */
export function removeStaleStaging(tmpdir: string, log: JobLog): void {
  let names: string[];
  try {
    names = readdirSync(tmpdir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^pgbacula-stage-.+-(\d+)$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isLiveBackend(pid)) continue; // another running job's
    removeTreeSync(join(tmpdir, name));
    log.info(`removed staging directory ${join(tmpdir, name)} left by an interrupted job`);
  }
}

export function stagingDir(tmpdir: string, job: string): string {
  return join(tmpdir, `pgbacula-stage-${encodeName(job)}-${process.pid}`);
}

function manifestOf(plan: DumpPlan, ctx: DumpRunContext, compressed: boolean): DumpManifest {
  const s = plan.settings;
  return {
    format: DUMP_MANIFEST_FORMAT,
    version: DUMP_MANIFEST_VERSION,
    mode: s.mode,
    dumpFormat: s.format,
    cluster: plan.cluster,
    systemIdentifier: plan.systemIdentifier,
    job: ctx.job,
    level: MANIFEST_LEVEL[ctx.kind],
    startedAt: new Date().toISOString(),
    server: { version: plan.server.version, major: plan.server.major, endpoint: describeEndpoint(plan.connection), role: plan.server.role },
    pgDump: { version: plan.tools.version, major: plan.tools.major },
    compressionLevel: s.compressionLevel,
    includeBlobs: s.includeBlobs,
    parallelJobs: s.jobs,
    globals: GLOBALS_FILE,
    databases: plan.databases.map((d) => ({ name: d.name, archive: archiveName(d.name, s.format, compressed), sizeBytes: d.sizeBytes })),
    tablespaces: plan.tablespaces,
  };
}

/** Every item of the job, in restore order: manifest, globals, then the databases by name. */
export async function runDump(plan: DumpPlan, sink: ItemSink, ctx: DumpRunContext): Promise<void> {
  const s = plan.settings;
  const log = ctx.log;
  const compressed = s.compressionLevel > 0;
  const dir = dumpJobDir(plan.cluster, ctx.job);
  const now = Date.now();
  const manifest = manifestOf(plan, ctx, compressed);
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n', 'utf8');

  if (ctx.estimate) {
    await emitBuffer(sink, `${dir}/${MANIFEST_FILE}`, manifestBytes, now);
    await sink.begin({ path: `${dir}/${GLOBALS_FILE}`, type: 'file', mode: 0o600, mtimeMs: now, size: SIZE_NOT_KNOWN, encoding: 'raw' });
    await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
    for (const db of plan.databases) {
      const type = s.format === 'directory' ? 'dir' : 'file';
      await sink.begin({ path: `${dir}/${archiveName(db.name, s.format, compressed)}`, type, mode: type === 'dir' ? 0o700 : 0o600, mtimeMs: now, size: db.sizeBytes, encoding: 'raw' });
      await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
    }
    return;
  }

  const t = dumpTools(plan, ctx);
  const t0 = Date.now();
  log.info(
    `starting ${s.mode} backup (${backupKindName(ctx.kind)}) of ${plan.databases.length} database${plan.databases.length === 1 ? '' : 's'}: ` +
      `${plan.databases.map((d) => d.name).join(', ')} (PG ${plan.server.version} on ${describeEndpoint(plan.connection)}${plan.server.role === 'standby' ? ', standby' : ''}; ` +
      `pg_dump ${plan.tools.version}, format ${s.format}${s.format === 'directory' ? `, ${s.jobs} job${s.jobs === 1 ? '' : 's'}` : ''}, compression ${s.compressionLevel}${s.includeBlobs ? '' : ', without large objects'})`,
  );
  if (ctx.kind !== 'full') {
    log.info(`${backupKindName(ctx.kind)} level requested: ${s.mode} always takes a full dump of every database (a logical dump has no increments)`);
  }

  await emitBuffer(sink, `${dir}/${MANIFEST_FILE}`, manifestBytes, now);

  let globals = await dumpGlobals(t, false);
  if (!succeeded(globals.exit) && globals.exit.stderr.some((l) => /pg_authid/.test(l))) {
    // Without superuser, pg_authid is unreadable: dump roles without their password hashes.
    log.warning(`pg_dumpall cannot read role passwords as ${plan.connection.user} (pg_authid): roles are stored without passwords`);
    globals = await dumpGlobals(t, true);
  }
  if (ctx.signal.aborted) throw cancelled();
  if (!succeeded(globals.exit)) throw toolFailure('pg_dumpall --globals-only', 'pg_dumpall', globals.exit);
  await emitBuffer(sink, `${dir}/${GLOBALS_FILE}`, globals.content, Date.now());
  log.info(`globals (roles, tablespaces): ${formatBytes(globals.content.length)}`);

  let total = globals.content.length;
  const staging = stagingDir(s.tmpdir, ctx.job);
  if (s.format === 'directory') {
    await prepareTmpdir(s.tmpdir, log);
    removeStaleStaging(s.tmpdir, log);
    registerScratch(staging);
  }
  try {
    for (const db of plan.databases) {
      if (ctx.signal.aborted) throw cancelled();
      const name = archiveName(db.name, s.format, compressed);
      const started = Date.now();
      let bytes: number;
      if (s.format === 'directory') {
        log.info(`dumping database ${db.name} (directory${s.jobs > 1 ? `, ${s.jobs} parallel jobs` : ''}; staged in ${staging})`);
        const staged = await stageDirectoryDump(t, db, join(staging, name));
        bytes = await emitStagedDirectory(staged, `${dir}/${name}`, sink, ctx.signal);
      } else {
        log.info(`dumping database ${db.name} (${s.format})`);
        bytes = await streamArchive(t, db, `${dir}/${name}`, sink);
      }
      const seconds = (Date.now() - started) / 1000;
      log.info(`database ${db.name}: ${formatBytes(bytes)} in ${seconds.toFixed(1)} s (${formatBytes(Math.round(bytes / Math.max(seconds, 0.001)))}/s)`);
      total += bytes;
    }
  } finally {
    removeScratch(staging);
  }
  const seconds = (Date.now() - t0) / 1000;
  log.info(`${s.mode} complete: ${plan.databases.length} database${plan.databases.length === 1 ? '' : 's'} and globals, ${formatBytes(total)} in ${seconds.toFixed(1)} s`);
}
