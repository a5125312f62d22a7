/**
 * The two implementations of archive_command the wal-push rule tests run against:
 * `pgbacula wal-push` (src/archive/push.ts, in-process or as the CLI) and the native helper
 * `pgbacula-wal-push` (native/wal-push/wal_push.c, always as a process). Each test of a rule is
 * written once and parametrized by one of these.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pushWalFile, type PushResult } from '../../src/archive/push.js';
import { ERROR_CODES, PgbaculaError, type ErrorCode } from '../../src/errors.js';
import { repoRoot } from './pg-binaries.js';
import { runCli, type CliRun } from './run-cli.js';

/** The native helper as `npm run build` leaves it. */
export const NATIVE_WAL_PUSH = join(repoRoot(), 'native', 'build', 'pgbacula-wal-push');

/** pushWalFile's options that the rule tests use. */
export interface PushCall {
  readonly root: string;
  readonly sourcePath: string;
  readonly expectedSystemId?: string;
  readonly pgdata?: string;
  /** A repository's archive: `root` is `<repo>/wal`. */
  readonly singleSystem?: boolean;
  readonly warn?: (text: string) => void;
}

export interface WalPusher {
  readonly name: string;
  /** Archive one file; a refusal throws a PgbaculaError with the implementation's code, message and hint. */
  push(o: PushCall): Promise<PushResult>;
  /** The command line after `wal-push` (e.g. ['--repo', DIR, '--pgdata', D, FILE]), as archive_command runs it. */
  cli(args: readonly string[], cwd?: string): Promise<CliRun>;
}

const CODE_OF_ID = new Map<string, ErrorCode>(Object.entries(ERROR_CODES).map(([code, v]) => [v.id, code as ErrorCode]));

/** A data directory holding only global/pg_control (system identifier, pg_control_version of 18). */
export function fakePgdata(systemId: string): string {
  const d = mkdtempSync(join(tmpdir(), 'pgbacula-fake-pgdata-'));
  mkdirSync(join(d, 'global'));
  mkdirSync(join(d, 'pg_wal'));
  const ctl = Buffer.alloc(8192);
  ctl.writeBigUInt64LE(BigInt(systemId), 0);
  ctl.writeUInt32LE(1800, 8);
  writeFileSync(join(d, 'global', 'pg_control'), ctl);
  return d;
}

/** Run a program; resolves with its exit status and output (never rejects on a refusal). */
function run(file: string, args: readonly string[], cwd: string, extra: { uid?: number; gid?: number } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' }, stdio: ['ignore', 'pipe', 'pipe'], ...extra });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Run the native helper; resolves with its exit status and output (never rejects on a refusal). */
export function runNativeWalPush(args: readonly string[], cwd = '/', extra: { uid?: number; gid?: number } = {}): Promise<CliRun> {
  return run(NATIVE_WAL_PUSH, args, cwd, extra);
}

const inProcess: WalPusher = {
  name: 'pgbacula wal-push',
  push: (o) => pushWalFile(o),
  // In-process unless a working directory is asked for (a worker thread cannot chdir): then the built CLI.
  cli: (args, cwd) => (cwd === undefined ? runCli(['wal-push', ...args]) : run(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), 'wal-push', ...args], cwd)),
};

const native: WalPusher = {
  name: 'pgbacula-wal-push (native)',
  async push(o) {
    const where = o.singleSystem ? ['--repo', dirname(o.root)] : ['--wal-spool', o.root];
    if (o.singleSystem && basename(o.root) !== 'wal') throw new Error(`a repository's archive is <repo>/wal, not ${o.root}`);
    // The system comes from the data directory the helper runs in, as for the archiver.
    const cwd = o.pgdata ?? (o.expectedSystemId !== undefined ? fakePgdata(o.expectedSystemId) : mkdtempSync(join(tmpdir(), 'pgbacula-cwd-')));
    const r = await runNativeWalPush(['--json', ...where, o.sourcePath], cwd);
    for (const line of r.stderr.split('\n')) {
      const m = /^pgbacula: warning: (.*)$/.exec(line);
      if (m) o.warn?.(m[1]!);
    }
    if (r.code === 0) return JSON.parse(r.stdout) as PushResult;
    const json = r.stderr.slice(r.stderr.indexOf('{\n  "error"'));
    const e = (JSON.parse(json) as { error: { code: string; message: string; hint: string | null } }).error;
    const code = CODE_OF_ID.get(e.code);
    if (code === undefined) throw new Error(`unknown error code ${e.code} from the native helper (exit ${r.code}): ${r.stderr}`);
    const err = new PgbaculaError(code, e.message, e.hint === null ? {} : { hint: e.hint });
    if (err.exitCode !== r.code) throw new Error(`the native helper exited ${r.code} for ${e.code}, wal-push exits ${err.exitCode}`);
    throw err;
  },
  cli: (args, cwd) => runNativeWalPush(args, cwd),
};

export const WAL_PUSHERS: readonly WalPusher[] = [inProcess, native];
