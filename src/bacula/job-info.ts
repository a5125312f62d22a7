/**
 * The FD's Job block: one `Key=value` line per packet, in a fixed order,
 * some lines only for some job types. Unknown keys are kept but ignored (later FDs add lines;
 * 13.0.x lacks WorkingDir/SysconfigPath/ExePath).
 */
import { PgbaculaError } from '../errors.js';

export type JobTypeLetter = 'B' | 'E' | 'R';
export type JobLevelLetter = 'F' | 'I' | 'D';

export interface JobInfo {
  /** Unique job name, e.g. `BackupPg.2025-03-25_10.00.00_05`. */
  readonly name: string;
  /** 0 for console estimate / .ls / .query. */
  readonly jobId: number;
  readonly type: JobTypeLetter;
  /** Backup and estimate only; absent for restore and .ls/.query. */
  readonly level?: JobLevelLetter;
  /** Incremental/Differential reference time (Unix seconds). */
  readonly since?: number;
  /** Restore prefix; empty and absent both mean "original location" (as Bacula 15.0.3 sends it). */
  readonly where?: string;
  readonly regexWhere?: string;
  /** a always, w if newer, o if older, n never. */
  readonly replace?: string;
  readonly namespace?: string;
  readonly workingDir?: string;
  readonly sysconfigPath?: string;
  readonly exePath?: string;
  /** Every line as received (also the ones we do not interpret). */
  readonly raw: Readonly<Record<string, string>>;
}

function invalid(line: string, why: string): PgbaculaError {
  return new PgbaculaError('PROTOCOL', `invalid Job block line from the FD: "${line}" (${why})`, {
    hint: 'This is a Bacula FD or shim version mismatch.',
  });
}

/** Parse the lines between `Job` and `F`. */
export function parseJobBlock(lines: readonly string[]): JobInfo {
  const raw: Record<string, string> = {};
  for (const line of lines) {
    const eq = line.indexOf('=');
    if (eq <= 0) throw invalid(line, 'no Key=value');
    raw[line.slice(0, eq)] = line.slice(eq + 1);
  }
  const type = raw.Type;
  if (type !== 'B' && type !== 'E' && type !== 'R') throw invalid(`Type=${type ?? ''}`, 'type must be B, E or R');
  const jobIdText = raw.JobID ?? '0';
  if (!/^\d+$/.test(jobIdText)) throw invalid(`JobID=${jobIdText}`, 'not a number');
  // 15.0.3 forwards only F, I and D; anything else is treated as Full (no level).
  const level = raw.Level;
  const since = raw.Since !== undefined && /^-?\d+$/.test(raw.Since) ? Number(raw.Since) : undefined;
  const opt = <K extends string>(key: string, name: K): Partial<Record<K, string>> =>
    (raw[key] !== undefined ? { [name]: raw[key] } : {}) as Partial<Record<K, string>>;
  return {
    name: raw.Name ?? '',
    jobId: Number(jobIdText),
    type,
    ...(level === 'F' || level === 'I' || level === 'D' ? { level } : {}),
    ...(since !== undefined ? { since } : {}),
    ...opt('Where', 'where'),
    ...opt('RegexWhere', 'regexWhere'),
    ...opt('Replace', 'replace'),
    ...opt('Namespace', 'namespace'),
    ...opt('WorkingDir', 'workingDir'),
    ...opt('SysconfigPath', 'sysconfigPath'),
    ...opt('ExePath', 'exePath'),
    raw,
  };
}

/** "Full", "Incremental", ... for job-log lines. */
export function levelName(level: JobLevelLetter | undefined): string {
  switch (level) {
    case 'I':
      return 'Incremental';
    case 'D':
      return 'Differential';
    default:
      return 'Full';
  }
}
