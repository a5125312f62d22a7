/**
 * `cdp_start_receiver=true`: a cdp job that finds no receiver starts one that outlives it
 * (detached, as the owner of the spool — the server's OS user, like the systemd unit), then waits
 * for its lock. Off by default: a receiver belongs under a service manager, which restarts it;
 * this is the fallback for hosts without one. The password, if any, goes in the environment,
 * never on the command line.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { ConnectionSettings } from '../../config/connection.js';
import { PgbaculaError } from '../../errors.js';
import { pgbaculaInvocation } from '../../archive/archive-command.js';
import { receiverLock, type ReceiverLock } from '../../archive/receiver-lock.js';
import { spawnDetached } from '../../os/detached.js';
import { posixStorage } from '../../storage/posix.js';

export interface StartReceiverRequest {
  readonly connection: ConnectionSettings;
  readonly spoolRoot: string;
  readonly systemId: string;
  readonly slotName: string;
  readonly applicationName: string;
  readonly synchronous: boolean;
  /** Where its output goes (a directory of the spool the job owns). */
  readonly logDir: string;
  readonly cluster: string;
  readonly waitMs?: number;
}

export async function startDetachedReceiver(r: StartReceiverRequest): Promise<{ lock: ReceiverLock; logPath: string }> {
  const owner = statSync(r.spoolRoot);
  const c = r.connection;
  const [node, cli] = pgbaculaInvocation();
  const args = [
    cli!, 'wal-receive', '--wal-spool', r.spoolRoot, '--slot-name', r.slotName, '--create-slot', '--application-name', r.applicationName,
    '--host', c.host, '--port', String(c.port), '--user', c.user, '--dbname', c.database, '--sslmode', c.sslmode,
    ...(r.synchronous ? ['--synchronous-receive'] : []),
  ];
  await posixStorage.makeDirs(r.logDir, { mode: 0o750 });
  const logPath = join(r.logDir, `${r.cluster.replace(/[^A-Za-z0-9_.-]/g, '_')}.wal-receive.log`);
  const pid = spawnDetached(node!, args, {
    uid: owner.uid,
    gid: owner.gid,
    cwd: '/',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...(c.password !== undefined ? { PGPASSWORD: c.password } : {}) },
    logPath,
  });
  const deadline = Date.now() + (r.waitMs ?? 30_000);
  for (;;) {
    const lock = await receiverLock(r.spoolRoot, r.systemId);
    if (lock?.alive && lock.pid === pid) return { lock, logPath };
    if (Date.now() > deadline) {
      throw new PgbaculaError('PREREQUISITE', `the wal-receive this job started (process ${pid}) did not take its lock in ${r.spoolRoot} within ${Math.round((r.waitMs ?? 30_000) / 1000)} s`, {
        hint: `Its output is in ${logPath}.`,
      });
    }
    await new Promise((res) => setTimeout(res, 200));
  }
}
