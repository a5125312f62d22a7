import { resolve } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { closestName } from '../config/params.js';
import { findParameter, PARAMETERS } from '../config/schema.js';
import type { RawParam } from '../config/plugin-string.js';
import type { CommandArgs } from '../command/context.js';

/** Flags that are not parameters: they name things the command works on or how it prints. */
export const GLOBAL_FLAGS = {
  repo: { takesValue: true, path: true, doc: 'repository directory (standalone mode)' },
  pgdata: { takesValue: true, path: true, doc: 'data directory to read (backup, verify, bench)' },
  backup: { takesValue: true, doc: 'backup id in the repository (restore, verify, info); default the latest' },
  staged: { takesValue: true, path: true, doc: "wal-fetch: a backup's own WAL staged by a restore, served when the archive lacks a file" },
  latest: { takesValue: false, doc: 'wal-fetch: restoring to the end of WAL, serve the newest .partial as its segment when no complete copy exists' },
  config: { takesValue: true, path: true, doc: 'pgbacula.conf to read (default /etc/pgbacula/pgbacula.conf if present)' },
  json: { takesValue: false, doc: 'machine-readable output' },
  help: { takesValue: false, doc: 'help for this command' },
  version: { takesValue: false, doc: 'print the version' },
} as const;

export type GlobalFlag = keyof typeof GLOBAL_FLAGS;

export type ParsedArgv = CommandArgs;

const kebabToSnake = (s: string) => s.replace(/-/g, '_');
const snakeToKebab = (s: string) => s.replace(/_/g, '-');

/** Every flag a command line may hold, for the typo hint. */
function knownFlagNames(): string[] {
  return [...Object.keys(GLOBAL_FLAGS), ...PARAMETERS.filter((p) => !p.scopes.includes('protocol') && !p.secret).map((p) => p.name)];
}

function unknownFlag(name: string): PgbaculaError {
  const near = closestName(name, knownFlagNames());
  return new PgbaculaError('PARAM_UNKNOWN', `unknown flag --${snakeToKebab(name)}`, {
    hint: near ? `Did you mean --${snakeToKebab(near)}? Run "pgbacula help parameters" for the full list.` : 'Run "pgbacula help" and "pgbacula help parameters" for the accepted flags.',
  });
}

/**
 * `pgbacula <command> [--flag[=value] | --flag value]...`. Every schema parameter is a flag
 * in kebab case; booleans may stand alone or take =value, and
 * --no-<flag> means false. Relative paths are resolved against the working directory, as
 * pg_basebackup does (wal-push and wal-fetch run in the data directory, which is then the base).
 */
export function parseArgv(argv: readonly string[]): ParsedArgv {
  const positional: string[] = [];
  const params: RawParam[] = [];
  const globals: { -readonly [K in keyof ParsedArgv['globals']]: ParsedArgv['globals'][K] } = {};
  let command: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h') {
      globals.help = true;
      continue;
    }
    if (arg === '-V') {
      globals.version = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      if (command === undefined) command = arg;
      else positional.push(arg);
      continue;
    }
    const body = arg.slice(2);
    const eq = body.indexOf('=');
    let name = kebabToSnake(eq < 0 ? body : body.slice(0, eq));
    let value: string | undefined = eq < 0 ? undefined : body.slice(eq + 1);
    if (name in GLOBAL_FLAGS) {
      const g = GLOBAL_FLAGS[name as GlobalFlag];
      if (g.takesValue) {
        if (value === undefined) {
          const next = argv[i + 1];
          if (next === undefined || next.startsWith('--')) {
            throw new PgbaculaError('USAGE', `flag --${name} needs a value`, { hint: `Write --${name}=VALUE.` });
          }
          value = next;
          i++;
        }
        if (value === '') throw new PgbaculaError('USAGE', `flag --${name} needs a value`, { hint: `Write --${name}=VALUE.` });
        globals[name as GlobalFlag] = 'path' in g && g.path ? resolve(value) : value;
      } else {
        globals[name as GlobalFlag] = true;
      }
      continue;
    }
    let def = findParameter(name);
    if (!def && name.startsWith('no_') && value === undefined) {
      const positive = findParameter(name.slice(3));
      if (positive?.type === 'bool') {
        def = positive;
        name = positive.name;
        value = 'false';
      }
    }
    if (!def) throw unknownFlag(name);
    if (def.type === 'bool' && value === undefined) value = 'true';
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) {
        throw new PgbaculaError('USAGE', `flag --${name.replace(/_/g, '-')} needs a value`, {
          hint: `Write --${name.replace(/_/g, '-')}=VALUE.`,
        });
      }
      value = next;
      i++;
    }
    params.push({ key: name, value });
  }
  return { command, positional, params, globals };
}
