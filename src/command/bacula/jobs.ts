/**
 * What `pgbacula backend` does with a job the FD hands it: the plugin parameters (FileSet string,
 * plus restore-time Plugin Options for restores) are validated against the ONE schema, merged
 * with pgbacula.conf, and routed to the mode — the dump modes here. Parsing and calling only;
 * the work is in modes/.
 */
import { existsSync } from 'node:fs';
import { DEFAULT_CONFIG_PATH, loadConfigFile } from '../../config/config-file.js';
import { resolveConnection, type ConnectionSettings, type Env } from '../../config/connection.js';
import { getBool, getInt, getList, getString, mergeParams, validateParams, type ParamMap } from '../../config/params.js';
import type { RawParam } from '../../config/plugin-string.js';
import { scrub } from '../../config/redact.js';
import { PARAMETERS, type ParamScope } from '../../config/schema.js';
import { formatParamValue } from '../../config/values.js';
import { PgbaculaError } from '../../errors.js';
import type { ItemProducer, JobContext, JobFactory, PluginJob, QueryAnswer } from '../../bacula/conversation.js';
import { levelName } from '../../bacula/job-info.js';
import { findClientTools } from '../../server/client-tools.js';
import { openSession } from '../../server/session.js';
import type { RestoreTarget } from '../../item/restore-target.js';
import { encodeName } from '../../format/path-name.js';
import { ServerRestoreTarget } from '../../modes/dump/restore.js';
import { filesRestoreTarget, releaseJobResources } from './common.js';
import { backupKindOf } from './levels.js';
import { dumpSettings } from '../../modes/dump/settings.js';
import { planDump, runDump } from '../../modes/dump/dump.js';
import { PitrPluginJob } from './pitr-job.js';
import { recoveryTargetOf } from '../../restore/repo-restore.js';

const BACKUP_SCOPES: readonly ParamScope[] = ['backup', 'connection', 'options', 'protocol'];
const RESTORE_SCOPES: readonly ParamScope[] = ['backup', 'restore', 'connection', 'options', 'protocol'];
/** Restore parameters that only mean something for physical restores. */
const PHYSICAL_RESTORE_ONLY = ['target_time', 'target_lsn', 'target_xid', 'target_name', 'pgdata_dir', 'recovery_target_action', 'recreate_replication_slots', 'recreate_subscriptions', 'restore_as_standby', 'primary_conninfo', 'skip_wal_replay', 'restore_port'];

export interface BackendSettings {
  readonly env: Env;
  /** Interval of progress lines in the job log; 0 = none. */
  readonly progressIntervalMs: number;
}

function acceptedNames(scopes: readonly ParamScope[]): string {
  return PARAMETERS.filter((p) => p.inPluginString && !p.scopes.includes('protocol') && p.scopes.some((s) => scopes.includes(s))).map((p) => p.name).join(', ');
}

/** validateParams, with the accepted names spelled out: the job log is the only help the operator has. */
export function validatePluginParams(raw: readonly RawParam[], scopes: readonly ParamScope[]): ParamMap {
  try {
    return validateParams(raw, scopes, 'plugin');
  } catch (e) {
    if (e instanceof PgbaculaError && e.code === 'PARAM_UNKNOWN') {
      const near = e.hint?.startsWith('Did you mean') ? `${e.hint.split('?')[0]}? ` : '';
      throw new PgbaculaError('PARAM_UNKNOWN', e.message, { hint: `${near}Accepted parameters: ${acceptedNames(scopes)}.` });
    }
    throw e;
  }
}

/** The given parameters as the job log shows them (protocol keys left out). */
export function describeParams(raw: readonly RawParam[]): string {
  return raw
    .filter((p) => !PARAMETERS.find((d) => d.name === p.key.toLowerCase())?.scopes.includes('protocol'))
    .map((p) => `${p.key}=${p.value}`)
    .join(' ');
}

export function pgbaculaJobs(settings: BackendSettings): JobFactory {
  return {
    configure(raw, ctx) {
      const restore = ctx.job.type === 'R';
      const given = validatePluginParams(raw, restore ? RESTORE_SCOPES : BACKUP_SCOPES);
      const defaultConfig = !given.has('config') && existsSync(DEFAULT_CONFIG_PATH);
      const configPath = defaultConfig ? DEFAULT_CONFIG_PATH : getString(given, 'config');
      const config = configPath ? loadConfigFile(configPath) : undefined;
      const params = config ? mergeParams(config.connection, config.options, given) : given;
      const mode = getString(params, 'mode')!;
      if (restore) {
        const restoreMode = getString(params, 'restore_mode')!;
        const physical = mode === 'pitr';
        if (restoreMode !== 'auto' && restoreMode !== (physical ? 'pitr' : 'dump')) {
          throw new PgbaculaError('PARAM_INVALID', `restore_mode=${restoreMode} cannot restore this backup: it was made with mode=${mode}`, {
            hint: 'Leave restore_mode=auto (the mode is read from the backup).',
          });
        }
        // Two targets are refused when the job starts, not after the FD has sent the data.
        if (physical) recoveryTargetOf(params);
      }
      if (mode !== 'dump' && mode !== 'parallel_dump' && mode !== 'pitr') {
        throw new PgbaculaError('PARAM_INVALID', `mode=${mode} is not available through Bacula in this version of pgbacula`, {
          hint: 'Use mode=pitr (base backups + WAL, point-in-time restore) or mode=dump / parallel_dump in the FileSet.',
        });
      }
      if (ctx.job.type !== 'E' || !raw.some((p) => /^(listing|query)$/i.test(p.key))) {
        const what = restore ? 'restore' : ctx.job.type === 'E' ? 'estimate' : `${levelName(ctx.job.level)} backup`;
        ctx.log.info(`${what} parameters: ${scrub(describeParams(raw)) || '(defaults)'}${defaultConfig ? ` (+ ${DEFAULT_CONFIG_PATH})` : ''}`);
      }
      return mode === 'pitr' ? new PitrPluginJob(params, ctx, settings) : new DumpPluginJob(params, ctx, settings);
    },
  };
}

class DumpPluginJob implements PluginJob {
  private restoreTarget: ServerRestoreTarget | undefined;
  private disposed = false;

  constructor(
    private readonly params: ParamMap,
    private readonly ctx: JobContext,
    private readonly settings: BackendSettings,
  ) {}

  /** The server to read from: standby_host replaces the connection host. */
  private sourceConnection(): ConnectionSettings {
    const standby = getString(this.params, 'standby_host');
    const p = standby ? mergeParams(this.params, new Map([['host', standby]])) : this.params;
    return resolveConnection(p, this.settings.env);
  }

  async prepareBackup(kind: 'backup' | 'estimate'): Promise<ItemProducer> {
    const s = dumpSettings(this.params);
    const plan = await planDump(s, this.sourceConnection(), this.ctx.log, this.settings.env);
    return (sink) =>
      runDump(plan, sink, {
        job: String(this.ctx.job.jobId),
        kind: backupKindOf(this.ctx.job.level),
        log: this.ctx.log,
        signal: this.ctx.signal,
        estimate: kind === 'estimate',
        progressIntervalMs: this.settings.progressIntervalMs,
        env: this.settings.env,
      });
  }

  /** `.ls`: `/` lists the cluster directory; anything below it, the databases as directories. */
  async prepareListing(path: string): Promise<ItemProducer> {
    const s = dumpSettings(this.params);
    const plan = await planDump({ ...s, databases: [], excludeDatabases: [] }, this.sourceConnection(), this.ctx.log, this.settings.env);
    const top = path.replace(/\/+$/, '') === '' || path === '/';
    const now = Date.now();
    return async (sink) => {
      const items = top ? [encodeName(plan.cluster)] : plan.databases.map((d) => `${encodeName(plan.cluster)}/${encodeName(d.name)}`);
      for (const p of items) {
        await sink.begin({ path: p, type: 'dir', mode: 0o755, mtimeMs: now, size: 0, encoding: 'raw' });
        await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
      }
    };
  }

  /** `.query`: `databases` (name and size) or `version` (server and pg_dump). */
  async query(parameter: string): Promise<QueryAnswer[]> {
    const conn = this.sourceConnection();
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
        const v = (await s.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
        const tools = findClientTools(getString(this.params, 'pg_bin_dir'), this.settings.env);
        return [{ pairs: `server=${v},pg_dump=${tools.version}` }];
      } finally {
        await s.end().catch(() => undefined);
      }
    }
    throw new PgbaculaError('PARAM_INVALID', `unknown query "${parameter}"`, { hint: 'Queries: databases, version.' });
  }

  async prepareRestore(): Promise<RestoreTarget> {
    const job = this.ctx.job;
    for (const name of PHYSICAL_RESTORE_ONLY) {
      if (this.params.has(name)) this.ctx.log.warning(`${name}=${formatParamValue(this.params.get(name)!)} applies to physical restores; ignored for a dump restore`);
    }
    const files = filesRestoreTarget(this.ctx, 'dump files', 'no database is touched');
    if (files) return files;
    const target = new ServerRestoreTarget(
      {
        connection: resolveConnection(this.params, this.settings.env),
        targetDatabase: getString(this.params, 'target_database') || undefined,
        overwriteExisting: getBool(this.params, 'overwrite_existing'),
        remapTablespaces: getList(this.params, 'remap_tablespace'),
        parallelJobs: getInt(this.params, 'parallel_jobs'),
        tmpdir: getString(this.params, 'tmpdir')!,
        pgBinDir: getString(this.params, 'pg_bin_dir'),
        job: String(job.jobId),
        progressIntervalMs: this.settings.progressIntervalMs,
        env: this.settings.env,
      },
      this.ctx.log,
    );
    await target.prepare();
    this.restoreTarget = target;
    return target;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.restoreTarget?.dispose();
    await releaseJobResources();
  }
}
