/**
 * PostgreSQL client programs (pg_dump, pg_dumpall, pg_restore, psql) run as children of the
 * backend, the way the Bacula FD needs it:
 *
 * - never inheriting fd 1 (the protocol channel) or fd 2 (every byte there is a job error):
 *   stdout and stderr are pipes we own; stderr is captured and turned into job messages by the
 *   caller, deliberately;
 * - never outliving us: every child is registered and killed on every exit path, and where
 *   util-linux `setpriv` exists it is started with a parent-death signal, so even a SIGKILL of
 *   the backend leaves no orphan dumping on;
 * - secrets only in the environment (PGPASSWORD), never in argv (visible to every local user).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { basename } from 'node:path';
import { scrub } from '../config/redact.js';
import { PgbaculaError } from '../errors.js';

export interface ToolExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** stderr lines (the first and last ones when there were very many). */
  readonly stderr: readonly string[];
}

export interface ToolProcess {
  readonly name: string;
  readonly pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly exited: Promise<ToolExit>;
  /** true once the process is gone. */
  readonly done: boolean;
  kill(signal?: NodeJS.Signals): void;
}

export interface ToolOptions {
  readonly env: Readonly<Record<string, string>>;
  readonly stdin?: 'pipe' | 'ignore';
  readonly stdout?: 'pipe' | 'ignore';
  readonly cwd?: string;
  /** Called for every stderr line as it arrives (e.g. to relay warnings). */
  readonly onStderrLine?: (line: string) => void;
}

const live = new Set<ToolProcess>();
const STDERR_HEAD = 40;
const STDERR_TAIL = 40;

let setprivPath: string | null | undefined;
function setpriv(): string | null {
  if (setprivPath === undefined) {
    setprivPath = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) ?? null;
  }
  return setprivPath;
}

/** Start a client program. `name` is what messages call it (defaults to the file name). */
export function startTool(file: string, args: readonly string[], opts: ToolOptions, name = basename(file)): ToolProcess {
  // setpriv execs the program (same pid) after asking the kernel for SIGKILL when we die.
  const sp = setpriv();
  const [cmd, argv] = sp ? [sp, ['--pdeathsig', 'KILL', '--', file, ...args]] : [file, [...args]];
  const child: ChildProcess = spawn(cmd, argv, {
    stdio: [opts.stdin ?? 'ignore', opts.stdout ?? 'ignore', 'pipe'],
    env: { ...opts.env },
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  const head: string[] = [];
  const tail: string[] = [];
  let skipped = 0;
  let partial = '';
  const takeLine = (line: string): void => {
    const clean = scrub(line.replace(/\r$/, ''));
    if (clean.trim() === '') return;
    opts.onStderrLine?.(clean);
    if (head.length < STDERR_HEAD) head.push(clean);
    else {
      tail.push(clean);
      if (tail.length > STDERR_TAIL) {
        tail.shift();
        skipped++;
      }
    }
  };
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    partial += s;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) takeLine(l);
  });
  // Writes into a pipe the child has closed must not become uncaught errors.
  child.stdin?.on('error', () => undefined);
  child.stdout?.on('error', () => undefined);

  let done = false;
  const exited = new Promise<ToolExit>((resolve) => {
    let settled = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void => {
      if (settled) return;
      settled = true;
      done = true;
      live.delete(proc);
      if (partial) takeLine(partial);
      partial = '';
      if (spawnError) head.push(`cannot start ${file}: ${spawnError.message}`);
      const stderr = skipped ? [...head, `... (${skipped} more lines)`, ...tail] : [...head, ...tail];
      resolve({ code: spawnError ? 127 : code, signal, stderr });
    };
    child.once('error', (e) => finish(null, null, e));
    // 'close' (not 'exit'): stderr is fully read by then.
    child.once('close', (code, signal) => finish(code, signal));
  });

  const proc: ToolProcess = {
    name,
    pid: child.pid,
    stdin: child.stdin,
    stdout: child.stdout,
    exited,
    get done() {
      return done;
    },
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (done) return;
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    },
  };
  live.add(proc);
  return proc;
}

/** "pg_dump exited with code 1" / "pg_dump was killed by signal SIGKILL". */
export function describeExit(name: string, exit: ToolExit): string {
  if (exit.signal) return `${name} was killed by signal ${exit.signal}`;
  return `${name} exited with code ${exit.code}`;
}

/** The stderr lines worth showing an operator, joined for one message. */
export function stderrSummary(exit: ToolExit, max = 12): string {
  const lines = exit.stderr.filter((l) => l.trim() !== '');
  if (lines.length <= max) return lines.join('; ');
  return [...lines.slice(0, max - 1), `... (${lines.length - max + 1} more lines)`].join('; ');
}

/** Throwing-free check: did it succeed? */
export function succeeded(exit: ToolExit): boolean {
  return exit.code === 0 && exit.signal === null;
}

/** Stop every live client program: SIGTERM, then SIGKILL for those still running after graceMs. */
export async function stopAllTools(graceMs = 2000): Promise<void> {
  const procs = [...live];
  for (const p of procs) p.kill('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (procs.some((p) => !p.done) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const p of procs) if (!p.done) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
}

/** Synchronous last resort (process 'exit' handler): SIGKILL whatever is still running. */
export function killAllToolsNow(): void {
  for (const p of live) p.kill('SIGKILL');
}

/** "<what> failed: pg_dump exited with code 1: <its stderr>" as a job error. */
export function toolFailure(what: string, tool: string, exit: ToolExit): PgbaculaError {
  const detail = stderrSummary(exit);
  return new PgbaculaError('CHILD_PROCESS', `${what} failed: ${describeExit(tool, exit)}${detail ? `: ${detail}` : ''}`, {
    hint: 'See the messages above; fix the cause and run the job again.',
  });
}

/** A stderr line handler relaying the program's warnings as job warnings (errors come with the exit). */
export function warningRelay(log: { warning(text: string): void }, prefix: string): (line: string) => void {
  return (line) => {
    if (/\bwarning:/i.test(line)) log.warning(`${prefix}: ${line}`);
  };
}
