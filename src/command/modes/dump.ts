/**
 * Modes `dump` and `parallel_dump` in the registry: settings from the parameters
 * (read and checked together here, the one place), the dump as a source of items, the
 * databases for `.ls` and `.query`, and the restore into a server.
 */
import { resolveConnection } from '../../config/connection.js';
import { getBool, getInt, getList, getString, type ParamMap } from '../../config/params.js';
import { PgbaculaError } from '../../errors.js';
import { encodeName } from '../../format/path-name.js';
import { findClientTools } from '../../server/client-tools.js';
import { serverVersion } from '../../server/server-facts.js';
import { openSession } from '../../server/session.js';
import { planDump, runDump } from '../../modes/dump/dump.js';
import { ServerRestoreTarget, type ServerRestoreSettings } from '../../modes/dump/restore.js';
import type { DumpFormat } from '../../modes/dump/layout.js';
import type { DumpSettings } from '../../modes/dump/settings.js';
import { backupKindOf } from '../bacula/levels.js';
import type { BackendSettings, ModeEntry, SourceSettings } from '../mode-entry.js';

/** Restore parameters that only mean something for physical restores. */
const PHYSICAL_RESTORE_ONLY = ['target_time', 'target_lsn', 'target_xid', 'target_name', 'pgdata_dir', 'recovery_target_action', 'recreate_replication_slots', 'recreate_subscriptions', 'restore_as_standby', 'primary_conninfo', 'standby_name', 'skip_wal_replay', 'restore_port'];

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

type DumpRestoreSettings = Omit<ServerRestoreSettings, 'job'>;

function restoreSettings(params: ParamMap, backend: BackendSettings): DumpRestoreSettings {
  return {
    connection: resolveConnection(params, backend.env),
    targetDatabase: getString(params, 'target_database') || undefined,
    overwriteExisting: getBool(params, 'overwrite_existing'),
    remapTablespaces: getList(params, 'remap_tablespace'),
    parallelJobs: getInt(params, 'parallel_jobs'),
    tmpdir: getString(params, 'tmpdir')!,
    pgBinDir: getString(params, 'pg_bin_dir'),
    progressIntervalMs: backend.progressIntervalMs,
    env: backend.env,
  };
}

function dumpEntry(name: 'dump' | 'parallel_dump'): ModeEntry<DumpSettings, DumpRestoreSettings> {
  return {
    name,
    restoreMode: 'dump',
    ignored: { names: PHYSICAL_RESTORE_ONLY, when: 'restore', why: 'applies to physical restores; ignored for a dump restore' },
    files: { what: 'dump files', untouched: 'no database is touched' },
    settings: (params: ParamMap, _source: SourceSettings) => dumpSettings(params),
    restoreSettings,

    async backup(job, kind) {
      const plan = await planDump(job.settings(), job.source().connection, job.ctx.log, job.backend.env);
      return (sink) =>
        runDump(plan, sink, {
          job: String(job.ctx.job.jobId),
          kind: backupKindOf(job.ctx.job.level),
          log: job.ctx.log,
          signal: job.ctx.signal,
          estimate: kind === 'estimate',
          progressIntervalMs: job.backend.progressIntervalMs,
          env: job.backend.env,
        });
    },

    /** `.ls`: `/` lists the cluster directory; anything below it, the databases as directories. */
    async listing(job, path) {
      const plan = await planDump({ ...job.settings(), databases: [], excludeDatabases: [] }, job.source().connection, job.ctx.log, job.backend.env);
      const top = path.replace(/\/+$/, '') === '' || path === '/';
      const now = Date.now();
      return async (sink) => {
        const items = top ? [encodeName(plan.cluster)] : plan.databases.map((d) => `${encodeName(plan.cluster)}/${encodeName(d.name)}`);
        for (const p of items) {
          await sink.begin({ path: p, type: 'dir', mode: 0o755, mtimeMs: now, size: 0, encoding: 'raw' });
          await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
        }
      };
    },

    /** `.query`: `databases` (name and size) or `version` (server and pg_dump). */
    async query(job, parameter) {
      const conn = job.source().connection;
      if (parameter === 'databases') {
        const s = await openSession(conn, { applicationName: 'pgbacula query' });
        try {
          const r = await s.query<{ datname: string; size: string }>("SELECT datname, pg_database_size(oid) AS size FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname");
          return r.rows.map((d) => ({ pairs: `database=${d.datname.replace(/,/g, '_')},size=${d.size}` }));
        } finally {
          await s.end().catch(() => undefined);
        }
      }
      if (parameter === 'version') {
        const s = await openSession(conn, { applicationName: 'pgbacula query' });
        try {
          const v = (await serverVersion(s)).version;
          const tools = findClientTools(job.source().pgBinDir, job.backend.env);
          return [{ pairs: `server=${v},pg_dump=${tools.version}` }];
        } finally {
          await s.end().catch(() => undefined);
        }
      }
      throw new PgbaculaError('PARAM_INVALID', `unknown query "${parameter}"`, { hint: 'Queries: databases, version.' });
    },

    async restore(job) {
      const target = new ServerRestoreTarget({ ...job.restoreSettings(), job: String(job.ctx.job.jobId) }, job.ctx.log);
      await target.prepare();
      return target;
    },
  };
}

export const DUMP_ENTRY = dumpEntry('dump');
export const PARALLEL_DUMP_ENTRY = dumpEntry('parallel_dump');
