import { readFileSync, statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { getInt, getString, type ParamMap } from './params.js';
import { findPgpassPassword } from './pgpass.js';
import { registerSecret } from './redact.js';

/** Everything needed to open a session; the password never leaves this object in clear. */
export interface ConnectionSettings {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  readonly password: string | undefined;
  readonly sslmode: string;
  readonly connectTimeoutSeconds: number;
  /** Where the password came from, for messages: never the password itself. */
  readonly passwordSource: 'config' | 'PGPASSWORD' | 'pgpass' | 'none';
}

export type Env = Readonly<Record<string, string | undefined>>;

function defaultHost(): string {
  // libpq's compiled-in default on Debian is the socket directory /var/run/postgresql.
  return '/var/run/postgresql';
}

function readPgpass(path: string, query: { host: string; port: number; database: string; user: string }): string | undefined {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch {
    return undefined;
  }
  // libpq ignores a password file that group or others can read; so do we, for the same reason.
  if ((mode & 0o077) !== 0) return undefined;
  return findPgpassPassword(readFileSync(path, 'utf8'), query);
}

/**
 * Settings from (highest first) flags/plugin string, pgbacula.conf [connection], libpq
 * environment variables, libpq defaults — what a user of psql expects.
 */
export function resolveConnection(params: ParamMap, env: Env = process.env): ConnectionSettings {
  const host = getString(params, 'host') || env.PGHOST || defaultHost();
  const portText = params.get('port') ?? env.PGPORT;
  const port = portText === undefined ? 5432 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PgbaculaError('PARAM_INVALID', `invalid port "${String(portText)}" (from PGPORT)`, { hint: 'Use 1–65535.' });
  }
  const user = getString(params, 'user') || env.PGUSER || userInfo().username;
  const database = getString(params, 'dbname') || env.PGDATABASE || 'postgres';
  const sslmode = getString(params, 'sslmode') || env.PGSSLMODE || 'prefer';
  const timeoutFromEnv = env.PGCONNECT_TIMEOUT && /^\d+$/.test(env.PGCONNECT_TIMEOUT) ? Number(env.PGCONNECT_TIMEOUT) : undefined;
  const connectTimeoutSeconds = params.has('connection_timeout') ? getInt(params, 'connection_timeout') : (timeoutFromEnv ?? getInt(params, 'connection_timeout'));

  let password = getString(params, 'password');
  let passwordSource: ConnectionSettings['passwordSource'] = password ? 'config' : 'none';
  if (!password && env.PGPASSWORD) {
    password = env.PGPASSWORD;
    passwordSource = 'PGPASSWORD';
  }
  if (!password) {
    const passfile = getString(params, 'pgpass_file') || env.PGPASSFILE || join(env.HOME ?? homedir(), '.pgpass');
    password = readPgpass(passfile, { host, port, database, user });
    if (password) passwordSource = 'pgpass';
  }
  registerSecret(password);
  return { host, port, user, database, password: password || undefined, sslmode, connectTimeoutSeconds, passwordSource };
}

/** host:port as an operator reads it (socket directories included). */
export function describeEndpoint(c: ConnectionSettings): string {
  return c.host.startsWith('/') ? `socket ${c.host}/.s.PGSQL.${c.port}` : `${c.host}:${c.port}`;
}
