import pg from 'pg';
import { PgbaculaError } from '../errors.js';
import { describeEndpoint, type ConnectionSettings } from '../config/connection.js';
import { scrub } from '../config/redact.js';

export interface SessionOptions {
  /** Open a physical replication connection (walsender) instead of a regular one. */
  readonly replication?: boolean;
  readonly applicationName?: string;
}

function sslOption(sslmode: string): pg.ClientConfig['ssl'] {
  switch (sslmode) {
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      return { rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { rejectUnauthorized: true };
    default:
      // node-postgres has no "try SSL, fall back to plain" mode: allow/prefer connect plain.
      return false;
  }
}

/** Map a driver error to one of our codes with an operator message (never a password). */
export function connectionError(e: unknown, c: ConnectionSettings, timedOut: boolean): PgbaculaError {
  const err = e as { code?: string; message?: string };
  const where = `${describeEndpoint(c)} as ${c.user}`;
  const reason = scrub(err.message ?? String(e));
  if (timedOut) {
    return new PgbaculaError('CONNECTION_TIMEOUT', `connection to ${where} timed out after ${c.connectTimeoutSeconds} s`, {
      hint: 'Check that the host is reachable and PostgreSQL listens there, or raise connection_timeout.',
      cause: e,
    });
  }
  if (err.code === '28P01' || err.code === '28000') {
    const src = c.passwordSource === 'none' ? 'no password was found' : `the password from ${c.passwordSource} was used`;
    return new PgbaculaError('AUTHENTICATION', `authentication failed for ${where}: ${reason}`, {
      hint: `${src[0]!.toUpperCase()}${src.slice(1)}; check the role, pg_hba.conf and the password in pgbacula.conf or the pgpass file.`,
      cause: e,
    });
  }
  if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') {
    return new PgbaculaError('CONNECTION', `cannot connect to ${where}: nothing listens there (${err.code})`, {
      hint: 'Start the server or fix host/port (pgbacula.conf [connection], flags, or PGHOST/PGPORT).',
      cause: e,
    });
  }
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
    return new PgbaculaError('CONNECTION', `cannot resolve host ${c.host}`, { hint: 'Fix the host name.', cause: e });
  }
  return new PgbaculaError('CONNECTION', `cannot connect to ${where}: ${reason}`, {
    hint: 'Check host, port, user and pg_hba.conf.',
    cause: e,
  });
}

/**
 * Open one session. The timeout is ours (not only the driver's) so that a host that never
 * answers, or a server that accepts TCP and then stalls, fails within connection_timeout.
 */
export async function openSession(c: ConnectionSettings, opts: SessionOptions = {}): Promise<pg.Client> {
  const config: pg.ClientConfig & { replication?: string } = {
    host: c.host,
    port: c.port,
    user: c.user,
    database: c.database,
    ssl: sslOption(c.sslmode),
    application_name: opts.applicationName ?? 'pgbacula',
    connectionTimeoutMillis: c.connectTimeoutSeconds * 1000,
  };
  if (c.password !== undefined) config.password = c.password;
  if (opts.replication) config.replication = 'true';
  const client = new pg.Client(config);
  // An idle session can die (server restart); without a listener that is an uncaught error.
  client.on('error', () => undefined);
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          reject(new Error('timeout'));
        }, c.connectTimeoutSeconds * 1000);
      }),
    ]);
    return client;
  } catch (e) {
    void client.end().catch(() => undefined);
    const message = (e as Error).message ?? '';
    throw connectionError(e, c, timedOut || /timeout/i.test(message));
  } finally {
    if (timer) clearTimeout(timer);
  }
}
