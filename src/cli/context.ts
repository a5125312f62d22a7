import { existsSync } from 'node:fs';
import { DEFAULT_CONFIG_PATH, loadConfigFile, type ConfigFile } from '../config/config-file.js';
import { resolveConnection, type ConnectionSettings, type Env } from '../config/connection.js';
import { getString, mergeParams, validateParams, type ParamMap } from '../config/params.js';
import type { ParamScope } from '../config/schema.js';
import type { ParsedArgv } from './argv.js';

/** Everything a command needs from argv, the config file and the environment. */
export interface CommandContext {
  readonly argv: ParsedArgv;
  readonly params: ParamMap;
  readonly config: ConfigFile | undefined;
  readonly env: Env;
  readonly json: boolean;
  connection(): ConnectionSettings;
}

export function buildContext(argv: ParsedArgv, scopes: readonly ParamScope[], env: Env): CommandContext {
  const flags = validateParams(argv.params, scopes, 'cli');
  const explicit = typeof argv.globals.config === 'string' ? argv.globals.config : getString(flags, 'config');
  const path = explicit ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  const config = path === undefined ? undefined : loadConfigFile(path);
  const params = config ? mergeParams(config.connection, config.options, flags) : flags;
  let connection: ConnectionSettings | undefined;
  return {
    argv,
    params,
    config,
    env,
    json: argv.globals.json === true,
    connection() {
      connection ??= resolveConnection(params, env);
      return connection;
    },
  };
}
