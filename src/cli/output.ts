import { scrub } from '../config/redact.js';
import type { PgbaculaError } from '../errors.js';
import { errorData, type CommandResult } from '../command/result.js';

export function renderResult(result: CommandResult, json: boolean): string {
  // An empty text means "print nothing" (wal-push/wal-fetch: their output lands in the server log).
  if (!json && result.text === '') return '';
  const out = json ? JSON.stringify(result.data, null, 2) : result.text;
  return scrub(out.endsWith('\n') ? out : out + '\n');
}

export function renderError(e: PgbaculaError, json: boolean): string {
  if (json) {
    return scrub(JSON.stringify(errorData(e), null, 2)) + '\n';
  }
  return scrub(`pgbacula: error: ${e.message}${e.hint ? `\nhint: ${e.hint}` : ''}`) + '\n';
}
