import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseArgv } from '../../src/cli/argv.js';
import { pgbaculaJobs } from '../../src/command/bacula/jobs.js';
import type { JobContext } from '../../src/bacula/conversation.js';
import { buildContext } from '../../src/cli/context.js';
import { getString, validateParams } from '../../src/config/params.js';
import { parsePluginString } from '../../src/config/plugin-string.js';
import { findParameter } from '../../src/config/schema.js';
import { PgbaculaError } from '../../src/errors.js';
import { recoveryTargetOf } from '../../src/command/restore-settings.js';
import { runCli } from '../harness/run-cli.js';

function refusal(fn: () => unknown): PgbaculaError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PgbaculaError);
    return e as PgbaculaError;
  }
  throw new Error('expected a refusal, got none');
}

const scratch = mkdtempSync(join(tmpdir(), 'pgbacula-cli-input-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('an unknown flag is reported as unknown, with the nearest known one', () => {
  it('a misspelt parameter flag followed by another flag', () => {
    const e = refusal(() => parseArgv(['restore', '--repo', '/r', '--pgdata-dri', '--overwrite-existing']));
    expect(e.code).toBe('PARAM_UNKNOWN');
    expect(e.message).toContain('--pgdata-dri');
    expect(e.message).not.toContain('needs a value');
    expect(e.hint).toContain('--pgdata-dir');
  });

  it('a misspelt flag at the end of the line, and a misspelt global flag', () => {
    const e = refusal(() => parseArgv(['backup', '--repo', '/r', '--verify-checksums']));
    expect(e.code).toBe('PARAM_UNKNOWN');
    expect(e.hint).toContain('--verify-checksum');
    const g = refusal(() => parseArgv(['info', '--rpeo', '/r']));
    expect(g.code).toBe('PARAM_UNKNOWN');
    expect(g.message).toContain('--rpeo');
    expect(g.hint).toContain('--repo');
  });

  it('the CLI exits 2 with that message', async () => {
    const r = await runCli(['info', '--repoo', '/nonexistent']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown flag --repoo');
    expect(r.stderr).toContain('--repo');
  });

  it('a known flag without its value still says so', () => {
    const e = refusal(() => parseArgv(['restore', '--pgdata-dir']));
    expect(e.message).toContain('needs a value');
  });
});

describe('relative paths on the command line are resolved against the working directory (as pg_basebackup does)', () => {
  it('--repo, --pgdata and --config become absolute', () => {
    const a = parseArgv(['info', '--repo', 'backups/r1', '--pgdata=./data', '--config', 'etc/pgbacula.conf']);
    expect(a.globals.repo).toBe(join(process.cwd(), 'backups/r1'));
    expect(a.globals.pgdata).toBe(join(process.cwd(), 'data'));
    expect(a.globals.config).toBe(join(process.cwd(), 'etc/pgbacula.conf'));
  });

  it('path parameters given as flags (--pgdata-dir, --wal-spool, --tmpdir) become absolute', () => {
    const a = parseArgv(['restore', '--repo', '/r', '--pgdata-dir', 'restored', '--wal-spool=spool/', '--tmpdir', '../t']);
    const ctx = buildContext(a, ['restore', 'options', 'connection'], {});
    expect(getString(ctx.params, 'pgdata_dir')).toBe(join(process.cwd(), 'restored'));
    expect(getString(ctx.params, 'wal_spool')).toBe(join(process.cwd(), 'spool'));
    expect(getString(ctx.params, 'tmpdir')).toBe(join(process.cwd(), '..', 't'));
  });

  it('a plugin string (no meaningful working directory) still refuses a relative path', () => {
    const e = refusal(() => validateParams(parsePluginString('pgbacula: pgdata_dir=restored').params, ['restore'], 'plugin'));
    expect(e.message).toContain('pgdata_dir');
  });

  it('info --repo with a relative path reads that repository', async () => {
    const cwd = process.cwd();
    process.chdir(scratch);
    try {
      const r = await runCli(['info', '--repo', 'no-such-repo']);
      expect(r.stderr).not.toContain('not an absolute path');
      expect(r.stderr).toContain(join(scratch, 'no-such-repo'));
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('two recovery targets are refused, naming both', () => {
  const restoreParams = (s: string) => validateParams(parsePluginString(`pgbacula: ${s}`).params, ['restore'], 'plugin');

  it('target_time and target_xid', () => {
    const e = refusal(() => recoveryTargetOf(restoreParams('target_time="2026-01-01 00:00:00+00" target_xid=1234')));
    expect(e.code).toBe('PARAM_INVALID');
    expect(e.message).toContain('target_time');
    expect(e.message).toContain('target_xid');
  });

  it('target_lsn and target_time, target_name and target_xid', () => {
    expect(refusal(() => recoveryTargetOf(restoreParams('target_lsn=0/3000000 target_time=2026-01-01T00:00:00Z'))).message).toMatch(/target_lsn.*target_time|target_time.*target_lsn/);
    expect(refusal(() => recoveryTargetOf(restoreParams('target_name=before target_xid=7'))).message).toMatch(/target_name|target_xid/);
  });

  it('one target is accepted', () => {
    expect(recoveryTargetOf(restoreParams('target_xid=1234'))).toEqual({ kind: 'xid', value: '1234' });
  });

  it('a Bacula restore (Plugin Options) is refused when the job is configured, before any data is sent', async () => {
    const lines: string[] = [];
    const ctx = {
      job: { name: 'RestorePg.1', jobId: 12, type: 'R', raw: {} },
      log: new Proxy({}, { get: () => (t: string) => lines.push(String(t)) }),
      signal: new AbortController().signal,
    } as unknown as JobContext;
    const raw = parsePluginString('pgbacula: mode=pitr pgdata_dir=/srv/restored target_time="2026-01-01 00:00:00+00" target_xid=42').params;
    let err: unknown;
    try {
      await pgbaculaJobs({ env: {}, progressIntervalMs: 0 }).configure(raw, ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PgbaculaError);
    expect((err as PgbaculaError).message).toContain('target_time');
    expect((err as PgbaculaError).message).toContain('target_xid');
  });

  it('the CLI refuses both flags before touching the repository', async () => {
    const r = await runCli(['restore', '--repo', join(scratch, 'absent'), '--pgdata-dir', join(scratch, 'pg'), '--target-time=2026-01-01T00:00:00Z', '--target-xid=5']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('target_time');
    expect(r.stderr).toContain('target_xid');
  });

  it('the CLI refuses wal_from_spool (a Bacula restore\'s option) before touching the repository', async () => {
    const r = await runCli(['restore', '--repo', join(scratch, 'absent'), '--pgdata-dir', join(scratch, 'pg'), '--wal-from-spool=true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/wal_from_spool applies to restores through Bacula/);
    expect(existsSync(join(scratch, 'pg'))).toBe(false);
  });
});

describe('track_replication_state is accepted everywhere a backup parameter is', () => {
  it('in a plugin string, on the command line and in pgbacula.conf options', () => {
    expect(validateParams(parsePluginString('pgbacula: mode=pitr track_replication_state=true').params, ['backup'], 'plugin').get('track_replication_state')).toBe(true);
    expect(validateParams([{ key: 'track_replication_state', value: 'yes' }], ['options'], 'config').get('track_replication_state')).toBe(true);
    expect(validateParams([{ key: 'track_replication_state', value: '1' }], ['backup'], 'cli').get('track_replication_state')).toBe(true);
  });

  it('false (the default) is still accepted, and a value that is no boolean is refused', () => {
    expect(validateParams([{ key: 'track_replication_state', value: 'false' }], ['backup'], 'plugin').get('track_replication_state')).toBe(false);
    expect(refusal(() => validateParams([{ key: 'track_replication_state', value: 'sometimes' }], ['backup'], 'cli')).message).toContain('track_replication_state');
  });
});

describe('the default tmpdir belongs to the user running pgbacula', () => {
  it('is per user, so a directory made by root does not block the postgres user', () => {
    const def = findParameter('tmpdir')!;
    expect(def.default).toBeUndefined();
    const ctx = buildContext(parseArgv(['backup']), ['backup', 'options'], {});
    expect(getString(ctx.params, 'tmpdir')).toBe(`/var/tmp/pgbacula-${process.getuid!()}`);
  });
});

describe('staging left by a killed run is removed by the next one', () => {
  it('wal-<backup id>-<pid> and pitr-<job>-<pid> of a dead process go; those of a live process stay', async () => {
    const tmp = join(scratch, 'stale-tmp');
    // A pid that no longer runs: a child that has exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stale = [join(tmp, `wal-20260101-000000F-${dead}`), join(tmp, `pitr-7-${dead}`)];
    const live = join(tmp, `wal-20260101-000001F-${process.ppid}`);
    const other = join(tmp, 'something-else-123');
    for (const d of [...stale, live, other]) {
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'manifest-entries.spool'), 'x');
    }
    // The backup fails later (no server there); the stale staging is gone before that.
    const r = await runCli(['backup', '--repo', join(scratch, 'stale-repo'), '--tmpdir', tmp, '--host', join(scratch, 'no-server'), '--port', '1', '--user', 'postgres'], { PGBACULA_PROGRESS_SECONDS: '0' });
    expect(r.code).not.toBe(0);
    for (const d of stale) expect(existsSync(d), d).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(other)).toBe(true);
    expect(r.stderr).toContain(`removed staging directory ${stale[0]}`);
  });
});
