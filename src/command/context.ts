import { existsSync } from 'node:fs';
import { DEFAULT_CONFIG_PATH, loadConfigFile, type ConfigFile } from '../config/config-file.js';
import { PgbaculaError } from '../errors.js';
import { resolveConnection, type ConnectionSettings, type Env } from '../config/connection.js';
import { getString, mergeParams, validateParams, type ParamMap } from '../config/params.js';
import type { ParamScope } from '../config/schema.js';
import type { RawParam } from '../config/plugin-string.js';
import type { JobLog } from '../item/job-log.js';

/** The command line as src/cli/argv.ts parses it: flags that name things, positional words, parameters. */
export interface CommandArgs {
  readonly command: string | undefined;
  readonly positional: readonly string[];
  readonly params: readonly RawParam[];
  readonly globals: Partial<Record<'repo' | 'pgdata' | 'backup' | 'staged' | 'latest' | 'config' | 'json' | 'help' | 'version', string | true>>;
}

/** Everything a command needs from argv, the config file and the environment. */
export interface CommandContext {
  readonly argv: CommandArgs;
  readonly params: ParamMap;
  readonly config: ConfigFile | undefined;
  readonly env: Env;
  readonly json: boolean;
  /** Operator lines and progress (stderr for the CLI). */
  readonly log: JobLog;
  readonly progressIntervalMs: number;
  connection(): ConnectionSettings;
}

/** The context of one command: its flags validated for `scopes`, merged over pgbacula.conf. */
export function buildContext(argv: CommandArgs, scopes: readonly ParamScope[], env: Env, log: JobLog): CommandContext {
  const flags = validateParams(argv.params, scopes, 'cli');
  const explicit = typeof argv.globals.config === 'string' ? argv.globals.config : getString(flags, 'config');
  const path = explicit ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  let config: ConfigFile | undefined;
  try {
    config = path === undefined ? undefined : loadConfigFile(path);
  } catch (e) {
    // archive_command and restore_command run as the server's user, who may not read the FD's
    // pgbacula.conf; when their archive is named on the command line they need nothing from it,
    // and failing would stall archiving (pg_wal fills) or recovery for a file they do not use.
    const archiveNamed = typeof argv.globals.repo === 'string' || flags.has('wal_spool');
    const unreadable = e instanceof PgbaculaError && (e.cause as NodeJS.ErrnoException | undefined)?.code === 'EACCES';
    if (!(explicit === undefined && unreadable && archiveNamed && (argv.command === 'wal-push' || argv.command === 'wal-fetch'))) throw e;
    config = undefined;
  }
  const params = config ? mergeParams(config.connection, config.options, flags) : flags;
  let connection: ConnectionSettings | undefined;
  return {
    argv,
    params,
    config,
    env,
    json: argv.globals.json === true,
    log,
    // A steady interval for long work; PGBACULA_PROGRESS_SECONDS=0 turns progress lines off.
    progressIntervalMs: env.PGBACULA_PROGRESS_SECONDS !== undefined ? Number(env.PGBACULA_PROGRESS_SECONDS) * 1000 : 10_000,
    connection() {
      connection ??= resolveConnection(params, env);
      return connection;
    },
  };
}
