import { PgbaculaError } from '../errors.js';

export interface RawParam {
  readonly key: string;
  readonly value: string;
}

/**
 * Tokenise a Bacula plugin string exactly as the FD does, so what a
 * user tests with `pgbacula` on the command line means the same as in a FileSet:
 * the first ':' ends the plugin name; tokens split at unquoted blanks; '"' toggles quoting
 * and is removed; '\' makes the next character literal; a token without '=' is a flag (=1).
 * Unlike the FD we refuse unbalanced quotes and a dangling backslash instead of guessing.
 */
export function parsePluginString(text: string): { plugin: string; params: RawParam[] } {
  const colon = text.indexOf(':');
  if (colon < 0) {
    if (/[ \t]/.test(text.trim())) {
      throw new PgbaculaError('PLUGIN_STRING', `plugin string "${text}" has no ':' after the plugin name`, {
        hint: 'Write it as "pgbacula: mode=dump ...".',
      });
    }
    return { plugin: text.trim(), params: [] };
  }
  const tokens = tokenize(text.slice(0, colon) + ' ' + text.slice(colon + 1), text);
  const [plugin = '', ...rest] = tokens;
  return { plugin, params: rest.map(splitToken) };
}

function tokenize(line: string, original: string): string[] {
  const tokens: string[] = [];
  let current = '';
  let inToken = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\') {
      if (i + 1 >= line.length) {
        throw new PgbaculaError('PLUGIN_STRING', `plugin string ends with a lone backslash: ${original}`, {
          hint: 'Escape a literal backslash as \\\\.',
        });
      }
      current += line[++i];
      inToken = true;
    } else if (c === '"') {
      quoted = !quoted;
      inToken = true;
    } else if (!quoted && (c === ' ' || c === '\t')) {
      if (inToken) tokens.push(current);
      current = '';
      inToken = false;
    } else {
      current += c;
      inToken = true;
    }
  }
  if (quoted) {
    throw new PgbaculaError('PLUGIN_STRING', `unbalanced double quote in plugin string: ${original}`, {
      hint: 'Close every opening " (inside a Bacula FileSet write \\" for each quote).',
    });
  }
  if (inToken) tokens.push(current);
  return tokens;
}

function splitToken(token: string): RawParam {
  const eq = token.indexOf('=');
  return eq < 0 ? { key: token, value: '1' } : { key: token.slice(0, eq), value: token.slice(eq + 1) };
}

/** The lines the FD sends after `Params` (one `key=value` per packet). */
export function parseParamLine(line: string): RawParam {
  const text = line.endsWith('\n') ? line.slice(0, -1) : line;
  const eq = text.indexOf('=');
  if (eq <= 0) {
    throw new PgbaculaError('PROTOCOL', `malformed parameter line from the FD: "${text}"`, {
      hint: 'Expected key=value; this is a Bacula FD or shim defect.',
    });
  }
  return { key: text.slice(0, eq), value: text.slice(eq + 1) };
}
