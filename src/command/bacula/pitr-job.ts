/**
 * `pgbacula backend`, mode pitr: the FD's job routed to the pitr source (modes/pitr.ts) for
 * backups and estimates, and to the staging restore target (modes/pitr-restore.ts) for restores.
 * Parameters are read here; the work is in modes/.
 */
import { resolveConnection, type ConnectionSettings } from '../../config/connection.js';
import { getBool, getInt, getList, getString, mergeParams, type ParamMap } from '../../config/params.js';
import { formatParamValue } from '../../config/values.js';
import { PgbaculaError } from '../../errors.js';
import type { ItemProducer, JobContext, PluginJob, QueryAnswer } from '../../bacula/conversation.js';
import { encodeName } from '../../format/path-name.js';
import { runPitrJob, type PitrSettings } from '../../modes/pitr/pitr.js';
import { PitrRestoreTarget } from '../../modes/pitr/restore.js';
import { openSession } from '../../server/session.js';
import type { RestoreTarget } from '../../item/restore-target.js';
import { filesRestoreTarget, releaseJobResources } from './common.js';
import type { BackendSettings } from './jobs.js';

/** Parameters that mean something for dump modes only. */
const DUMP_ONLY = ['database', 'exclude_database', 'dump_format', 'include_blobs', 'target_database'];

export class PitrPluginJob implements PluginJob {
  private restoreTarget: PitrRestoreTarget | undefined;
  private disposed = false;

  constructor(
    private readonly params: ParamMap,
    private readonly ctx: JobContext,
    private readonly settings: BackendSettings,
  ) {
    for (const name of DUMP_ONLY) {
      if (params.has(name)) ctx.log.warning(`${name}=${formatParamValue(params.get(name)!)} applies to dump modes; ignored for mode=pitr`);
    }
  }

  private sourceConnection(): ConnectionSettings {
    const standby = getString(this.params, 'standby_host');
    const p = standby ? mergeParams(this.params, new Map([['host', standby]])) : this.params;
    return resolveConnection(p, this.settings.env);
  }

  private pitrSettings(): PitrSettings {
    const p = this.params;
    return {
      connection: this.sourceConnection(),
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
      progressIntervalMs: this.settings.progressIntervalMs,
      archiveWaitMs: Number(this.settings.env.PGBACULA_ARCHIVE_WAIT_SECONDS ?? 60) * 1000,
    };
  }

  async prepareBackup(kind: 'backup' | 'estimate'): Promise<ItemProducer> {
    const s = this.pitrSettings();
    const job = this.ctx.job;
    // Reject an unreachable server or a refused login now, with A to the start command.
    const probe = await openSession(s.connection, { applicationName: 'pgbacula pitr' });
    await probe.end().catch(() => undefined);
    return (sink) =>
      runPitrJob(s, { jobId: job.jobId, name: job.name, level: job.level ?? 'F', since: job.since }, sink, {
        log: this.ctx.log,
        signal: this.ctx.signal,
        estimate: kind === 'estimate',
      });
  }

  /** `.ls`: the cluster directory, then its pitr and wal areas. */
  async prepareListing(path: string): Promise<ItemProducer> {
    const session = await openSession(this.sourceConnection(), { applicationName: 'pgbacula query' });
    let cluster: string;
    try {
      cluster = encodeName(getString(this.params, 'cluster') || (await session.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')).rows[0]!.id);
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
  }

  async query(parameter: string): Promise<QueryAnswer[]> {
    if (parameter !== 'version') throw new PgbaculaError('PARAM_INVALID', `unknown query "${parameter}"`, { hint: 'Queries for mode=pitr: version.' });
    const s = await openSession(this.sourceConnection(), { applicationName: 'pgbacula query' });
    try {
      const r = await s.query<{ v: string; id: string }>("SELECT current_setting('server_version') AS v, system_identifier::text AS id FROM pg_control_system()");
      return [{ pairs: `server=${r.rows[0]!.v},system_identifier=${r.rows[0]!.id}` }];
    } finally {
      await s.end().catch(() => undefined);
    }
  }

  async prepareRestore(): Promise<RestoreTarget> {
    const job = this.ctx.job;
    const files = filesRestoreTarget(this.ctx, 'pitr files', 'no server is touched');
    if (files) return files;
    const target = new PitrRestoreTarget({ params: this.params, jobId: job.jobId, progressIntervalMs: this.settings.progressIntervalMs }, this.ctx.log);
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
