import { asPgbaculaError, EXIT, PgbaculaError } from '../errors.js';
import { packageVersion } from '../version.js';
import { GLOBAL_FLAGS, parseArgv, type ParsedArgv } from './argv.js';
import { COMMANDS, findCommand, scopesFor, type CommandDef } from './commands.js';
import { buildContext } from './context.js';
import { renderError, renderResult } from './output.js';

export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  isTty?: boolean;
}

function generalHelp(): string {
  const visible = COMMANDS.filter((c) => !c.hidden);
  const width = Math.max(...visible.map((c) => c.name.length));
  return [
    `pgbacula ${packageVersion()} — PostgreSQL backup and point-in-time recovery for Bacula`,
    '',
    'Usage: pgbacula <command> [flags]',
    '',
    'Commands:',
    ...visible.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    `  ${'help'.padEnd(width)}  help for a command, or "help parameters" for every parameter`,
    '',
    'Global flags:',
    ...Object.entries(GLOBAL_FLAGS).map(([k, v]) => `  --${k.padEnd(9)} ${v.doc}`),
    '',
    'Exit status: 0 success, 1 failure, 2 bad input, 3 connection failure, 4 completed with warnings.',
  ].join('\n') + '\n';
}

async function commandHelp(cmd: CommandDef): Promise<string> {
  // Help texts are loaded when asked for: every command's start pays for what it imports.
  const { parameterHelpText } = await import('../config/parameter-docs.js');
  const params = cmd.scopes.length ? `\n\nParameters:\n${parameterHelpText(cmd.scopes)}` : '';
  return `Usage: ${cmd.usage}\n\n${cmd.summary}${cmd.details ? `\n\n${cmd.details}` : ''}${params}\n`;
}

async function helpFor(topic: string | undefined): Promise<string> {
  if (topic === undefined) return generalHelp();
  if (topic === 'parameters') {
    const { parameterHelpText } = await import('../config/parameter-docs.js');
    return `Every parameter (flags in kebab case; plugin strings use the snake_case name):\n\n${parameterHelpText(['backup', 'restore', 'connection', 'options'])}\n`;
  }
  const cmd = findCommand(topic);
  if (!cmd) throw new PgbaculaError('USAGE', `no command named "${topic}"`, { hint: 'Run "pgbacula help" for the list.' });
  return commandHelp(cmd);
}

async function dispatch(argv: ParsedArgv, io: Io): Promise<number> {
  if (argv.globals.version) {
    io.stdout((await import('../command/version-info.js')).versionText());
    return EXIT.OK;
  }
  if (argv.command === undefined) {
    io.stdout(generalHelp());
    return argv.globals.help ? EXIT.OK : EXIT.BAD_INPUT;
  }
  if (argv.command === 'help') {
    io.stdout(await helpFor(argv.positional[0]));
    return EXIT.OK;
  }
  const cmd = findCommand(argv.command);
  if (!cmd) {
    throw new PgbaculaError('USAGE', `unknown command "${argv.command}"`, { hint: 'Run "pgbacula help" for the list of commands.' });
  }
  if (argv.globals.help) {
    io.stdout(await commandHelp(cmd));
    return EXIT.OK;
  }
  const ctx = buildContext(argv, scopesFor(cmd), io.env, { stderr: io.stderr, isTty: io.isTty === true });
  const result = await cmd.run(ctx);
  io.stdout(renderResult(result, ctx.json));
  return result.exitCode;
}

/** The whole CLI as a function of argv and io, so tests run it in-process and capture output. */
export async function main(args: readonly string[], io: Io): Promise<number> {
  let json = args.includes('--json');
  try {
    const argv = parseArgv(args);
    json = argv.globals.json === true;
    return await dispatch(argv, io);
  } catch (e) {
    const err = asPgbaculaError(e);
    io.stderr(renderError(err, json));
    // As restore_command, any exit from 1 to 125 means "not archived" to PostgreSQL, which then
    // ends recovery there and promotes: a wal-fetch that could not even start must stop recovery.
    if (args.includes('wal-fetch') && err.exitCode !== EXIT.OK) return EXIT.RECOVERY_FATAL;
    return err.exitCode;
  }
}
