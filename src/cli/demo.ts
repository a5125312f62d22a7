import { appendFileSync, chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getString } from '../config/params.js';
import { resolveConnection } from '../config/connection.js';
import { PgbaculaError } from '../errors.js';
import { findServerBinDirs, postgresOsUser, readPostmasterPid, runServerTool } from '../pg/server-control.js';
import type { CommandContext } from './context.js';
import { runCheck } from './check.js';
import { ok, type CommandResult } from './output.js';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/**
 * `pgbacula demo`: a throwaway cluster (initdb with data checksums, wal_level replica) on a
 * free port and its own socket directory, checked with `pgbacula check`, then removed. It
 * grows into the full backup → restore-to-a-second story as those commands land.
 */
export async function runDemo(ctx: CommandContext): Promise<CommandResult> {
  const binDir = findServerBinDirs(ctx.params.has('pg_bin_dir') ? [getString(ctx.params, 'pg_bin_dir')!] : [])[0];
  if (!binDir) {
    throw new PgbaculaError('PREREQUISITE', 'no PostgreSQL server binaries (initdb, pg_ctl) found', {
      hint: 'Install postgresql (scripts/setup.sh does) or pass --pg-bin-dir.',
    });
  }
  const user = await postgresOsUser();
  const dir = mkdtempSync(join(tmpdir(), 'pgbacula-demo-'));
  const pgdata = join(dir, 'pgdata');
  const sock = join(dir, 'sock');
  mkdirSync(sock);
  for (const d of [dir, sock]) {
    chownSync(d, user.uid, user.gid);
    chmodSync(d, 0o755);
  }
  const as = { user, cwd: dir };
  const lines: string[] = [];
  const t0 = Date.now();
  try {
    await runServerTool(join(binDir, 'initdb'), ['-D', pgdata, '-U', 'postgres', '--auth=trust', '--data-checksums', '-N', '--locale=C'], as);
    const port = await freePort();
    appendFileSync(
      join(pgdata, 'postgresql.conf'),
      `\nport = ${port}\nlisten_addresses = ''\nunix_socket_directories = '${sock}'\nwal_level = replica\n`,
    );
    await runServerTool(join(binDir, 'pg_ctl'), ['-D', pgdata, '-l', join(dir, 'server.log'), '-w', 'start'], as);
    lines.push(`demo: started a throwaway cluster from ${binDir} in ${pgdata} (port ${port})`, '');
    const checkCtx: CommandContext = {
      ...ctx,
      connection: () => resolveConnection(new Map<string, string | number>([['host', sock], ['port', port], ['user', 'postgres']]), {}),
    };
    const report = await runCheck(checkCtx);
    lines.push(report.text);
    lines.push('', `demo: done in ${((Date.now() - t0) / 1000).toFixed(1)} s; the cluster is removed`);
    return ok({ binDir, check: report.data }, lines.join('\n'));
  } finally {
    if (readPostmasterPid(pgdata)) {
      await runServerTool(join(binDir, 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], as).catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
