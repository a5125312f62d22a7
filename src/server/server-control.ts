import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PgbaculaError } from '../errors.js';

const execFileAsync = promisify(execFile);

export interface OsIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly name: string;
}

/**
 * PostgreSQL refuses to run as root, so server processes we start run as the data
 * directory's owner (restore) or the postgres OS user (demo) when we are root.
 */
export async function postgresOsUser(): Promise<OsIdentity> {
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) return { uid, gid: process.getgid?.() ?? 0, name: 'current user' };
  try {
    const { stdout } = await execFileAsync('id', ['postgres']);
    const m = /uid=(\d+).*gid=(\d+)/.exec(stdout);
    if (m) return { uid: Number(m[1]), gid: Number(m[2]), name: 'postgres' };
  } catch {
    // fall through
  }
  throw new PgbaculaError('PREREQUISITE', 'running as root and there is no postgres OS user to run PostgreSQL as', {
    hint: 'Create it (useradd --system postgres) or run scripts/setup.sh.',
  });
}

/** Server binary directories we can use, newest major first. */
export function findServerBinDirs(extra: readonly string[] = []): string[] {
  const dirs = [...extra];
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    for (const v of readdirSync(debian).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a))) {
      dirs.push(join(debian, v, 'bin'));
    }
  }
  return dirs.filter((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
}

export interface RunAs {
  readonly user: OsIdentity;
  readonly cwd: string;
}

export async function runServerTool(file: string, args: readonly string[], as: RunAs, timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync(file, args, {
      uid: as.user.uid,
      gid: as.user.gid,
      cwd: as.cwd,
      timeout: timeoutMs,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
    });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new PgbaculaError('CHILD_PROCESS', `${file.split('/').pop()} failed: ${(err.stderr || err.message).trim()}`, { cause: e });
  }
}

export function readPostmasterPid(pgdata: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
