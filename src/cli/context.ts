import type { Env } from '../config/connection.js';
import type { ParamScope } from '../config/schema.js';
import { buildContext as commandContext, type CommandContext } from '../command/context.js';
import type { ParsedArgv } from './argv.js';
import { stderrLog } from './stderr-log.js';

export interface LogTarget {
  stderr(text: string): void;
  readonly isTty?: boolean;
}

/** The command's context, its job log on stderr. */
export function buildContext(argv: ParsedArgv, scopes: readonly ParamScope[], env: Env, target: LogTarget = { stderr: () => undefined }): CommandContext {
  return commandContext(argv, scopes, env, stderrLog((t) => target.stderr(t), target.isTty === true));
}
