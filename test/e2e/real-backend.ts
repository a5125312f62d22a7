/**
 * The real pgbacula backend behind a freshly built shim, the way a user installs it: a launcher
 * script (BACKEND_CMD cannot carry arguments) that runs `node --no-warnings bin/pgbacula.js
 * backend`, and pgbacula-fd.so built by native/build.sh against the cached Bacula 15.0.3 tree with
 * the parameter list of the project's schema. The CLI must be built (npm run build).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BaculaInstall } from './bacula-site.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ShimParams {
  params: string[];
  restoreOptions: Array<{ name: string; type: string; doc?: string }>;
}

/** The schema's parameter list as the shim build takes it (from the built CLI). */
export function shimParams(): ShimParams {
  const out = execFileSync(process.execPath, ['--no-warnings', join(REPO, 'bin/pgbacula.js'), 'shim-params', '--json'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return JSON.parse(out) as ShimParams;
}

export interface BuiltShim {
  readonly so: string;
  readonly launcher: string;
  readonly schema: ShimParams;
}

/** Write the launcher and build the shim pointing at it, under `work`. */
export function buildShimWithRealBackend(work: string, install: BaculaInstall): BuiltShim {
  if (!existsSync(join(REPO, 'dist/src/command/bacula/backend.js'))) throw new Error('dist/src/command/bacula/backend.js is missing: run npm run build first');
  const launcher = join(work, 'pgbacula-backend');
  writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} --no-warnings ${join(REPO, 'bin/pgbacula.js')} backend\n`);
  chmodSync(launcher, 0o755);
  const schema = shimParams();
  const paramsFile = join(work, 'shim-params.json');
  writeFileSync(paramsFile, JSON.stringify(schema));
  const out = join(work, 'shim');
  execFileSync(join(REPO, 'native/build.sh'), ['--params', paramsFile, '--backend', launcher, '--out', out], {
    stdio: 'pipe',
    env: { ...process.env, BACULA_SRC: install.src },
  });
  return { so: join(out, 'pgbacula-fd.so'), launcher, schema };
}

export interface ProcessInfo {
  readonly pid: number;
  readonly argv: string[];
}

/** Processes whose argv matches, read from /proc (no ps needed). */
export function processesMatching(test: (argv: string[]) => boolean): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    if (argv.length && test(argv)) out.push({ pid: Number(name), argv });
  }
  return out;
}

/** pg_dump / pg_restore / psql / pg_dumpall processes connected to this port. */
export function clientToolsFor(port: number): ProcessInfo[] {
  return processesMatching((a) => /(^|\/)(pg_dump|pg_dumpall|pg_restore|psql)$/.test(a[0] ?? '') && a.some((x) => x.includes(`port='${port}'`)));
}

/** Backend processes started by the FD of one site (the FD's environment carries the marker). */
export function backendsOf(marker: string): ProcessInfo[] {
  return processesMatching((a) => a.includes('backend') && a.some((x) => x.endsWith('pgbacula.js'))).filter((p) => {
    try {
      return readFileSync(`/proc/${p.pid}/environ`, 'latin1').split('\0').includes(marker);
    } catch {
      return false;
    }
  });
}

/** Bytes a process has written (/proc/<pid>/io wchar): > 0 means it is streaming. */
export function bytesWritten(pid: number): number {
  try {
    const m = /wchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until `fn` returns a value (not undefined), or fail with `what`. */
export async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
