/**
 * Mode `pitr_block` in the registry: the settings, listing, queries and restore of mode pitr
 * (the same areas, the same staged restore, which rebuilds a block-level chain), and a Bacula job
 * whose Incrementals and Differentials store only the blocks changed since their reference
 * (src/command/bacula/block-chain.ts, docs/block-incremental.md).
 */
import { getInt, type ParamMap } from '../../config/params.js';
import type { PitrSettings } from '../../modes/pitr/pitr.js';
import type { RestoreOptions } from '../../restore/repo-restore.js';
import { openSession } from '../../server/session.js';
import { runPitrChainJob, type BlockJobSettings } from '../bacula/pitr-chain-job.js';
import type { BackendSettings, ModeEntry, SourceSettings } from '../mode-entry.js';
import { PITR_ENTRY, physicalModeBasics, pitrSettings } from './pitr.js';

export const PITR_BLOCK_MODE = 'pitr_block';

interface BlockModeSettings {
  readonly pitr: PitrSettings;
  readonly block: BlockJobSettings;
}

export const PITR_BLOCK_ENTRY: ModeEntry<BlockModeSettings, RestoreOptions> = {
  name: PITR_BLOCK_MODE,
  restoreMode: PITR_BLOCK_MODE,
  ...physicalModeBasics(PITR_BLOCK_MODE),
  settings: (params: ParamMap, source: SourceSettings, backend: BackendSettings) => ({
    pitr: pitrSettings(params, source.connection, backend.env, backend.progressIntervalMs),
    block: {
      mode: PITR_BLOCK_MODE,
      summaryDays: getInt(params, 'pitr_block_summary_days'),
      summarizerWaitMs: Number(backend.env.PGBACULA_SUMMARIZER_WAIT_SECONDS ?? 60) * 1000,
    },
  }),
  restoreSettings: PITR_ENTRY.restoreSettings,

  async backup(job, kind) {
    const { pitr, block } = job.settings();
    const info = job.ctx.job;
    // Reject an unreachable server or a refused login now, with A to the start command.
    const probe = await openSession(pitr.connection, { applicationName: 'pgbacula pitr_block' });
    await probe.end().catch(() => undefined);
    return (sink) =>
      runPitrChainJob(pitr, { jobId: info.jobId, name: info.name, level: info.level ?? 'F', since: info.since }, sink, {
        log: job.ctx.log,
        signal: job.ctx.signal,
        estimate: kind === 'estimate',
      }, block);
  },
  listing: (job, path) => PITR_ENTRY.listing(job as never, path),
  query: (job, parameter) => PITR_ENTRY.query(job as never, parameter),
  restore: (job) => PITR_ENTRY.restore(job as never),
};
