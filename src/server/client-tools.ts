/**
 * Which pg_dump / pg_dumpall / pg_restore / psql to run, and how to connect them.
 *
 * pg_dump dumps servers of its own major and older, never newer ("server version mismatch"),
 * so the newest installed client set is chosen (Debian /usr/lib/postgresql/N/bin, PGDG
 * /usr/pgsql-N/bin, then PATH), unless `pg_bin_dir` names one; the choice is checked against the
 * server before anything runs, with a message that says what to install.
 *
 * Connection settings travel as a libpq conninfo in argv (host, port, user, dbname, sslmode —
 * nothing secret) and the password, if any, as PGPASSWORD in the child's environment.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ConnectionSettings } from '../config/connection.js';
import { PgbaculaError } from '../errors.js';

export interface ClientTools {
  readonly dir: string;
  /** e.g. "18.6" */
  readonly version: string;
  readonly major: number;
  readonly pgDump: string;
  readonly pgDumpall: string;
  readonly pgRestore: string;
  readonly psql: string;
}

const TOOL_NAMES = ['pg_dump', 'pg_dumpall', 'pg_restore', 'psql'] as const;

/** "pg_dump (PostgreSQL) 18.6 (Debian 18.6-3)" → { version: "18.6", major: 18 }. */
export function parseToolVersion(text: string): { version: string; major: number } | undefined {
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) return undefined;
  const major = Number(m[1]);
  return { version: m[2] !== undefined ? `${m[1]}.${m[2]}` : m[1]!, major };
}

function probe(dir: string): ClientTools | undefined {
  if (!TOOL_NAMES.every((t) => existsSync(join(dir, t)))) return undefined;
  let out: string;
  try {
    out = execFileSync(join(dir, 'pg_dump'), ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 });
  } catch {
    return undefined;
  }
  const v = parseToolVersion(out);
  if (!v) return undefined;
  return { dir, ...v, pgDump: join(dir, 'pg_dump'), pgDumpall: join(dir, 'pg_dumpall'), pgRestore: join(dir, 'pg_restore'), psql: join(dir, 'psql') };
}

function numberedDirs(parent: string, pattern: RegExp, suffix: string): string[] {
  if (!existsSync(parent)) return [];
  return readdirSync(parent)
    .map((d) => ({ d, m: pattern.exec(d) }))
    .filter((x) => x.m)
    .sort((a, b) => Number(b.m![1]) - Number(a.m![1]))
    .map((x) => join(parent, x.d, suffix));
}

/** Directories that may hold client tools, most specific first. */
export function candidateToolDirs(path: string | undefined): string[] {
  const dirs = [
    ...numberedDirs('/usr/lib/postgresql', /^(\d+)$/, 'bin'),
    ...numberedDirs('/usr', /^pgsql-(\d+)$/, 'bin'),
    '/usr/local/pgsql/bin',
    ...(path ?? '').split(':').filter((d) => d.startsWith('/')),
  ];
  return [...new Set(dirs)];
}

const cache = new Map<string, ClientTools | undefined>();

function cachedProbe(dir: string): ClientTools | undefined {
  if (!cache.has(dir)) cache.set(dir, probe(dir));
  return cache.get(dir);
}

/**
 * The client tools to use: those of `pgBinDir` when given, else the newest set found.
 * `forServerMajor` (when known) only shapes the error message.
 */
export function findClientTools(pgBinDir: string | undefined, env: Readonly<Record<string, string | undefined>> = process.env): ClientTools {
  if (pgBinDir) {
    const tools = cachedProbe(pgBinDir);
    if (!tools) {
      throw new PgbaculaError('PREREQUISITE', `pg_bin_dir ${pgBinDir} does not hold runnable ${TOOL_NAMES.join(', ')}`, {
        hint: 'Point pg_bin_dir at the bin directory of a PostgreSQL client installation (e.g. /usr/lib/postgresql/17/bin), or remove it to let pgbacula search.',
      });
    }
    return tools;
  }
  let best: ClientTools | undefined;
  for (const dir of candidateToolDirs(env.PATH)) {
    const t = cachedProbe(dir);
    if (t && (!best || t.major > best.major)) best = t;
  }
  if (!best) {
    throw new PgbaculaError('PREREQUISITE', 'no PostgreSQL client tools (pg_dump, pg_dumpall, pg_restore, psql) found', {
      hint: 'Install the PostgreSQL client package of the server\'s major version or newer (Debian: postgresql-client-N), or set pg_bin_dir.',
    });
  }
  return best;
}

/** pg_dump refuses servers newer than itself: say so before running it, and what to do. */
export function checkToolsCanDump(tools: ClientTools, serverVersion: string, serverMajor: number, explicitDir: boolean): void {
  if (tools.major >= serverMajor) return;
  throw new PgbaculaError('VERSION_UNSUPPORTED', `pg_dump ${tools.version} (${tools.dir}) is older than the server (PostgreSQL ${serverVersion}) and cannot dump it`, {
    hint: explicitDir
      ? `Set pg_bin_dir to the client tools of PostgreSQL ${serverMajor} or newer, or remove pg_bin_dir to let pgbacula pick the newest installed.`
      : `Install the PostgreSQL ${serverMajor} (or newer) client tools (Debian: postgresql-client-${serverMajor}) or set pg_bin_dir to them.`,
  });
}

/** A libpq conninfo value: single-quoted, backslash and quote escaped. */
export function conninfoValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export interface ConninfoOptions {
  readonly database: string;
  readonly applicationName?: string;
  /** libpq target_session_attrs (14+ understands "standby"). */
  readonly targetSessionAttrs?: string;
}

/** The conninfo a child connects with. Never contains the password (it travels in the environment). */
export function toolConninfo(c: ConnectionSettings, o: ConninfoOptions): string {
  const parts: Array<[string, string]> = [
    ['host', c.host],
    ['port', String(c.port)],
    ['user', c.user],
    ['dbname', o.database],
    ['sslmode', c.sslmode],
    ['connect_timeout', String(c.connectTimeoutSeconds)],
    ['application_name', o.applicationName ?? 'pgbacula'],
  ];
  if (o.targetSessionAttrs) parts.push(['target_session_attrs', o.targetSessionAttrs]);
  return parts.map(([k, v]) => `${k}=${conninfoValue(v)}`).join(' ');
}

/**
 * The environment of a child: messages in English (they are parsed and shown), no prompt, and
 * the password — the only secret — here and nowhere else.
 */
export function toolEnvironment(c: ConnectionSettings, base: Readonly<Record<string, string | undefined>> = process.env, pgpassFile?: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: base.PATH ?? '/usr/bin:/bin',
    LANG: 'C',
    LC_ALL: 'C',
    LC_MESSAGES: 'C',
    PGCONNECT_TIMEOUT: String(c.connectTimeoutSeconds),
  };
  if (base.HOME) env.HOME = base.HOME;
  if (base.TMPDIR) env.TMPDIR = base.TMPDIR;
  if (c.password !== undefined) env.PGPASSWORD = c.password;
  if (pgpassFile) env.PGPASSFILE = pgpassFile;
  else if (base.PGPASSFILE) env.PGPASSFILE = base.PGPASSFILE;
  return env;
}
