/**
 * The parameters each standalone command accepts as flags, where the CLI (help, validation) and
 * the demo (which runs backup and restore itself) both read them. Kept apart from the commands:
 * the CLI loads a command's module only when it runs it.
 */
import type { ParamScope } from '../config/schema.js';

export const BACKUP_COMMAND_SCOPES: readonly ParamScope[] = ['backup', 'connection', 'options'];
export const RESTORE_COMMAND_SCOPES: readonly ParamScope[] = ['restore', 'options'];
