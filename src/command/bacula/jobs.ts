/**
 * What `pgbacula backend` does with a job the FD hands it: the plugin parameters (FileSet string,
 * plus restore-time Plugin Options for restores) are validated against the ONE schema, merged
 * with pgbacula.conf, and handed to the job of the mode's registry entry (src/command/modes.ts).
 */
import { existsSync } from 'node:fs';
import { DEFAULT_CONFIG_PATH, loadConfigFile } from '../../config/config-file.js';
import { getString, mergeParams, validateParams, type ParamMap } from '../../config/params.js';
import type { RawParam } from '../../config/plugin-string.js';
import { scrub } from '../../config/redact.js';
import { PARAMETERS, type ParamScope } from '../../config/schema.js';
import { PgbaculaError } from '../../errors.js';
import type { JobFactory } from '../../bacula/conversation.js';
import { levelName } from '../../bacula/job-info.js';
import type { BackendSettings } from '../mode-entry.js';
import { modeEntry, MODES_HINT, restoreModeOf } from '../modes.js';
import { ModePluginJob } from './plugin-job.js';

const BACKUP_SCOPES: readonly ParamScope[] = ['backup', 'connection', 'options', 'protocol'];
const RESTORE_SCOPES: readonly ParamScope[] = ['backup', 'restore', 'connection', 'options', 'protocol'];

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
      const entry = modeEntry(mode);
      if (restore) {
        const restoreMode = getString(params, 'restore_mode')!;
        if (restoreMode !== 'auto' && restoreMode !== restoreModeOf(mode)) {
          throw new PgbaculaError('PARAM_INVALID', `restore_mode=${restoreMode} cannot restore this backup: it was made with mode=${mode}`, {
            hint: 'Leave restore_mode=auto (the mode is read from the backup).',
          });
        }
        entry?.checkRestore?.(params);
      }
      if (!entry) {
        throw new PgbaculaError('PARAM_INVALID', `mode=${mode} is not available through Bacula in this version of pgbacula`, { hint: MODES_HINT });
      }
      if (ctx.job.type !== 'E' || !raw.some((p) => /^(listing|query)$/i.test(p.key))) {
        const what = restore ? 'restore' : ctx.job.type === 'E' ? 'estimate' : `${levelName(ctx.job.level)} backup`;
        ctx.log.info(`${what} parameters: ${scrub(describeParams(raw)) || '(defaults)'}${defaultConfig ? ` (+ ${DEFAULT_CONFIG_PATH})` : ''}`);
      }
      return new ModePluginJob(entry, params, ctx, settings);
    },
  };
}
