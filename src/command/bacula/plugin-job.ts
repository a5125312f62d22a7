/**
 * The one Bacula job of every mode: the FD's requests (backup, estimate, `.ls`, `.query`,
 * restore) handed to the mode's registry entry (src/command/modes.ts), its parameters read once,
 * and the job's resources released on every exit path.
 */
import type { ParamMap } from '../../config/params.js';
import { formatParamValue } from '../../config/values.js';
import type { ItemProducer, JobContext, PluginJob, QueryAnswer } from '../../bacula/conversation.js';
import type { RestoreTarget } from '../../item/restore-target.js';
import { sourceSettingsOf, type BackendSettings, type ModeEntry, type ModeJob, type ModeRestoreTarget, type SourceSettings } from '../mode-entry.js';
import { filesRestoreTarget, releaseJobResources } from './common.js';

export class ModePluginJob implements PluginJob {
  private restoreTarget: ModeRestoreTarget | undefined;
  private disposed = false;
  private readonly job: ModeJob<unknown, unknown>;

  constructor(
    private readonly entry: ModeEntry,
    private readonly params: ParamMap,
    private readonly ctx: JobContext,
    backend: BackendSettings,
  ) {
    let source: SourceSettings | undefined;
    let settings: { value: unknown } | undefined;
    let restoreSettings: { value: unknown } | undefined;
    this.job = {
      ctx,
      backend,
      source: () => (source ??= sourceSettingsOf(params, backend.env)),
      settings: () => (settings ??= { value: entry.settings(params, this.job.source(), backend) }).value,
      restoreSettings: () => (restoreSettings ??= { value: entry.restoreSettings(params, backend) }).value,
    };
    if (entry.ignored.when === 'start') this.warnIgnored();
  }

  /** Parameters of other modes: said, then ignored. */
  private warnIgnored(): void {
    for (const name of this.entry.ignored.names) {
      if (this.params.has(name)) this.ctx.log.warning(`${name}=${formatParamValue(this.params.get(name)!)} ${this.entry.ignored.why}`);
    }
  }

  prepareBackup(kind: 'backup' | 'estimate'): Promise<ItemProducer> {
    return this.entry.backup(this.job, kind);
  }

  prepareListing(path: string): Promise<ItemProducer> {
    return this.entry.listing(this.job, path);
  }

  query(parameter: string): Promise<QueryAnswer[]> {
    return this.entry.query(this.job, parameter);
  }

  async prepareRestore(): Promise<RestoreTarget> {
    if (this.entry.ignored.when === 'restore') this.warnIgnored();
    const files = filesRestoreTarget(this.ctx, this.entry.files.what, this.entry.files.untouched);
    if (files) return files;
    const target = await this.entry.restore(this.job);
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
