/**
 * Database and cluster names as path components of stored items: letters, digits, `._+-=@,~` and
 * any non-ASCII character are kept; every other byte is %XX, so `a/b c` is stored as `a%2Fb%20c`
 * and decoded back at restore. Every mode names its cluster directory this way.
 */
import { PgbaculaError } from '../errors.js';

const SAFE_ASCII = /[A-Za-z0-9._+\-=@,~]/;

/** One path component for a database or cluster name (reversible, see decodeName). */
export function encodeName(name: string): string {
  let out = '';
  for (const ch of name) {
    const code = ch.codePointAt(0)!;
    if (code >= 0x80 || SAFE_ASCII.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  // "." and ".." are not names a path can hold.
  if (out === '.' || out === '..') out = out.replace(/\./g, '%2E');
  return out;
}

export function decodeName(component: string): string {
  try {
    return decodeURIComponent(component);
  } catch {
    throw new PgbaculaError('PARAM_INVALID', `"${component}" is not a name written by pgbacula (bad %-escape)`);
  }
}
