/**
 * restore_command's native helper (native/wal-push/wal_fetch.c): it answers "not archived" (exit 1)
 * itself only when no place the wal-fetch command reads could hold the file, and runs that command
 * for everything else. Each case runs the helper twice — in front of a command that cannot start
 * (so an answer of its own shows as exit 1 and a hand-over as its exit 200 "cannot run"), and in
 * front of the real `pgbacula wal-fetch` — and the real command alone: the last two must agree.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nativeWalFetchPath, restoreCommandLine } from '../../src/archive/archive-command.js';
import { fakePgdata } from '../harness/wal-pushers.js';
import { repoRoot } from '../harness/pg-binaries.js';

const HELPER = join(repoRoot(), 'native', 'build', 'pgbacula-wal-fetch');
const CLI = [process.execPath, join(repoRoot(), 'bin', 'pgbacula.js')];
const SYSTEM = '7301234567890123456';
const SEGMENT = '000000010000000000000007';
const HISTORY = '00000002.history';

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  served: string | undefined;
}

const scratch: string[] = [];
afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

function run(argv: readonly string[], cwd: string): Promise<Ran> {
  const dest = join(cwd, 'pg_wal', 'RECOVERYXLOG');
  rmSync(dest, { force: true });
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, [...argv.slice(1), dest], { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, served: existsSync(dest) ? readFileSync(dest, 'latin1') : undefined }));
  });
}

/** An archive of SYSTEM in a repository, a staged directory, and the data directory to run in. */
function site(): { repo: string; archive: string; staged: string; pgdata: string } {
  const root = mkdtempSync(join(tmpdir(), 'pgbacula-wal-fetch-helper-'));
  scratch.push(root);
  const repo = join(root, 'repo');
  const archive = join(repo, 'wal', SYSTEM);
  mkdirSync(join(archive, '00000001'), { recursive: true });
  mkdirSync(join(archive, '.receive'), { recursive: true });
  const staged = join(root, 'staged');
  mkdirSync(staged);
  const pgdata = fakePgdata(SYSTEM);
  scratch.push(pgdata);
  return { repo, archive, staged, pgdata };
}

/** The helper's own answer (no command behind it), the helper before wal-fetch, and wal-fetch alone. */
async function answers(args: readonly string[], cwd: string): Promise<{ own: Ran; helped: Ran; plain: Ran }> {
  const own = await run([HELPER, '/nonexistent/node', 'cli.js', 'wal-fetch', ...args], cwd);
  const helped = await run([HELPER, ...CLI, 'wal-fetch', ...args], cwd);
  const plain = await run([...CLI, 'wal-fetch', ...args], cwd);
  return { own, helped, plain };
}

function expectHandedOver(r: { own: Ran; helped: Ran; plain: Ran }): void {
  expect(r.own.code).toBe(200);
  expect(r.own.stderr).toMatch(/pgbacula-wal-fetch: cannot run \/nonexistent\/node/);
  expect(r.helped).toEqual(r.plain);
}

function expectAbsent(r: { own: Ran; helped: Ran; plain: Ran }): void {
  for (const x of [r.own, r.helped, r.plain]) expect(x).toEqual({ code: 1, stdout: '', stderr: '', served: undefined });
}

describe('pgbacula-wal-fetch (restore_command helper)', () => {
  it('is built and put in front of wal-fetch in the restore_command a restore writes', () => {
    expect(existsSync(HELPER)).toBe(true);
    expect(nativeWalFetchPath()).toBe(HELPER);
    expect(restoreCommandLine({ repo: '/r', staged: '/s', latest: true })).toBe(`${HELPER} ${CLI.join(' ')} wal-fetch --repo /r --staged /s --latest %f %p`);
    expect(restoreCommandLine({ repo: '/r', helper: undefined })).toBe(`${CLI.join(' ')} wal-fetch --repo /r %f %p`);
  });

  it('answers "not archived" itself for a segment or history file found nowhere (staged only, repository, spool)', async () => {
    const s = site();
    for (const name of [SEGMENT, HISTORY]) {
      expectAbsent(await answers(['--staged', s.staged, '--latest', name], s.pgdata));
      expectAbsent(await answers(['--repo', s.repo, '--staged', s.staged, '--latest', name], s.pgdata));
      expectAbsent(await answers(['--repo', s.repo, name], s.pgdata));
      expectAbsent(await answers(['--wal-spool', join(s.repo, 'wal'), name], s.pgdata));
    }
  });

  it('hands over whenever a place wal-fetch reads holds the name: the staged copy, the archive, its .partial, the receiver\'s .partial', async () => {
    const places = (s: ReturnType<typeof site>) => [
      join(s.staged, SEGMENT),
      join(s.archive, '00000001', SEGMENT),
      join(s.archive, '00000001', `${SEGMENT}.partial`),
      join(s.archive, '.receive', `${SEGMENT}.partial`),
    ];
    for (let i = 0; i < 4; i++) {
      const s = site();
      // Not WAL at all: wal-fetch refuses it (exit 200) or reports the incomplete copy (exit 1);
      // either way the answer is wal-fetch's own, word for word.
      writeFileSync(places(s)[i]!, Buffer.alloc(8192, 7));
      const r = await answers(['--repo', s.repo, '--staged', s.staged, '--latest', SEGMENT], s.pgdata);
      expectHandedOver(r);
      expect(r.plain.code).not.toBe(0);
    }
    const s = site();
    writeFileSync(join(s.archive, HISTORY), 'not a history file\n');
    expectHandedOver(await answers(['--repo', s.repo, HISTORY], s.pgdata));
    // A link or a directory in the place counts as something there.
    mkdirSync(join(s.staged, SEGMENT));
    expectHandedOver(await answers(['--staged', s.staged, SEGMENT], s.pgdata));
  });

  it('hands over what it cannot judge: no data directory here, an archive without this system, another option, another name', async () => {
    const s = site();
    const elsewhere = mkdtempSync(join(tmpdir(), 'pgbacula-not-pgdata-'));
    scratch.push(elsewhere);
    mkdirSync(join(elsewhere, 'pg_wal'));
    expectHandedOver(await answers(['--staged', s.staged, SEGMENT], elsewhere));
    rmSync(join(s.repo, 'wal', SYSTEM), { recursive: true });
    expectHandedOver(await answers(['--repo', s.repo, SEGMENT], s.pgdata));
    expectHandedOver(await answers(['--staged', s.staged, '--pgdata', s.pgdata, SEGMENT], s.pgdata));
    expectHandedOver(await answers(['--staged', s.staged, '0000000100000000000000ab'], s.pgdata));
    expectHandedOver(await answers(['--staged', s.staged, `${SEGMENT}.partial`], s.pgdata));
    expectHandedOver(await answers(['--staged', s.staged, SEGMENT, 'extra'], s.pgdata));
  });
});
