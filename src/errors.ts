/**
 * Every failure class has one stable code. Codes are part of the interface: job logs,
 * `--json` output and scripts key on them, so never renumber or reuse one.
 *
 * `exit` is the CLI exit status the class maps to (0 success, 1 failure,
 * 2 bad input, 3 connection failure, 4 completed with warnings).
 */
export const ERROR_CODES = {
  PARAM_UNKNOWN: { id: 'E_PARAM_UNKNOWN', exit: 2 },
  PARAM_INVALID: { id: 'E_PARAM_INVALID', exit: 2 },
  PARAM_MISSING: { id: 'E_PARAM_MISSING', exit: 2 },
  PLUGIN_STRING: { id: 'E_PLUGIN_STRING', exit: 2 },
  CONFIG_FILE: { id: 'E_CONFIG_FILE', exit: 2 },
  CONFIG_PERMISSIONS: { id: 'E_CONFIG_PERMISSIONS', exit: 2 },
  USAGE: { id: 'E_USAGE', exit: 2 },
  CONNECTION: { id: 'E_CONNECTION', exit: 3 },
  AUTHENTICATION: { id: 'E_AUTHENTICATION', exit: 3 },
  CONNECTION_TIMEOUT: { id: 'E_CONNECTION_TIMEOUT', exit: 3 },
  VERSION_UNSUPPORTED: { id: 'E_VERSION_UNSUPPORTED', exit: 1 },
  PREREQUISITE: { id: 'E_PREREQUISITE', exit: 1 },
  CHECKSUM_FAILURE: { id: 'E_CHECKSUM_FAILURE', exit: 4 },
  WAL_GAP: { id: 'E_WAL_GAP', exit: 1 },
  WAL_CONFLICT: { id: 'E_WAL_CONFLICT', exit: 1 },
  WAL_DAMAGED: { id: 'E_WAL_DAMAGED', exit: 1 },
  RESTORE_PRECHECK: { id: 'E_RESTORE_PRECHECK', exit: 1 },
  PROTOCOL: { id: 'E_PROTOCOL', exit: 1 },
  IO: { id: 'E_IO', exit: 1 },
  CHILD_PROCESS: { id: 'E_CHILD_PROCESS', exit: 1 },
  REPOSITORY: { id: 'E_REPOSITORY', exit: 1 },
  CANCELLED: { id: 'E_CANCELLED', exit: 1 },
  INTERNAL: { id: 'E_INTERNAL', exit: 1 },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export const EXIT = {
  OK: 0,
  FAILURE: 1,
  BAD_INPUT: 2,
  CONNECTION: 3,
  WARNING: 4,
  /**
   * wal-fetch (restore_command) could not serve a file that may exist: PostgreSQL aborts
   * recovery on a status above 125 instead of taking it for "not archived" (xlogarchive.c,
   * RestoreArchivedFile); 143 (128 + SIGTERM) would be taken for a shutdown, so not that one.
   */
  RECOVERY_FATAL: 200,
} as const;

export interface ErrorDetails {
  /** What the operator can do about it, as its own sentence. */
  hint?: string;
  cause?: unknown;
  /** The exit status instead of the class's own (wal-fetch: EXIT.RECOVERY_FATAL). */
  exitCode?: number;
}

/**
 * The one error type. Messages follow the house style: lowercase, the object named,
 * no final period; the hint is a separate sentence telling what to do.
 */
export class PgbaculaError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  private readonly exitOverride: number | undefined;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'PgbaculaError';
    this.code = code;
    this.hint = details.hint;
    this.exitOverride = details.exitCode;
  }

  get id(): string {
    return ERROR_CODES[this.code].id;
  }

  get exitCode(): number {
    return this.exitOverride ?? ERROR_CODES[this.code].exit;
  }

  /** One line for a job log or stderr: `E_PARAM_INVALID: message (hint)`. */
  toOperatorText(): string {
    return this.hint ? `${this.id}: ${this.message}. ${this.hint}` : `${this.id}: ${this.message}`;
  }
}

export function isPgbaculaError(value: unknown): value is PgbaculaError {
  return value instanceof PgbaculaError;
}

/** Wrap anything thrown into a PgbaculaError so every exit path has a code. */
export function asPgbaculaError(value: unknown, code: ErrorCode = 'INTERNAL'): PgbaculaError {
  if (value instanceof PgbaculaError) return value;
  const message = value instanceof Error ? value.message : String(value);
  return new PgbaculaError(code, message, { cause: value });
}
