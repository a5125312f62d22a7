import { EXIT, type PgbaculaError } from '../errors.js';

/** What a command returns; rendering as text or JSON is decided by the CLI, not by the command. */
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

/** A failure as --json prints it. */
export function errorData(e: PgbaculaError): { error: { code: string; message: string; hint: string | null } } {
  return { error: { code: e.id, message: e.message, hint: e.hint ?? null } };
}

/** Align "label  value" rows for terminal output. */
export function table(rows: ReadonlyArray<readonly [string, string]>, indent = '  '): string {
  const width = Math.max(0, ...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${indent}${k.padEnd(width)}  ${v}`).join('\n');
}
