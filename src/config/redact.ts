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
    // An unquoted value ends at white space — or at a double quote: inside JSON output the
    // conninfo is a string, and eating its closing quote would break the document.
    .replace(/(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s"]+)/gi, `$1${REDACTED}`)
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]*:)([^@\s]*)@/gi, `$1${REDACTED}@`);
}

export function scrub(text: string): string {
  let out = redactConninfo(text);
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join(REDACTED);
  }
  return out;
}

/**
 * A shell command of the user's shown in a message (archive_command): values that look like
 * credentials — NAME=value for names holding SECRET, PASS, KEY, TOKEN or CREDENTIAL, a value
 * after -p / --password, user:password@ in URLs — are masked, whatever tool the command runs.
 */
export function redactCommand(text: string): string {
  return scrub(text)
    .replace(/\b([A-Za-z_][A-Za-z0-9_]*(?:SECRET|PASS|KEY|TOKEN|CREDENTIAL)[A-Za-z0-9_]*)=('(?:[^']*)'|"(?:[^"\\]|\\.)*"|\S+)/gi, `$1=${REDACTED}`)
    .replace(/(\s(?:-p|--password|--passphrase)(?:\s+|=))('(?:[^']*)'|"(?:[^"\\]|\\.)*"|\S+)/g, `$1${REDACTED}`)
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)([^@\s]*)@/gi, `$1${REDACTED}@`);
}
