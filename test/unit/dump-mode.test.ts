/** The pure parts of the dump modes and their Bacula plumbing (no server, no FD). */
import { describe, expect, it } from 'vitest';
import { fdName, statLine, tstampLine } from '../../src/bacula/fd-sink.js';
import { truncateUtf8 } from '../../src/bacula/fd-job-log.js';
import { parseJobBlock } from '../../src/bacula/job-info.js';
import { validatePluginParams } from '../../src/command/bacula/jobs.js';
import type { ConnectionSettings } from '../../src/config/connection.js';
import { conninfoValue, parseToolVersion, toolConninfo, toolEnvironment } from '../../src/server/client-tools.js';
import { archiveName, parseDumpPath } from '../../src/modes/dump/layout.js';
import { decodeName, encodeName } from '../../src/format/path-name.js';
import { remapTablespaceLocations } from '../../src/modes/dump/restore.js';
import { pgDumpArgs } from '../../src/modes/dump/settings.js';
import { dumpSettings } from '../../src/command/modes/dump.js';
import { stagedOrder } from '../../src/modes/dump/parallel-dump.js';

const RAW = (pairs: Record<string, string>) => Object.entries(pairs).map(([key, value]) => ({ key, value }));
const BACKUP = ['backup', 'connection', 'options', 'protocol'] as const;

describe('dump layout: names and paths', () => {
  it('encodes database names reversibly into one path component', () => {
    for (const name of ['app', 'a/b c', 'x%y', 'données', 'tab\there', '..', '.', 'UPPER-case_1.2', 'q"uote\'s', 'ends with space ']) {
      const enc = encodeName(name);
      expect(enc).not.toMatch(/[/\s\0]/);
      expect(enc === '.' || enc === '..').toBe(false);
      expect(decodeName(enc)).toBe(name);
    }
    expect(encodeName('a/b c')).toBe('a%2Fb%20c');
    expect(encodeName('données')).toBe('données');
  });

  it('names archives by format and reads every path back', () => {
    expect(archiveName('app', 'custom', false)).toBe('app.dump');
    expect(archiveName('app', 'tar', false)).toBe('app.tar');
    expect(archiveName('app', 'plain', false)).toBe('app.sql');
    expect(archiveName('app', 'plain', true)).toBe('app.sql.gz');
    expect(archiveName('a b', 'directory', false)).toBe('a%20b.dir');
    expect(parseDumpPath('7045123/dump/42/manifest.json')).toEqual({ cluster: '7045123', job: '42', kind: 'manifest' });
    expect(parseDumpPath('c/dump/42/globals.sql')).toMatchObject({ kind: 'globals' });
    expect(parseDumpPath('c/dump/42/my.db.dump')).toMatchObject({ kind: 'archive', database: 'my.db', format: 'custom' });
    expect(parseDumpPath('c/dump/42/x.sql.gz')).toMatchObject({ kind: 'archive', database: 'x', format: 'plain', gzip: true });
    expect(parseDumpPath('c/dump/42/x.sql')).toMatchObject({ kind: 'archive', database: 'x', format: 'plain', gzip: false });
    expect(parseDumpPath('c/dump/42/a%20b.dir')).toMatchObject({ kind: 'archive-dir', database: 'a b', format: 'directory' });
    expect(parseDumpPath('c/dump/42/a.dir/toc.dat')).toMatchObject({ kind: 'archive-member', database: 'a', member: 'toc.dat' });
    expect(parseDumpPath('c/pitr/1/pgdata/PG_VERSION')).toBeUndefined();
    expect(parseDumpPath('c/dump/42/notes.txt')).toBeUndefined();
  });

  it('emits toc.dat first from a staged directory archive', () => {
    expect(stagedOrder(['3001.dat', 'blobs_3002.toc', 'toc.dat', '2999.dat'])).toEqual(['toc.dat', '2999.dat', '3001.dat', 'blobs_3002.toc']);
  });
});

describe('dump settings and the pg_dump command line', () => {
  const settings = (p: Record<string, string>) => dumpSettings(validatePluginParams(RAW(p), BACKUP));

  it('reads the defaults: custom, no compression (Bacula compresses), with large objects, all databases', () => {
    const s = settings({ mode: 'dump' });
    expect(s).toMatchObject({ mode: 'dump', format: 'custom', compressionLevel: 0, includeBlobs: true, jobs: 1, databases: [], excludeDatabases: [] });
    expect(pgDumpArgs(s, "host='h'")).toEqual(['--format=c', '--no-password', '--compress=0', '-b', "--dbname=host='h'"]);
  });

  it('parallel_dump is directory + -j parallel_jobs, staged to a file path', () => {
    const s = settings({ mode: 'parallel_dump', parallel_jobs: '3', database: 'a,b', exclude_database: 'b' });
    expect(s).toMatchObject({ format: 'directory', jobs: 3, databases: ['a', 'b'], excludeDatabases: ['b'] });
    expect(pgDumpArgs(s, 'ci', '/stage/a.dir')).toEqual(['--format=d', '--no-password', '--compress=0', '-b', '--jobs=3', '--no-sync', '--file=/stage/a.dir', '--dbname=ci']);
  });

  it('plain scripts create their database; tar gets no -Z; include_blobs=false is -B', () => {
    expect(pgDumpArgs(settings({ dump_format: 'plain', compression_level: '6' }), 'ci')).toEqual(['--format=p', '--no-password', '--compress=6', '-b', '--create', '--dbname=ci']);
    expect(pgDumpArgs(settings({ dump_format: 'tar', include_blobs: 'no' }), 'ci')).toEqual(['--format=t', '--no-password', '-B', '--dbname=ci']);
    expect(settings({ database: '*' }).databases).toEqual([]);
  });

  it('refuses combinations pg_dump would refuse, saying what works', () => {
    expect(() => settings({ mode: 'parallel_dump', dump_format: 'custom' })).toThrow(/dump_format=custom does not go with mode=parallel_dump/);
    expect(() => settings({ dump_format: 'tar', compression_level: '3' })).toThrow(/compression_level=3 does not go with dump_format=tar/);
    expect(settings({ mode: 'parallel_dump', dump_format: 'directory' }).format).toBe('directory');
  });

  it('refuses restore options in a backup FileSet and names what is accepted', () => {
    expect(() => validatePluginParams(RAW({ target_database: 'x' }), BACKUP)).toThrow(/unknown parameter target_database=x \(not valid for backup/);
    let err: unknown;
    try {
      validatePluginParams(RAW({ databse: 'x' }), BACKUP);
    } catch (e) {
      err = e;
    }
    expect((err as { hint?: string } | undefined)?.hint).toMatch(/^Did you mean database\? Accepted parameters: mode, database, /);
  });
});

describe('client tools: versions, conninfo, environment', () => {
  const conn: ConnectionSettings = {
    host: '/var/run/postgresql', port: 5433, user: "o'brien", database: 'postgres', password: 's3cret pass', sslmode: 'prefer', connectTimeoutSeconds: 12, passwordSource: 'config',
  };

  it('parses pg_dump --version', () => {
    expect(parseToolVersion('pg_dump (PostgreSQL) 18.6 (Debian 18.6-3)\n')).toEqual({ version: '18.6', major: 18 });
    expect(parseToolVersion('pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)')).toEqual({ version: '15.18', major: 15 });
    expect(parseToolVersion('pg_dump (PostgreSQL) 17devel')).toEqual({ version: '17', major: 17 });
    expect(parseToolVersion('something else')).toBeUndefined();
  });

  it('builds a conninfo that never holds the password; the password goes to the environment only', () => {
    const ci = toolConninfo(conn, { database: "we'ird\\db", targetSessionAttrs: 'standby' });
    expect(ci).toBe(`host='/var/run/postgresql' port='5433' user='o\\'brien' dbname='we\\'ird\\\\db' sslmode='prefer' connect_timeout='12' application_name='pgbacula' target_session_attrs='standby'`);
    expect(ci).not.toContain('s3cret');
    const env = toolEnvironment(conn, { PATH: '/bin', HOME: '/root', PGHOST: 'elsewhere' });
    expect(env).toEqual({ PATH: '/bin', HOME: '/root', LANG: 'C', LC_ALL: 'C', LC_MESSAGES: 'C', PGCONNECT_TIMEOUT: '12', PGPASSWORD: 's3cret pass' });
    expect(conninfoValue('')).toBe("''");
  });
});

describe('tablespace remapping of a globals script', () => {
  const script = [
    'CREATE ROLE app;',
    "CREATE TABLESPACE ts1 OWNER postgres LOCATION '/data/ts1';",
    `CREATE TABLESPACE "Odd ""Name""" OWNER app LOCATION '/data/it''s';`,
    'ALTER TABLESPACE ts1 SET (random_page_cost=1.1);',
  ].join('\n');

  it('rewrites the locations of the named (or OID-given) tablespaces only', () => {
    const r = remapTablespaceLocations(script, ['ts1=/new/ts1', '16400=/new/o\'dd'], [{ oid: 16400, name: 'Odd "Name"', location: "/data/it's" }]);
    expect(r.script).toBe([
      'CREATE ROLE app;',
      "CREATE TABLESPACE ts1 OWNER postgres LOCATION '/new/ts1';",
      `CREATE TABLESPACE "Odd ""Name""" OWNER app LOCATION '/new/o''dd';`,
      'ALTER TABLESPACE ts1 SET (random_page_cost=1.1);',
    ].join('\n'));
    expect(r.applied).toEqual([{ name: 'ts1', from: '/data/ts1', to: '/new/ts1' }, { name: 'Odd "Name"', from: "/data/it's", to: "/new/o'dd" }]);
    expect(r.unused).toEqual([]);
  });

  it('reports entries that match nothing and refuses malformed ones', () => {
    expect(remapTablespaceLocations(script, ['nope=/x'], []).unused).toEqual(['nope']);
    expect(() => remapTablespaceLocations(script, ['ts1:/x'], [])).toThrow(/invalid value "ts1:\/x" for parameter remap_tablespace/);
    expect(() => remapTablespaceLocations(script, ['ts1=relative'], [])).toThrow(/remap_tablespace/);
  });
});

describe('FD records: names, STAT, TSTAMP, job block, messages', () => {
  it('places items under the namespace, directories with a trailing slash', () => {
    expect(fdName('@pgbacula', { path: 'c/dump/1/a.dump', type: 'file' })).toBe('/@pgbacula/c/dump/1/a.dump');
    expect(fdName('@pgbacula', { path: 'c/dump/1/a.dir', type: 'dir' })).toBe('/@pgbacula/c/dump/1/a.dir/');
    expect(() => fdName('@pgbacula', { path: 'c/../x', type: 'file' })).toThrow(/not a clean relative path/);
    expect(() => fdName('@pgbacula', { path: 'c/x\ny', type: 'file' })).toThrow(/cannot carry/);
  });

  it('writes STAT with type bits in octal, -1 for an unknown size, E for empty', () => {
    const h = { path: 'x', mtimeMs: 1742896800_500, encoding: 'raw' as const };
    expect(statLine({ ...h, type: 'file', mode: 0o640, size: 12 })).toBe('STAT:F 12 0 0 100640 1');
    expect(statLine({ ...h, type: 'file', mode: 0o600, size: -1 })).toBe('STAT:F -1 0 0 100600 1');
    expect(statLine({ ...h, type: 'file', mode: 0o600, size: 0 })).toBe('STAT:E 0 0 0 100600 1');
    expect(statLine({ ...h, type: 'dir', mode: 0o700, size: 123 })).toBe('STAT:D 123 0 0 040700 1');
    expect(tstampLine({ ...h, type: 'file', mode: 0, size: 1 })).toBe('TSTAMP:1742896800 1742896800 1742896800');
  });

  it('parses the Job block, keeping what it does not know', () => {
    const j = parseJobBlock(['Name=RestorePg.1', 'JobID=43', 'Type=R', 'Where=', 'Replace=a', 'Namespace=@pgbacula', 'Future=1']);
    expect(j).toMatchObject({ name: 'RestorePg.1', jobId: 43, type: 'R', where: '', replace: 'a', namespace: '@pgbacula' });
    expect(j.level).toBeUndefined();
    expect(j.raw.Future).toBe('1');
    expect(parseJobBlock(['JobID=1', 'Type=B', 'Level=I', 'Since=1742810400'])).toMatchObject({ level: 'I', since: 1742810400 });
    expect(() => parseJobBlock(['JobID=1', 'Type=X'])).toThrow(/type must be B, E or R/);
  });

  it('cuts messages below the FD buffer without splitting a character', () => {
    const long = 'é'.repeat(2000);
    const cut = truncateUtf8(long, 101);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(101);
    expect(cut.endsWith('...')).toBe(true);
    expect(cut).not.toContain('\uFFFD');
  });
});
