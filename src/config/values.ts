import { PgbaculaError } from '../errors.js';
import type { ParameterDef } from './schema.js';

export type ParamValue = string | number | boolean | readonly string[];

const TRUE_WORDS = new Set(['true', 'yes', '1']);
const FALSE_WORDS = new Set(['false', 'no', '0']);

// ISO-8601 with a mandatory zone: PostgreSQL would read a zone-less time in the server's
// TimeZone, which silently shifts a PITR target by hours. Date and time may be separated by
// 'T' or one space (the form Bacula users type in plugin strings).
const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-]\d{2}(?::?\d{2})?)$/;

// An LSN is two hexadecimal 32-bit halves (pg_lsn input syntax).
const LSN = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;

const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[?[0-9A-Fa-f:.]+\]?$/;

function invalid(def: ParameterDef, raw: string, accepted: string): PgbaculaError {
  return new PgbaculaError('PARAM_INVALID', `invalid value "${def.secret ? '***' : raw}" for parameter ${def.name}`, {
    hint: `Accepted: ${accepted}.`,
  });
}

/** What a parameter accepts, in words, for messages and docs. */
export function acceptedValues(def: ParameterDef): string {
  switch (def.type) {
    case 'bool':
      return 'true, false, yes, no, 1, 0';
    case 'int':
      return `an integer from ${def.min ?? '-∞'} to ${def.max ?? '∞'}`;
    case 'enum':
      return (def.values ?? []).join(', ');
    case 'time':
      return 'an ISO-8601 time with zone, e.g. "2026-04-23 14:30:00-03" or 2026-04-23T17:30:00Z';
    case 'lsn':
      return 'an LSN like 0/16B3F48 (two hexadecimal halves)';
    case 'xid':
      return 'a transaction id (unsigned decimal integer)';
    case 'path':
      return 'an absolute path';
    case 'list':
      return 'a name or a comma-separated list of names';
    case 'host':
      return 'a host name, an IP address or an absolute socket directory';
    case 'string':
      return 'text';
  }
}

function isValidCalendarTime(m: RegExpExecArray): boolean {
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  if (mo! < 1 || mo! > 12 || h! > 23 || mi! > 59 || s! > 59) return false;
  const daysInMonth = new Date(Date.UTC(y!, mo!, 0)).getUTCDate();
  if (d! < 1 || d! > daysInMonth) return false;
  const zone = m[8]!;
  if (zone !== 'Z') {
    const zh = Number(zone.slice(1, 3));
    const zm = zone.length > 3 ? Number(zone.replace(':', '').slice(3, 5)) : 0;
    if (zh > 14 || zm > 59) return false;
  }
  return true;
}

/** Parse one raw text value of a parameter into its typed value, or refuse it clearly. */
export function parseParamValue(def: ParameterDef, raw: string): ParamValue {
  const text = def.type === 'string' ? raw : raw.trim();
  switch (def.type) {
    case 'bool': {
      const word = text.toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      throw invalid(def, raw, acceptedValues(def));
    }
    case 'int': {
      if (!/^[+-]?\d+$/.test(text)) throw invalid(def, raw, acceptedValues(def));
      const n = Number(text);
      if ((def.min !== undefined && n < def.min) || (def.max !== undefined && n > def.max)) {
        throw new PgbaculaError('PARAM_INVALID', `value ${text} for parameter ${def.name} is out of range`, {
          hint: `Accepted: ${acceptedValues(def)}.`,
        });
      }
      return n;
    }
    case 'enum': {
      const word = text.toLowerCase();
      if (!def.values?.includes(word)) throw invalid(def, raw, acceptedValues(def));
      return word;
    }
    case 'time': {
      const m = ISO_TIME.exec(text);
      if (!m || !isValidCalendarTime(m)) throw invalid(def, raw, acceptedValues(def));
      return text;
    }
    case 'lsn':
      if (!LSN.test(text)) throw invalid(def, raw, acceptedValues(def));
      return text.toUpperCase();
    case 'xid':
      if (!/^\d{1,20}$/.test(text) || BigInt(text) > 0xffff_ffff_ffff_ffffn) {
        throw invalid(def, raw, acceptedValues(def));
      }
      return text;
    case 'path':
      if (!text.startsWith('/') || text.includes('\0')) throw invalid(def, raw, acceptedValues(def));
      return text;
    case 'host':
      if (text === '' || text.startsWith('/') || HOST.test(text)) return text;
      throw invalid(def, raw, acceptedValues(def));
    case 'list':
      return text === '' ? [] : text.split(',').map((s) => s.trim()).filter((s) => s !== '');
    case 'string':
      return text;
  }
}

/** Render a typed value back as text (for docs, plugin strings and `--json`). */
export function formatParamValue(value: ParamValue): string {
  if (Array.isArray(value)) return value.join(',');
  return String(value);
}
