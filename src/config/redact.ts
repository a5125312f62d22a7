/**
 * Secrets stay secret: every text that leaves the process (job log, stderr, --json, error
 * messages, files we write) goes through scrub(). Secrets are registered the moment they are
 * read, so even a message we did not write ourselves (a driver error echoing a conninfo)
 * cannot carry them out.
 */
const secrets = new Set<string>();

export const REDACTED = '********';

export function registerSecret(value: string | undefined): void {
  // Very short values would blank out ordinary words; libpq passwords of 1–2 characters are
  // still masked by the conninfo rule below.
  if (value && value.length >= 3) secrets.add(value);
}

/** Mask password=... in key/value conninfo strings and user:password@ in URIs. */
export function redactConninfo(text: string): string {
  return text
    .replace(/(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)/gi, `$1${REDACTED}`)
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]*:)([^@\s]*)@/gi, `$1${REDACTED}@`);
}

export function scrub(text: string): string {
  let out = redactConninfo(text);
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join(REDACTED);
  }
  return out;
}
