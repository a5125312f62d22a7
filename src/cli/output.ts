import { scrub } from '../config/redact.js';
import { EXIT, type PgbaculaError } from '../errors.js';

/** What a command returns; rendering as text or JSON is decided here, not in the command. */
export interface CommandResult {
  readonly exitCode: number;
  /** Plain data for --json. */
  readonly data: unknown;
  /** Human text (lines, no trailing newline needed). */
  readonly text: string;
}

export function ok(data: unknown, text: string, exitCode: number = EXIT.OK): CommandResult {
  return { exitCode, data, text };
}

export function renderResult(result: CommandResult, json: boolean): string {
  // An empty text means "print nothing" (wal-push/wal-fetch: their output lands in the server log).
  if (!json && result.text === '') return '';
  const out = json ? JSON.stringify(result.data, null, 2) : result.text;
  return scrub(out.endsWith('\n') ? out : out + '\n');
}

export function renderError(e: PgbaculaError, json: boolean): string {
  if (json) {
    return scrub(JSON.stringify({ error: { code: e.id, message: e.message, hint: e.hint ?? null } }, null, 2)) + '\n';
  }
  return scrub(`pgbacula: error: ${e.message}${e.hint ? `\nhint: ${e.hint}` : ''}`) + '\n';
}

/** Align "label  value" rows for terminal output. */
export function table(rows: ReadonlyArray<readonly [string, string]>, indent = '  '): string {
  const width = Math.max(0, ...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${indent}${k.padEnd(width)}  ${v}`).join('\n');
}
