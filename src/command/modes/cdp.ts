/**
 * Mode `cdp` in the registry (docs/cdp.md): a pitr chain whose WAL comes from a running
 * `wal-receive`. A Full is a pitr Full; every other job ships what reached the spool since the
 * previous job without closing the server's segment, then the receiver's open segment under its
 * own `.partial` name (src/modes/cdp/open-segment.ts). Before shipping, every job checks the
 * receiver (src/modes/cdp/receiver-verdict.ts): no receiver fails the job with the fix; lags past
 * the thresholds end it with warnings; the job log states the RPO it leaves. Restores are pitr
 * restores, replaying the newest `.partial` at the end of WAL.
 */
import { join } from 'node:path';
import { getBool, getInt, getString, type ParamMap } from '../../config/params.js';
import { PgbaculaError } from '../../errors.js';
import { encodeName } from '../../format/path-name.js';
import type { PitrSettings } from '../../modes/pitr/pitr.js';
import { judgeReceiver, receiverFix, rpoLine, type ReceiverThresholds } from '../../modes/cdp/receiver-verdict.js';
import { receiverFacts } from '../../modes/cdp/receiver-health.js';
import { shipOpenSegment, type OpenSegmentShipped } from '../../modes/cdp/open-segment.js';
import { startDetachedReceiver } from '../../modes/cdp/start-receiver.js';
import { CHAIN_DIR } from '../bacula/pitr-chain-file.js';
import type { RestoreOptions } from '../../restore/repo-restore.js';
import { openSession } from '../../server/session.js';
import { chainFilePath, loadChain } from '../bacula/pitr-chain-file.js';
import { recordsOfJob } from '../bacula/pitr-chain.js';
import { runPitrChainJob } from '../bacula/pitr-chain-job.js';
import type { BackendSettings, ModeEntry, SourceSettings } from '../mode-entry.js';
import { PITR_ENTRY, physicalModeBasics, pitrSettings } from './pitr.js';

interface CdpSettings {
  readonly pitr: PitrSettings;
  readonly thresholds: ReceiverThresholds;
  /** The receiver's slot and application_name (the same parameters wal-receive reads). */
  readonly slotName: string;
  readonly applicationName: string;
  /** cdp_start_receiver: start a detached receiver when none runs (with synchronous_receive as given). */
  readonly startReceiver: boolean;
  readonly synchronousReceive: boolean;
}

export const CDP_ENTRY: ModeEntry<CdpSettings, RestoreOptions> = {
  name: 'cdp',
  restoreMode: 'pitr',
  ...physicalModeBasics('cdp'),
  settings: (params: ParamMap, source: SourceSettings, backend: BackendSettings) => ({
    pitr: pitrSettings(params, source.connection, backend.env, backend.progressIntervalMs),
    thresholds: {
      windowSeconds: getInt(params, 'cdp_window_seconds'),
      maxLagSeconds: getInt(params, 'cdp_max_lag_seconds'),
      maxLagBytes: getInt(params, 'cdp_max_lag_mb') * 1024 * 1024,
    },
    slotName: getString(params, 'slot_name') || 'pgbacula',
    applicationName: getString(params, 'application_name')!,
    startReceiver: getBool(params, 'cdp_start_receiver'),
    synchronousReceive: getBool(params, 'synchronous_receive'),
  }),
  restoreSettings: PITR_ENTRY.restoreSettings,

  async backup(job, kind) {
    const s = job.settings();
    const { pitr } = s;
    const info = job.ctx.job;
    const log = job.ctx.log;
    // Reject an unreachable server or a refused login now, with A to the start command.
    const probe = await openSession(pitr.connection, { applicationName: 'pgbacula cdp' });
    let systemId: string;
    try {
      systemId = (await probe.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')).rows[0]!.id;
    } finally {
      await probe.end().catch(() => undefined);
    }
    const cluster = encodeName(pitr.cluster ?? systemId);
    return async (sink) => {
      const startedAtMs = Date.now();
      let spoolLagSeconds: number | undefined;
      if (kind !== 'estimate') {
        const records = recordsOfJob(await loadChain(chainFilePath(pitr.spoolRoot, cluster)).catch(() => []), info.name);
        const previous = records.reduce((a, r) => Math.max(a, r.startedAtMs), 0);
        const request = {
          connection: pitr.connection,
          spoolRoot: pitr.spoolRoot,
          systemId,
          slotName: s.slotName,
          applicationName: s.applicationName,
          sincePreviousJobSeconds: previous > 0 ? (startedAtMs - previous) / 1000 : undefined,
        };
        let verdict = judgeReceiver(await receiverFacts(request), s.thresholds);
        if (verdict.refusal && s.startReceiver) {
          log.info(`${verdict.refusal}; cdp_start_receiver=true: starting one`);
          const started = await startDetachedReceiver({ ...request, synchronous: s.synchronousReceive, logDir: join(pitr.spoolRoot, CHAIN_DIR), cluster });
          log.info(`started wal-receive process ${started.lock.pid} (detached: it outlives this job; output in ${started.logPath}) — run it under systemd instead (README: cdp setup), which restarts it`);
          // Until it has connected, the receiver's slot and stream are not there to judge.
          const deadline = Date.now() + 15_000;
          let facts = await receiverFacts(request);
          while (!facts.stream && Date.now() < deadline) {
            await new Promise((res) => setTimeout(res, 200));
            facts = await receiverFacts(request);
          }
          verdict = judgeReceiver(facts, s.thresholds);
        }
        if (verdict.refusal) {
          throw new PgbaculaError('PREREQUISITE', verdict.refusal, { hint: receiverFix({ spoolRoot: pitr.spoolRoot, slotName: s.slotName, applicationName: s.applicationName, cluster }) });
        }
        for (const line of verdict.lines) log.info(line);
        // A non-fatal job error, not a Warning line: Bacula 15 ends a job "Backup OK -- with
        // warnings" only for job errors (a Warning message leaves it plain "Backup OK").
        for (const w of verdict.warnings) log.error(`warning: ${w}`);
        spoolLagSeconds = verdict.spoolLagSeconds;
      }
      let shipped: OpenSegmentShipped | undefined;
      await runPitrChainJob(pitr, { jobId: info.jobId, name: info.name, level: info.level ?? 'F', since: info.since }, sink, { log, signal: job.ctx.signal, estimate: kind === 'estimate' }, undefined, {
        shipOpenSegment: async (a) => {
          shipped = await shipOpenSegment({
            spoolRoot: pitr.spoolRoot,
            systemId: a.server.systemId,
            walSegmentSize: a.server.walSegmentSize,
            after: { timeline: a.walThrough.timeline, segno: BigInt(a.walThrough.segno), name: a.walThrough.name },
            timeline: a.server.timeline,
            cluster: a.cluster,
            tmpdir: pitr.tmpdir,
            jobId: info.jobId,
            compress: pitr.compress,
            pool: a.pool,
            sink: a.sink,
            log,
            signal: job.ctx.signal,
          });
        },
      });
      if (kind === 'estimate') return;
      // Bacula media now hold the WAL up to this job's snapshot of the spool, which was the
      // receiver's lag behind the server when it was taken.
      const cutMs = shipped?.atMs ?? startedAtMs;
      log.info(rpoLine({ spoolLagSeconds, mediaLagSeconds: (spoolLagSeconds ?? 0) + (Date.now() - cutMs) / 1000, windowSeconds: s.thresholds.windowSeconds }));
    };
  },
  listing: (job, path) => PITR_ENTRY.listing(job as never, path),
  query: (job, parameter) => PITR_ENTRY.query(job as never, parameter),
  restore: (job) => PITR_ENTRY.restore(job as never),
};
