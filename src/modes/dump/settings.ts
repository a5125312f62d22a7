/**
 * The parameters of the dump modes, read once and checked together, and the pg_dump command
 * line they make (pure: tested without a server).
 */
import { getBool, getInt, getList, getString, type ParamMap } from '../../config/params.js';
import { PgbaculaError } from '../../errors.js';
import type { DumpFormat } from './layout.js';

export interface DumpSettings {
  readonly mode: 'dump' | 'parallel_dump';
  readonly format: DumpFormat;
  readonly compressionLevel: number;
  readonly includeBlobs: boolean;
  /** pg_dump -j for directory archives (1 for mode=dump). */
  readonly jobs: number;
  readonly tmpdir: string;
  /** Names; empty = every database that accepts connections. */
  readonly databases: readonly string[];
  readonly excludeDatabases: readonly string[];
  readonly backupFromStandby: boolean;
  readonly cluster: string | undefined;
  readonly pgBinDir: string | undefined;
}

/** Settings from validated parameters; refuses combinations pg_dump would refuse later. */
export function dumpSettings(params: ParamMap): DumpSettings {
  const mode = getString(params, 'mode') === 'parallel_dump' ? 'parallel_dump' : 'dump';
  let format = getString(params, 'dump_format') as DumpFormat;
  if (mode === 'parallel_dump') {
    if (params.has('dump_format') && format !== 'directory') {
      throw new PgbaculaError('PARAM_INVALID', `parameter dump_format=${format} does not go with mode=parallel_dump`, {
        hint: 'parallel_dump always writes directory archives (pg_dump -Fd -j parallel_jobs): remove dump_format, or use mode=dump for custom, tar or plain.',
      });
    }
    format = 'directory';
  }
  const compressionLevel = getInt(params, 'compression_level');
  if (format === 'tar' && compressionLevel > 0) {
    throw new PgbaculaError('PARAM_INVALID', `parameter compression_level=${compressionLevel} does not go with dump_format=tar`, {
      hint: 'pg_dump cannot compress tar archives: use compression_level=0 (Bacula compresses) or dump_format=custom or directory.',
    });
  }
  const databases = getList(params, 'database').filter((d) => d !== '*');
  const listed = getList(params, 'database');
  return {
    mode,
    format,
    compressionLevel,
    includeBlobs: getBool(params, 'include_blobs'),
    jobs: mode === 'parallel_dump' ? getInt(params, 'parallel_jobs') : 1,
    tmpdir: getString(params, 'tmpdir')!,
    databases: listed.includes('*') ? [] : databases,
    excludeDatabases: getList(params, 'exclude_database'),
    backupFromStandby: getBool(params, 'backup_from_standby'),
    cluster: params.has('cluster') ? getString(params, 'cluster') : undefined,
    pgBinDir: params.has('pg_bin_dir') ? getString(params, 'pg_bin_dir') : undefined,
  };
}

/** pg_dump arguments for one database (pure: tested without a server). */
export function pgDumpArgs(s: Pick<DumpSettings, 'format' | 'compressionLevel' | 'includeBlobs' | 'jobs'>, conninfo: string, file?: string): string[] {
  const letter = { custom: 'c', directory: 'd', tar: 't', plain: 'p' }[s.format];
  const args = [`--format=${letter}`, '--no-password'];
  // custom and directory compress by default: compression_level=0 means "leave it to Bacula".
  if (s.format !== 'tar') args.push(`--compress=${s.compressionLevel}`);
  // -b/-B: the spelling every pg_dump 10–18 knows (--blobs became --large-objects in 16).
  args.push(s.includeBlobs ? '-b' : '-B');
  if (s.format === 'directory') {
    args.push(`--jobs=${s.jobs}`, '--no-sync'); // staging is transient: no fsync
  }
  // A plain script creates its database, as pg_restore --create does for archives.
  if (s.format === 'plain') args.push('--create');
  if (file) args.push(`--file=${file}`);
  args.push(`--dbname=${conninfo}`);
  return args;
}
