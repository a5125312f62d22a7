import { PARAMETERS, CONFIG_FILE_SECTIONS, type ParameterDef, type ParamScope } from './schema.js';
import { acceptedValues } from './values.js';

function defaultText(p: ParameterDef): string {
  if (p.defaultDoc) return p.defaultDoc;
  if (p.default === undefined) return '—';
  return p.default === '' ? 'empty' : p.default;
}

function valuesText(p: ParameterDef): string {
  switch (p.type) {
    case 'int':
      return `${p.min}–${p.max}`;
    case 'enum':
      return (p.values ?? []).join(', ');
    case 'bool':
      return 'bool';
    default:
      return acceptedValues(p);
  }
}

const cell = (s: string) => s.replace(/\|/g, '\\|');

/** Where Bacula accepts it: the FD shim takes exactly the plugin-string keys, bconsole offers the restore options. */
function baculaText(p: ParameterDef): string {
  if (!p.inPluginString) return '— (config file)';
  return p.restoreOption ? 'Plugin string, restore Plugin Option' : 'Plugin string';
}

function markdownTable(params: readonly ParameterDef[]): string {
  const rows = params.map((p) => `| \`${p.name}\` | ${cell(defaultText(p))} | ${cell(valuesText(p))} | ${p.secret ? '— (config file)' : `\`--${p.name.replace(/_/g, '-')}\``} | ${baculaText(p)} | ${cell(p.doc)} |`);
  return ['| name | default | values | CLI flag | Bacula | meaning |', '|---|---|---|---|---|---|', ...rows].join('\n');
}

const only = (scope: ParamScope) => PARAMETERS.filter((p) => p.scopes.includes(scope));

/** The README's parameter reference, generated from the schema (a test keeps them equal). */
export function parameterReferenceMarkdown(): string {
  const configKeys = (section: keyof typeof CONFIG_FILE_SECTIONS) =>
    CONFIG_FILE_SECTIONS[section].map((k) => `\`${k}\``).join(', ');
  return [
    '### Backup parameters',
    '',
    'In a FileSet: `Plugin = "pgbacula: mode=pitr verify_checksum=yes ..."`; standalone: `pgbacula backup --mode=pitr ...`.',
    '',
    markdownTable(only('backup')),
    '',
    '### Restore parameters',
    '',
    'bconsole: `mod` → Plugin Options during a restore; standalone: `pgbacula restore --target-time=... ...`.',
    '',
    markdownTable(only('restore')),
    '',
    '### Connection',
    '',
    'From flags or a plugin string, then `[connection]` of pgbacula.conf, then the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE, PGSSLMODE, PGCONNECT_TIMEOUT) and `~/.pgpass`. A password is accepted only from the config file, PGPASSWORD or a pgpass file.',
    '',
    markdownTable(only('connection')),
    '',
    '### pgbacula.conf',
    '',
    `Mode 0640 or stricter (refused when group- or world-writable or readable by others). \`[connection]\`: ${configKeys('connection')}. \`[options]\`: ${configKeys('options')}.`,
    '',
    'Every key marked "Plugin string" below also works in a FileSet\'s `Plugin = "pgbacula: …"` line (it wins over pgbacula.conf), e.g. `wal_spool=/var/lib/pgbacula/wal-spool pg_bin_dir=/usr/lib/postgresql/16/bin tmpdir=/var/tmp/pgbacula`; a Bacula restore receives the FileSet\'s string of the backup, and `pg_bin_dir` can also be set at restore time as a Plugin Option.',
    '',
    markdownTable(only('options').filter((p) => !p.scopes.includes('backup'))),
  ].join('\n');
}

/** Plain-text list for `pgbacula help parameters` and `--help`. */
export function parameterHelpText(scopes: readonly ParamScope[]): string {
  const list = PARAMETERS.filter((p) => p.scopes.some((s) => scopes.includes(s)) && !p.scopes.includes('protocol') && !p.secret);
  const width = Math.max(...list.map((p) => p.name.length)) + 2;
  return list
    .map((p) => `  --${p.name.replace(/_/g, '-').padEnd(width)} ${p.doc} [${valuesText(p)}; default ${defaultText(p)}]`)
    .join('\n');
}
