/**
 * How a logical dump backup is laid out as items:
 *
 *   <cluster>/dump/<job>/manifest.json      what the job stored, for the restore (first)
 *   <cluster>/dump/<job>/globals.sql        pg_dumpall --globals-only: roles, tablespaces
 *   <cluster>/dump/<job>/<db>.dump          pg_dump -Fc      (dump_format=custom)
 *   <cluster>/dump/<job>/<db>.tar           pg_dump -Ft      (tar)
 *   <cluster>/dump/<job>/<db>.sql[.gz]      pg_dump -Fp      (plain; .gz with compression_level > 0)
 *   <cluster>/dump/<job>/<db>.dir/...       pg_dump -Fd [-j] (directory, parallel_dump)
 *
 * Under Bacula these appear as /@pgbacula/<cluster>/dump/<jobid>/... . Names are path components
 * as src/format/path-name.ts writes them: a database called `a/b c` is stored as `a%2Fb%20c.dump`
 * and decoded back at restore.
 */
import { PgbaculaError } from '../../errors.js';
import type { BackupKind } from '../../item/backup-kind.js';
import { decodeName, encodeName } from '../../format/path-name.js';

export type DumpFormat = 'custom' | 'directory' | 'tar' | 'plain';

export const MANIFEST_FILE = 'manifest.json';
export const GLOBALS_FILE = 'globals.sql';
export const DUMP_MANIFEST_FORMAT = 'pgbacula-dump';
export const DUMP_MANIFEST_VERSION = 1;

const SUFFIX: Record<Exclude<DumpFormat, 'directory'>, string> = { custom: '.dump', tar: '.tar', plain: '.sql' };

/** File (or directory) name of a database archive. */
export function archiveName(database: string, format: DumpFormat, compressed: boolean): string {
  const base = encodeName(database);
  if (format === 'directory') return `${base}.dir`;
  if (format === 'plain' && compressed) return `${base}.sql.gz`;
  return base + SUFFIX[format];
}

/** The job's directory: `<cluster>/dump/<job>`. */
export function dumpJobDir(cluster: string, job: string): string {
  return `${encodeName(cluster)}/dump/${encodeName(job)}`;
}

export type DumpPathKind = 'manifest' | 'globals' | 'archive' | 'archive-dir' | 'archive-member';

export interface DumpPath {
  readonly cluster: string;
  readonly job: string;
  readonly kind: DumpPathKind;
  /** archive kinds: the database and the archive's format. */
  readonly database?: string;
  readonly format?: DumpFormat;
  readonly gzip?: boolean;
  /** archive-member: the file inside a directory archive (e.g. `toc.dat`). */
  readonly member?: string;
}

/** Read a namespace-relative path back: which job, which database, which format. */
export function parseDumpPath(path: string): DumpPath | undefined {
  const parts = path.replace(/\/+$/, '').split('/');
  if (parts.length < 4 || parts[1] !== 'dump') return undefined;
  const [clusterEnc, , jobEnc, file, ...rest] = parts;
  const cluster = decodeName(clusterEnc!);
  const job = decodeName(jobEnc!);
  const at = { cluster, job };
  if (rest.length === 0) {
    if (file === MANIFEST_FILE) return { ...at, kind: 'manifest' };
    if (file === GLOBALS_FILE) return { ...at, kind: 'globals' };
    for (const [format, suffix] of [['plain', '.sql.gz'], ['custom', '.dump'], ['tar', '.tar'], ['plain', '.sql'], ['directory', '.dir']] as const) {
      if (file!.endsWith(suffix) && file!.length > suffix.length) {
        const database = decodeName(file!.slice(0, -suffix.length));
        const kind = format === 'directory' ? 'archive-dir' : 'archive';
        return { ...at, kind, database, format, gzip: suffix === '.sql.gz' };
      }
    }
    return undefined;
  }
  if (file!.endsWith('.dir') && file!.length > 4) {
    return { ...at, kind: 'archive-member', database: decodeName(file!.slice(0, -4)), format: 'directory', member: rest.join('/') };
  }
  return undefined;
}

/** The manifest's `level`: the letter format 1 has always stored for what the job asked for. */
export const MANIFEST_LEVEL: Readonly<Record<BackupKind, string>> = { full: 'F', incremental: 'I', differential: 'D' };

/** manifest.json: written first, so a restore knows what is coming before it comes. */
export interface DumpManifest {
  readonly format: typeof DUMP_MANIFEST_FORMAT;
  readonly version: typeof DUMP_MANIFEST_VERSION;
  readonly mode: 'dump' | 'parallel_dump';
  readonly dumpFormat: DumpFormat;
  readonly cluster: string;
  readonly systemIdentifier: string | null;
  readonly job: string;
  readonly level: string;
  readonly startedAt: string;
  readonly server: { readonly version: string; readonly major: number; readonly endpoint: string; readonly role: 'primary' | 'standby' };
  readonly pgDump: { readonly version: string; readonly major: number };
  readonly compressionLevel: number;
  readonly includeBlobs: boolean;
  readonly parallelJobs: number;
  readonly globals: string;
  readonly databases: ReadonlyArray<{ readonly name: string; readonly archive: string; readonly sizeBytes: number }>;
  readonly tablespaces: ReadonlyArray<{ readonly oid: number; readonly name: string; readonly location: string }>;
}

export function parseDumpManifest(text: string): DumpManifest {
  let m: Partial<DumpManifest>;
  try {
    m = JSON.parse(text) as Partial<DumpManifest>;
  } catch (e) {
    throw new PgbaculaError('RESTORE_PRECHECK', `${MANIFEST_FILE} is not valid JSON: ${(e as Error).message}`);
  }
  if (m.format !== DUMP_MANIFEST_FORMAT || typeof m.version !== 'number') {
    throw new PgbaculaError('RESTORE_PRECHECK', `${MANIFEST_FILE} is not a pgbacula dump manifest`);
  }
  if (m.version > DUMP_MANIFEST_VERSION) {
    throw new PgbaculaError('RESTORE_PRECHECK', `${MANIFEST_FILE} has version ${m.version}; this pgbacula reads version ${DUMP_MANIFEST_VERSION}`, {
      hint: 'Restore with the pgbacula version that made the backup, or newer.',
    });
  }
  return m as DumpManifest;
}
