/**
 * Mode `pitr` in the registry: its settings from the parameters, the Bacula job that decides
 * from the chain of earlier jobs what the mode stores (src/command/bacula/pitr-chain-job.ts),
 * the cluster's areas for `.ls`, `.query version`, and the restore that stages the received jobs
 * as a repository and recovers from it (src/modes/pitr/restore.ts).
 */
import type { ConnectionSettings, Env } from '../../config/connection.js';
import { getBool, getInt, getList, getString, mergeParams, type ParamMap } from '../../config/params.js';
import { resolveConnection } from '../../config/connection.js';
import type { StandbyEndpoint } from '../../server/topology-capture.js';
import { PgbaculaError } from '../../errors.js';
import { encodeName } from '../../format/path-name.js';
import type { PitrSettings } from '../../modes/pitr/pitr.js';
import { PitrRestoreTarget } from '../../modes/pitr/restore.js';
import type { RestoreOptions } from '../../restore/repo-restore.js';
import { serverVersion } from '../../server/server-facts.js';
import { openSession } from '../../server/session.js';
import { runPitrChainJob } from '../bacula/pitr-chain-job.js';
import type { BackendSettings, ModeEntry, SourceSettings } from '../mode-entry.js';
import { recoveryTargetOf, restoreOptionsOf } from '../restore-settings.js';

/** How a Bacula restore names the server binaries (bconsole cannot pass CLI flags). */
export const BACULA_BIN_DIR_OPTION =
  "with the restore's Plugin Option pg_bin_dir=/usr/lib/postgresql/<major>/bin (bconsole: restore … → mod → Plugin Options), or pg_bin_dir in the FileSet's Plugin string or in [options] of pgbacula.conf on the client";

/** Parameters that mean something for dump modes only. */
const DUMP_ONLY = ['database', 'exclude_database', 'dump_format', 'include_blobs', 'target_database'];

/** The settings of a pitr backup, from any command that makes one (a Bacula job, `pgbacula backup`). */
export function pitrSettings(params: ParamMap, connection: ConnectionSettings, env: Env, progressIntervalMs: number): PitrSettings {
  const p = params;
  return {
    connection,
    spoolRoot: getString(p, 'wal_spool')!,
    cluster: getString(p, 'cluster') || undefined,
    overlap: getInt(p, 'wal_segment_overlap'),
    tmpdir: getString(p, 'tmpdir')!,
    verifyChecksums: getBool(p, 'verify_checksum'),
    // Bacula compresses (and deduplicates) what it stores: LZ4 here only when asked for.
    compress: getInt(p, 'compression_level') > 0,
    backupFromStandby: getBool(p, 'backup_from_standby'),
    excludeTablespaces: getList(p, 'exclude_tablespace'),
    label: getString(p, 'pitr_label')!,
    parallelJobs: getInt(p, 'parallel_jobs'),
    progressIntervalMs,
    archiveWaitMs: Number(env.PGBACULA_ARCHIVE_WAIT_SECONDS ?? 60) * 1000,
    trackReplicationState: getBool(p, 'track_replication_state'),
    standbyEndpoints: getList(p, 'standby_hosts').map((h) => standbyEndpoint(p, env, h)),
  };
}

/**
 * One of standby_hosts (host, host:port, [v6]:port): the connection's user, database and sslmode,
 * its password from the config file or the pgpass entry of that host — never another source.
 */
export function standbyEndpoint(params: ParamMap, env: Env, text: string): StandbyEndpoint {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) throw new PgbaculaError('PARAM_INVALID', `invalid standby in standby_hosts: "${text}"`, { hint: 'Give host or host:port (a socket directory, a name, an address; [v6 address]:port), comma-separated.' });
  const host = m[1] ?? m[2]!;
  const over = new Map<string, string | number>([['host', host]]);
  if (m[3]) over.set('port', Number(m[3]));
  const { PGPASSWORD: _ignored, ...rest } = env;
  return { label: text.trim(), connection: resolveConnection(mergeParams(params, over as ParamMap), rest) };
}

/**
 * What every mode built on pitr's base backups shares with it: the dump-only parameters it
 * ignores, how its files are named in the job log, and the restore checks made at job start.
 */
export function physicalModeBasics(mode: string): Pick<ModeEntry<unknown, RestoreOptions>, 'ignored' | 'files' | 'checkRestore'> {
  return {
    ignored: { names: DUMP_ONLY, when: 'start', why: `applies to dump modes; ignored for mode=${mode}` },
    files: { what: `${mode} files`, untouched: 'no server is touched' },
    // Two targets are refused when the job starts, not after the FD has sent the data.
    checkRestore: (params) => void recoveryTargetOf(params),
  };
}

export const PITR_ENTRY: ModeEntry<PitrSettings, RestoreOptions> = {
  name: 'pitr',
  restoreMode: 'pitr',
  ...physicalModeBasics('pitr'),
  settings: (params: ParamMap, source: SourceSettings, backend: BackendSettings) => pitrSettings(params, source.connection, backend.env, backend.progressIntervalMs),
  restoreSettings: (params: ParamMap) => restoreOptionsOf(params),

  async backup(job, kind) {
    const s = job.settings();
    const info = job.ctx.job;
    // Reject an unreachable server or a refused login now, with A to the start command.
    const probe = await openSession(s.connection, { applicationName: 'pgbacula pitr' });
    await probe.end().catch(() => undefined);
    return (sink) =>
      runPitrChainJob(s, { jobId: info.jobId, name: info.name, level: info.level ?? 'F', since: info.since }, sink, {
        log: job.ctx.log,
        signal: job.ctx.signal,
        estimate: kind === 'estimate',
      });
  },

  /** `.ls`: the cluster directory, then its pitr and wal areas. */
  async listing(job, path) {
    const session = await openSession(job.source().connection, { applicationName: 'pgbacula query' });
    let cluster: string;
    try {
      cluster = encodeName(job.source().cluster || (await session.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')).rows[0]!.id);
    } finally {
      await session.end().catch(() => undefined);
    }
    const top = path.replace(/\/+$/, '') === '' || path === '/';
    const now = Date.now();
    return async (sink) => {
      for (const p of top ? [cluster] : [`${cluster}/pitr`, `${cluster}/wal`]) {
        await sink.begin({ path: p, type: 'dir', mode: 0o755, mtimeMs: now, size: 0, encoding: 'raw' });
        await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
      }
    };
  },

  async query(job, parameter) {
    if (parameter !== 'version') throw new PgbaculaError('PARAM_INVALID', `unknown query "${parameter}"`, { hint: 'Queries for mode=pitr: version.' });
    const s = await openSession(job.source().connection, { applicationName: 'pgbacula query' });
    try {
      const r = await s.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
      return [{ pairs: `server=${(await serverVersion(s)).version},system_identifier=${r.rows[0]!.id}` }];
    } finally {
      await s.end().catch(() => undefined);
    }
  },

  async restore(job) {
    const target = new PitrRestoreTarget({ options: job.restoreSettings(), binDirHint: BACULA_BIN_DIR_OPTION, jobId: job.ctx.job.jobId, progressIntervalMs: job.backend.progressIntervalMs }, job.ctx.log);
    await target.prepare();
    return target;
  },
};
