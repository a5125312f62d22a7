import { isAbsolute, resolve } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { findParameter, PARAMETERS, type ParamScope } from './schema.js';
import type { RawParam } from './plugin-string.js';
import { parseParamValue, type ParamValue } from './values.js';

/** Where a set of raw values came from; decides which keys are acceptable there. */
export type ParamSource = 'plugin' | 'cli' | 'config';

/** Validated parameters: only keys that were given, with their typed values. */
export type ParamMap = ReadonlyMap<string, ParamValue>;

function scopeNames(scopes: readonly ParamScope[]): string {
  return scopes.join('/');
}

/** A typo hint: the candidate with the smallest edit distance, if it is close enough. */
export function closestName(key: string, candidates: readonly string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const c of candidates) {
    const d = editDistance(key.toLowerCase(), c);
    if (d <= 2 && (!best || d < best.d)) best = { name: c, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/**
 * Validate raw key/value pairs against the schema for the given scopes. Every problem is
 * refused before anything is read: unknown key, value of the wrong shape, a
 * secret where it would be stored in clear, a scalar given twice with different values.
 */
export function validateParams(raw: readonly RawParam[], scopes: readonly ParamScope[], source: ParamSource): ParamMap {
  const allowed = PARAMETERS.filter((p) => p.scopes.some((s) => scopes.includes(s)));
  const out = new Map<string, ParamValue>();
  for (const { key, value } of raw) {
    const def = findParameter(key);
    if (!def || !allowed.includes(def)) {
      const near = closestName(key, allowed.filter((p) => !p.scopes.includes('protocol')).map((p) => p.name));
      const shown = def?.secret ? `${key}=***` : `${key}=${value}`;
      throw new PgbaculaError('PARAM_UNKNOWN', `unknown parameter ${shown}${def ? ` (not valid for ${scopeNames(scopes)})` : ''}`, {
        hint: near
          ? `Did you mean ${near}? Run "pgbacula help parameters" for the full list.`
          : 'Run "pgbacula help parameters" for the accepted parameters.',
      });
    }
    if (def.secret && source !== 'config') {
      throw new PgbaculaError('PARAM_INVALID', `parameter ${def.name} is not accepted in a ${source === 'plugin' ? 'plugin string' : 'command line'}: it would be stored or shown in clear`, {
        hint: 'Put the password in pgbacula.conf (mode 0640) or a pgpass file, or set PGPASSWORD.',
      });
    }
    // A command line has a working directory to resolve against (as pg_basebackup does); a plugin
    // string or a config file does not, so a relative path there stays refused.
    const given = source === 'cli' && def.type === 'path' && value.trim() !== '' && !isAbsolute(value.trim()) ? resolve(value.trim()) : value;
    const parsed = parseParamValue(def, given);
    if (def.unavailable && String(parsed) === def.unavailable.value) {
      throw new PgbaculaError('PARAM_INVALID', `${def.name}=${value} is not available in this version of pgbacula: ${def.unavailable.why}`, { hint: def.unavailable.hint });
    }
    const previous = out.get(def.name);
    if (previous !== undefined) {
      if (Array.isArray(previous) && Array.isArray(parsed)) {
        out.set(def.name, [...previous, ...parsed]);
        continue;
      }
      if (previous !== parsed) {
        throw new PgbaculaError('PARAM_INVALID', `parameter ${def.name} is given twice with different values`, {
          hint: 'Give it once.',
        });
      }
    }
    out.set(def.name, parsed);
  }
  return out;
}

/** The default of a parameter as a typed value, or undefined when it has none. */
export function defaultValue(name: string): ParamValue | undefined {
  const def = findParameter(name);
  if (!def) throw new PgbaculaError('INTERNAL', `no parameter named ${name} in the schema`);
  if (def.default === undefined) return def.defaultOf ? parseParamValue(def, def.defaultOf()) : undefined;
  return parseParamValue(def, def.default);
}

/** Typed accessors: the schema guarantees the type, these only narrow for the compiler. */
export function getString(params: ParamMap, name: string): string | undefined {
  const v = params.get(name) ?? defaultValue(name);
  return v === undefined ? undefined : String(v);
}

export function getInt(params: ParamMap, name: string): number {
  const v = params.get(name) ?? defaultValue(name);
  if (typeof v !== 'number') throw new PgbaculaError('INTERNAL', `parameter ${name} has no integer value`);
  return v;
}

export function getBool(params: ParamMap, name: string): boolean {
  const v = params.get(name) ?? defaultValue(name);
  return v === true;
}

export function getList(params: ParamMap, name: string): readonly string[] {
  const v = params.get(name) ?? defaultValue(name);
  return Array.isArray(v) ? v : [];
}

/** Later maps win: defaults < config file < environment-derived < plugin string/flags. */
export function mergeParams(...maps: ParamMap[]): ParamMap {
  const out = new Map<string, ParamValue>();
  for (const m of maps) for (const [k, v] of m) out.set(k, v);
  return out;
}
