import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { findServerBinDirs } from '../server/server-control.js';

/**
 * Server binaries of exactly the backup's major: a restore never crosses majors. `option` is how
 * the user names the directory where the restore was started (a CLI flag, or a Bacula Plugin
 * Option: a hint must name what can be set there).
 */
export function serverBinDirFor(major: number, explicit: string | undefined, option = 'with --pg-bin-dir'): string {
  const candidates = explicit ? [explicit] : findServerBinDirs();
  const seen: string[] = [];
  for (const dir of candidates) {
    const postgres = join(dir, 'postgres');
    if (!existsSync(postgres)) continue;
    const out = execFileSync(postgres, ['--version'], { encoding: 'utf8' });
    const m = /\(PostgreSQL\) (\d+)/.exec(out);
    seen.push(`${dir} (${m?.[1] ?? '?'})`);
    if (m && Number(m[1]) === major) return dir;
  }
  const where = explicit ? ` in pg_bin_dir ${explicit}` : ' (searched: /usr/lib/postgresql/*/bin)';
  throw new PgbaculaError('RESTORE_PRECHECK', `no PostgreSQL ${major} server binaries found${where}${seen.length ? `: found ${seen.join(', ')}` : ''}`, {
    hint: `Install PostgreSQL ${major} (its server package) or give its bin directory ${option}.`,
  });
}
