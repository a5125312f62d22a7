import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface Measured {
  readonly seconds: number;
  readonly cpuSeconds: number;
  /** Peak of the summed RSS of the process and all its descendants, sampled every 20 ms. */
  readonly peakTreeRssBytes: number;
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function children(): Map<number, number[]> {
  const map = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = map.get(ppid) ?? [];
      list.push(Number(name));
      map.set(ppid, list);
    } catch {
      // gone
    }
  }
  return map;
}

function treeRss(root: number): number {
  const kids = children();
  let total = 0;
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // gone
    }
    stack.push(...(kids.get(pid) ?? []));
  }
  return total;
}

/**
 * Run a command, measuring wall time, CPU seconds of it and every descendant it waited for
 * (GNU time), and the peak RSS of the whole process tree (sampled from /proc).
 */
export function measure(cmd: string, args: readonly string[], opts: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv; stdoutToNull?: boolean } = {}): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', 'PGBACULA_TIME %U %S', '--', cmd, ...args], {
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid! } : {}),
      env: opts.env ?? process.env,
      stdio: ['ignore', opts.stdoutToNull ? 'ignore' : 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    let peak = 0;
    const timer = setInterval(() => {
      if (child.pid) peak = Math.max(peak, treeRss(child.pid));
    }, 20);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const m = /PGBACULA_TIME ([\d.]+) ([\d.]+)/.exec(stderr);
      resolve({
        seconds,
        cpuSeconds: m ? Number(m[1]) + Number(m[2]) : NaN,
        peakTreeRssBytes: peak,
        code,
        stdout,
        stderr: stderr.replace(/PGBACULA_TIME.*\n?/, ''),
      });
    });
  });
}
