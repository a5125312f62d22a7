import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { findServerBinDirs } from '../pg/server-control.js';

/** Server binaries of exactly the backup's major: a restore never crosses majors. */
export function serverBinDirFor(major: number, explicit: string | undefined): string {
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
  throw new PgbaculaError('RESTORE_PRECHECK', `no PostgreSQL ${major} server binaries found${seen.length ? `: found ${seen.join(', ')}` : ''}`, {
    hint: `Install PostgreSQL ${major} or give its bin directory with --pg-bin-dir.`,
  });
}
