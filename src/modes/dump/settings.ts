/**
 * The settings of the dump modes (read from the parameters and checked together by their registry
 * entry, src/command/modes/dump.ts), and the pg_dump command line they make (pure: tested without
 * a server).
 */
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
