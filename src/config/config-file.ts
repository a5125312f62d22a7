import { readFileSync, statSync } from 'node:fs';
import { PgbaculaError } from '../errors.js';
import { CONFIG_FILE_SECTIONS, type ConfigSection } from './schema.js';
import { validateParams, type ParamMap } from './params.js';

export const DEFAULT_CONFIG_PATH = '/etc/pgbacula/pgbacula.conf';

export interface ConfigFile {
  readonly path: string;
  readonly connection: ParamMap;
  readonly options: ParamMap;
}

/**
 * The file may hold a password, so it must not be readable by others nor writable by anyone
 * but its owner: 0640 lets the bacula group (the FD) read it and nobody else.
 */
export function checkConfigPermissions(path: string, mode: number): void {
  const perms = mode & 0o777;
  if ((perms & 0o027) !== 0) {
    const what = [
      perms & 0o020 ? 'group-writable' : '',
      perms & 0o002 ? 'world-writable' : '',
      perms & 0o005 ? 'readable by others' : '',
    ].filter(Boolean).join(', ');
    throw new PgbaculaError('CONFIG_PERMISSIONS', `config file ${path} has mode ${perms.toString(8).padStart(4, '0')} (${what})`, {
      hint: `It may hold a password: run "chmod 0640 ${path}".`,
    });
  }
}

/** Parse the INI text of pgbacula.conf. Pure: the caller reads the file. */
export function parseConfigText(text: string, path: string): ConfigFile {
  const raw: Record<ConfigSection, { key: string; value: string }[]> = { connection: [], options: [] };
  let section: ConfigSection | undefined;
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    const where = `${path}:${index + 1}`;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) return;
    const header = /^\[([^\]]*)\]$/.exec(trimmed);
    if (header) {
      const name = header[1]!.trim().toLowerCase();
      if (!(name in CONFIG_FILE_SECTIONS)) {
        throw new PgbaculaError('CONFIG_FILE', `unknown section [${name}] at ${where}`, {
          hint: 'Sections are [connection] and [options].',
        });
      }
      section = name as ConfigSection;
      return;
    }
    const eq = trimmed.indexOf('=');
    if (eq <= 0) {
      throw new PgbaculaError('CONFIG_FILE', `malformed line at ${where}`, { hint: 'Write key = value.' });
    }
    if (!section) {
      throw new PgbaculaError('CONFIG_FILE', `setting outside a section at ${where}`, {
        hint: 'Put it under [connection] or [options].',
      });
    }
    const key = trimmed.slice(0, eq).trim().toLowerCase();
    let value = trimmed.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) {
      value = value.slice(1, -1);
    }
    const accepted: readonly string[] = CONFIG_FILE_SECTIONS[section];
    if (!accepted.includes(key)) {
      throw new PgbaculaError('PARAM_UNKNOWN', `unknown key "${key}" in [${section}] at ${where}`, {
        hint: `Accepted in [${section}]: ${accepted.join(', ')}.`,
      });
    }
    raw[section].push({ key, value });
  });
  const validate = (s: ConfigSection): ParamMap => {
    try {
      return validateParams(raw[s], ['connection', 'options', 'backup'], 'config');
    } catch (e) {
      if (e instanceof PgbaculaError) {
        throw new PgbaculaError(e.code, `${e.message} in ${path} [${s}]`, e.hint === undefined ? {} : { hint: e.hint });
      }
      throw e;
    }
  };
  return { path, connection: validate('connection'), options: validate('options') };
}

/** Read and check a pgbacula.conf: permissions first, so a leaky file is refused unread. */
export function loadConfigFile(path: string): ConfigFile {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new PgbaculaError('CONFIG_FILE', `cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, {
      hint: 'Check the path given with --config or config=.',
      cause: e,
    });
  }
  if (!st.isFile()) throw new PgbaculaError('CONFIG_FILE', `config file ${path} is not a regular file`);
  checkConfigPermissions(path, st.mode);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new PgbaculaError('CONFIG_FILE', `cannot read config file ${path} as OS user ${process.getuid?.() ?? '?'}: ${code}`, {
      hint: code === 'EACCES'
        ? `Give the group of the users that run pgbacula read access (e.g. chgrp bacula ${path}; chmod 0640 ${path}), or name another file with --config.`
        : 'Check the path given with --config or config=.',
      cause: e,
    });
  }
  return parseConfigText(text, path);
}
