/**
 * libpq's password file: lines of host:port:database:user:password, '*' matches anything,
 * '\' escapes ':' and '\'. The first matching line wins (libpq semantics). Pure: the caller
 * reads the file and checks its mode.
 */
export interface PgpassQuery {
  host: string;
  port: number;
  database: string;
  user: string;
}

function splitFields(line: string): string[] {
  const fields: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) cur += line[++i];
    else if (c === ':') {
      fields.push(cur);
      cur = '';
    } else cur += c;
  }
  fields.push(cur);
  return fields;
}

export function findPgpassPassword(text: string, q: PgpassQuery): string | undefined {
  // A socket directory matches the entry "localhost", as in libpq.
  const host = q.host.startsWith('/') ? 'localhost' : q.host;
  for (const rawLine of text.split(/\r?\n/)) {
    if (rawLine.trim() === '' || rawLine.startsWith('#')) continue;
    const f = splitFields(rawLine);
    if (f.length < 5) continue;
    const [h, p, d, u] = f as [string, string, string, string];
    const password = f.slice(4).join(':');
    const match = (pattern: string, value: string) => pattern === '*' || pattern === value;
    if (match(h, host) && match(p, String(q.port)) && match(d, q.database) && match(u, q.user)) return password;
  }
  return undefined;
}
