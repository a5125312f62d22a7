import { describe, expect, it } from 'vitest';
import { validateParams, defaultValue } from '../../src/config/params.js';
import { parsePluginString, parseParamLine } from '../../src/config/plugin-string.js';
import { findParameter, PARAMETERS } from '../../src/config/schema.js';
import { PgbaculaError } from '../../src/errors.js';

function refusal(fn: () => unknown): PgbaculaError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PgbaculaError);
    return e as PgbaculaError;
  }
  throw new Error('expected a refusal, got none');
}

const plugin = (s: string) => validateParams(parsePluginString(s).params, ['backup', 'restore', 'connection', 'protocol'], 'plugin');

describe('the schema holds every documented parameter', () => {
  // Written out by hand (name, default, values), not derived from the schema: an oracle independent
  // of it.
  // tmpdir differs on purpose: a per-user default (issue 9), so root's directory never blocks postgres.
  const BACKUP: Array<[string, string, string]> = [
    ['mode', 'dump', 'dump, parallel_dump, pitr, pitr_block, cdp'],
    ['database', '*', 'name or comma list'],
    ['exclude_database', 'empty', 'comma list'],
    ['parallel_jobs', '4', '1–64'],
    ['dump_format', 'custom', 'custom, directory, tar, plain'],
    ['compression_level', '0', '0–9'],
    ['include_blobs', 'true', 'bool'],
    ['track_replication_state', 'false', 'bool'],
    ['backup_from_standby', 'false', 'bool'],
    ['standby_host', 'empty', 'host'],
    ['pitr_label', 'auto', 'string'],
    ['wal_segment_overlap', '2', '1–32'],
    ['pitr_block_summary_days', '14', '1–365'],
    ['cdp_window_seconds', '300', '10–86400'],
    ['cdp_max_lag_seconds', '60', '1–86400'],
    ['cdp_max_lag_mb', '1024', '1–1048576'],
    ['cdp_start_receiver', 'false', 'bool'],
    ['tmpdir', '/var/tmp/pgbacula-<uid>', 'absolute path'],
    ['exclude_tablespace', 'empty', 'oid or name list'],
    ['connection_timeout', '30', '1–600'],
    ['verify_checksum', 'true', 'bool'],
  ];
  const RESTORE: Array<[string, string]> = [
    ['restore_mode', 'auto'],
    ['target_time', 'end of WAL'],
    ['target_lsn', 'none'],
    ['target_xid', 'none'],
    ['target_name', 'none'],
    ['target_database', 'all'],
    ['pgdata_dir', 'from backup'],
    ['recovery_target_action', 'promote'],
    ['recreate_replication_slots', 'true'],
    ['recreate_subscriptions', 'false'],
    ['restore_as_standby', 'false'],
    ['primary_conninfo', 'captured'],
    ['skip_wal_replay', 'false'],
    ['overwrite_existing', 'false'],
  ];

  it.each(BACKUP)('backup parameter %s, default %s, values %s', (name, def, values) => {
    const p = findParameter(name);
    expect(p, name).toBeDefined();
    expect(p!.scopes).toContain('backup');
    expect(p!.default ?? p!.defaultDoc).toBe(def === 'empty' ? '' : def);
    const range = /^(\d+)–(\d+)$/.exec(values);
    if (range) expect(p).toMatchObject({ type: 'int', min: Number(range[1]), max: Number(range[2]) });
    else if (values === 'bool') expect(p!.type).toBe('bool');
    else if (values.includes(', ') && p!.type === 'enum') expect(p!.values!.join(', ')).toBe(values);
  });

  it.each(RESTORE)('restore parameter %s (default %s)', (name, def) => {
    const p = findParameter(name);
    expect(p, name).toBeDefined();
    expect(p!.scopes).toContain('restore');
    expect(p!.default ?? p!.defaultDoc).toBe(def);
  });

  it('covers the config file keys', () => {
    for (const key of ['host', 'port', 'user', 'password', 'pgpass_file', 'dbname', 'sslmode', 'backup_from_standby', 'track_replication_state', 'parallel_jobs', 'tmpdir', 'wal_spool', 'pg_bin_dir']) {
      expect(findParameter(key), key).toBeDefined();
    }
  });

  it('every default is itself a valid value', () => {
    for (const p of PARAMETERS) if (p.default !== undefined || p.defaultOf) expect(() => defaultValue(p.name)).not.toThrow();
    expect(defaultValue('tmpdir')).toBe(`/var/tmp/pgbacula-${process.getuid!()}`);
  });
});

describe('plugin strings are tokenised as the Bacula FD does', () => {
  it('splits at the first colon, honours quotes and backslashes, flags become 1', () => {
    const r = parsePluginString('pgbacula: mode=pitr target_time="2026-04-23 14:30:00-03" verify_checksum a=b=c path=\\"x\\ y');
    expect(r.plugin).toBe('pgbacula');
    expect(r.params).toEqual([
      { key: 'mode', value: 'pitr' },
      { key: 'target_time', value: '2026-04-23 14:30:00-03' },
      { key: 'verify_checksum', value: '1' },
      { key: 'a', value: 'b=c' },
      { key: 'path', value: '"x y' },
    ]);
  });

  it('parses and types a point-in-time restore plugin string', () => {
    const m = plugin('pgbacula: mode=pitr target_time="2026-04-23 14:30:00-03"');
    expect(m.get('mode')).toBe('pitr');
    expect(m.get('target_time')).toBe('2026-04-23 14:30:00-03');
  });

  it('refuses unbalanced quotes', () => {
    const e = refusal(() => parsePluginString('pgbacula: mode=pitr target_name="end of day'));
    expect(e.code).toBe('PLUGIN_STRING');
    expect(e.message).toContain('unbalanced double quote');
  });

  it('refuses a string without a colon but with spaces, like the FD', () => {
    expect(refusal(() => parsePluginString('pgbacula mode=dump')).code).toBe('PLUGIN_STRING');
    expect(parsePluginString('pgbacula').params).toEqual([]);
  });

  it('reads the key=value lines the FD sends', () => {
    expect(parseParamLine('quoted=a b\n')).toEqual({ key: 'quoted', value: 'a b' });
    expect(refusal(() => parseParamLine('=x')).code).toBe('PROTOCOL');
  });
});

describe('bad values are refused with the parameter and the accepted values named', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['pgbacula: colour=blue', 'PARAM_UNKNOWN', /unknown parameter colour=blue/],
    ['pgbacula: parallel_jobs=0', 'PARAM_INVALID', /parallel_jobs.*out of range.*1 to 64/s],
    ['pgbacula: parallel_jobs=65', 'PARAM_INVALID', /parallel_jobs.*out of range/s],
    ['pgbacula: compression_level=x', 'PARAM_INVALID', /compression_level.*integer from 0 to 9/s],
    ['pgbacula: verify_checksum=maybe', 'PARAM_INVALID', /verify_checksum.*true, false, yes, no, 1, 0/s],
    ['pgbacula: mode=snapshot', 'PARAM_INVALID', /mode.*dump, parallel_dump, pitr, pitr_block, cdp/s],
    ['pgbacula: dump_format=zip', 'PARAM_INVALID', /dump_format.*custom, directory, tar, plain/s],
    ['pgbacula: target_time="2026-04-23 14:30:00"', 'PARAM_INVALID', /target_time.*ISO-8601 time with zone/s],
    ['pgbacula: target_time="2026-02-30 14:30:00Z"', 'PARAM_INVALID', /target_time/],
    ['pgbacula: target_time=yesterday', 'PARAM_INVALID', /target_time/],
    ['pgbacula: target_lsn=0/XYZ', 'PARAM_INVALID', /target_lsn.*two hexadecimal halves/s],
    ['pgbacula: target_lsn=16B3F48', 'PARAM_INVALID', /target_lsn/],
    ['pgbacula: target_xid=-5', 'PARAM_INVALID', /target_xid/],
    ['pgbacula: tmpdir=var/tmp', 'PARAM_INVALID', /tmpdir.*absolute path/s],
    ['pgbacula: pgdata_dir=./data', 'PARAM_INVALID', /pgdata_dir.*absolute path/s],
    ['pgbacula: recovery_target_action=stop', 'PARAM_INVALID', /recovery_target_action.*promote, pause, shutdown/s],
  ];
  it.each(cases)('%s', (text, code, pattern) => {
    const e = refusal(() => plugin(text));
    expect(e.code).toBe(code);
    expect(`${e.message} ${e.hint}`).toMatch(pattern);
  });

  it('suggests the closest name for a typo', () => {
    expect(refusal(() => plugin('pgbacula: parralel_jobs=2')).hint).toContain('parallel_jobs');
  });

  it('accepts every boolean spelling and valid times and LSNs', () => {
    for (const [word, value] of [['true', true], ['YES', true], ['1', true], ['false', false], ['no', false], ['0', false]] as const) {
      expect(plugin(`pgbacula: verify_checksum=${word}`).get('verify_checksum')).toBe(value);
    }
    for (const t of ['2026-04-23T14:30:00Z', '2026-04-23 14:30:00+02:00', '2026-04-23 14:30:00.123456-0330', '2024-02-29 00:00:00+14']) {
      expect(plugin(`pgbacula: target_time="${t}"`).get('target_time')).toBe(t);
    }
    expect(plugin('pgbacula: target_lsn=0/16b3f48').get('target_lsn')).toBe('0/16B3F48');
    expect(plugin('pgbacula: database=a,b database=c').get('database')).toEqual(['a', 'b', 'c']);
  });

  it('refuses a password in a plugin string and never echoes it', () => {
    const e = refusal(() => plugin('pgbacula: password=hunter2secret'));
    expect(`${e.message} ${e.hint}`).not.toContain('hunter2secret');
  });

  it('accepts the keys the FD adds itself', () => {
    const m = plugin('pgbacula: mode=dump abort_on_error Accurate=1');
    expect(m.get('abort_on_error')).toBe(true);
    expect(m.get('accurate')).toBe(true);
  });
});
