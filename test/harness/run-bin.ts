import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './pg-binaries.js';

export interface BinRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Run the built CLI as a child process. `killWhen` watches stderr and SIGKILLs the process the
 * moment a line matches — a "victim" test's precise kill point (pg_probackup's habit).
 */
export function runBin(args: readonly string[], opts: { env?: Record<string, string>; killWhen?: RegExp } = {}): Promise<BinRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (opts.killWhen && opts.killWhen.test(stderr)) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/**
 * The CLI as its own process, with runCli's signature: what an operator runs, and no state
 * (worker pools, signal handlers, clients) shared with the test process between commands.
 */
export async function runCliProcess(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runBin(args, { env });
  return { code: r.code ?? (r.signal ? 128 : 1), stdout: r.stdout, stderr: r.stderr };
}
