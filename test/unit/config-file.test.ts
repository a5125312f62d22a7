import { describe, expect, it } from 'vitest';
import { checkConfigPermissions, parseConfigText } from '../../src/config/config-file.js';
import { findPgpassPassword } from '../../src/config/pgpass.js';
import { redactConninfo, registerSecret, scrub } from '../../src/config/redact.js';
import { PgbaculaError } from '../../src/errors.js';

describe('pgbacula.conf', () => {
  it('reads [connection] and [options]', () => {
    const c = parseConfigText(
      '# comment\n[connection]\nhost = db1\nport = 5433\npassword = "s3cret pw"\n\n[options]\nparallel_jobs = 3\nbackup_from_standby = yes\n',
      '/etc/pgbacula/pgbacula.conf',
    );
    expect(c.connection.get('host')).toBe('db1');
    expect(c.connection.get('port')).toBe(5433);
    expect(c.connection.get('password')).toBe('s3cret pw');
    expect(c.options.get('parallel_jobs')).toBe(3);
    expect(c.options.get('backup_from_standby')).toBe(true);
  });

  it('names file and line of an unknown key', () => {
    try {
      parseConfigText('[connection]\nhost = x\nhots = y\n', '/x.conf');
      throw new Error('not refused');
    } catch (e) {
      expect((e as PgbaculaError).message).toBe('unknown key "hots" in [connection] at /x.conf:3');
    }
  });

  it('refuses bad values with the section named', () => {
    expect(() => parseConfigText('[options]\nparallel_jobs = 100\n', '/x.conf')).toThrow(/parallel_jobs.*out of range in \/x.conf \[options\]/);
    expect(() => parseConfigText('[nope]\n', '/x.conf')).toThrow(/unknown section \[nope\]/);
    expect(() => parseConfigText('host = x\n', '/x.conf')).toThrow(/outside a section/);
  });

  it.each([
    [0o640, true],
    [0o600, true],
    [0o400, true],
    [0o660, false],
    [0o644, false],
    [0o642, false],
    [0o604, false],
    [0o666, false],
  ])('mode %s accepted: %s', (mode, accepted) => {
    let err: PgbaculaError | undefined;
    try {
      checkConfigPermissions('/c', mode);
    } catch (e) {
      err = e as PgbaculaError;
    }
    if (accepted) expect(err).toBeUndefined();
    else {
      expect(err?.code).toBe('CONFIG_PERMISSIONS');
      expect(err?.message).toContain(`mode 0${mode.toString(8)}`);
      expect(err?.hint).toContain('chmod 0640 /c');
    }
  });
});

describe('pgpass', () => {
  const file = 'db1:5432:*:alice:pw\\:with\\\\colon\n*:*:*:bob:bobpw\nlocalhost:5433:postgres:carol:cpw\n';
  it('matches with wildcards and escapes, first match wins', () => {
    expect(findPgpassPassword(file, { host: 'db1', port: 5432, database: 'x', user: 'alice' })).toBe('pw:with\\colon');
    expect(findPgpassPassword(file, { host: 'other', port: 1, database: 'x', user: 'bob' })).toBe('bobpw');
    expect(findPgpassPassword(file, { host: '/var/run/postgresql', port: 5433, database: 'postgres', user: 'carol' })).toBe('cpw');
    expect(findPgpassPassword(file, { host: 'db2', port: 5432, database: 'x', user: 'alice' })).toBeUndefined();
  });
});

describe('redaction', () => {
  it('masks conninfo passwords and registered secrets', () => {
    expect(redactConninfo("host=a password='x y' user=b")).toBe('host=a password=******** user=b');
    expect(redactConninfo('postgresql://u:pw@h/db')).toBe('postgresql://u:********@h/db');
    registerSecret('Tr0ub4dor&3');
    expect(scrub('failed with Tr0ub4dor&3 inside')).toBe('failed with ******** inside');
  });
});
