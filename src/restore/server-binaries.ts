import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { findServerBinDirs } from '../server/server-control.js';

const execFileAsync = promisify(execFile);

/** `postgres --version` of each directory asked about, once per process. */
const majorOfDir = new Map<string, Promise<number | undefined> | number | undefined>();

function parseMajor(out: string): number | undefined {
  const m = /\(PostgreSQL\) (\d+)/.exec(out);
  return m ? Number(m[1]) : undefined;
}

function notFound(major: number, explicit: string | undefined, option: string, seen: readonly string[]): PgbaculaError {
  const where = explicit ? ` in pg_bin_dir ${explicit}` : ' (searched: /usr/lib/postgresql/*/bin)';
  return new PgbaculaError('RESTORE_PRECHECK', `no PostgreSQL ${major} server binaries found${where}${seen.length ? `: found ${seen.join(', ')}` : ''}`, {
    hint: `Install PostgreSQL ${major} (its server package) or give its bin directory ${option}.`,
  });
}

/** The candidate directories (the one given, or those found) that hold a `postgres`. */
function installedServers(explicit: string | undefined): { dir: string; postgres: string }[] {
  return (explicit ? [explicit] : findServerBinDirs()).map((dir) => ({ dir, postgres: join(dir, 'postgres') })).filter((c) => existsSync(c.postgres));
}

/**
 * Server binaries of exactly the backup's major: a restore never crosses majors. `option` is how
 * the user names the directory where the restore was started (a CLI flag, or a Bacula Plugin
 * Option: a hint must name what can be set there).
 */
export function serverBinDirFor(major: number, explicit: string | undefined, option = 'with --pg-bin-dir'): string {
  const seen: string[] = [];
  for (const { dir, postgres } of installedServers(explicit)) {
    let found = majorOfDir.get(dir);
    if (found === undefined || found instanceof Promise) {
      found = parseMajor(execFileSync(postgres, ['--version'], { encoding: 'utf8' }));
      majorOfDir.set(dir, found);
    }
    seen.push(`${dir} (${found ?? '?'})`);
    if (found === major) return dir;
  }
  throw notFound(major, explicit, option, seen);
}

/** The same, without blocking the thread while `postgres --version` runs. */
export async function serverBinDirForAsync(major: number, explicit: string | undefined, option = 'with --pg-bin-dir'): Promise<string> {
  const seen: string[] = [];
  for (const { dir, postgres } of installedServers(explicit)) {
    let known = majorOfDir.get(dir);
    if (known === undefined) {
      known = execFileAsync(postgres, ['--version'], { encoding: 'utf8' }).then((r) => parseMajor(r.stdout));
      majorOfDir.set(dir, known);
    }
    const found = await known;
    majorOfDir.set(dir, found);
    seen.push(`${dir} (${found ?? '?'})`);
    if (found === major) return dir;
  }
  throw notFound(major, explicit, option, seen);
}
