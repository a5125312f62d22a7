import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchCluster } from './bench-cluster.js';

const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/**
 * The newest pgBackRest this machine can run (scripts/pgbackrest-newest.sh sets up Debian sid's),
 * else Debian's /usr/bin/pgbackrest, saying why; `newest` tells which.
 */
export function newestPgBackRest(): { bin: string; label: string; newest: boolean } {
  let bin = '/usr/bin/pgbackrest';
  let newest = true;
  try {
    bin = execFileSync(join(REPO_ROOT, 'scripts', 'pgbackrest-newest.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').at(-1)!;
  } catch (e) {
    const why = ((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split('\n').slice(-3).join(' ');
    console.error(`bench: the newest pgBackRest could not be set up (${why}); comparing with Debian's /usr/bin/pgbackrest`);
    newest = false;
  }
  return { bin, newest, label: `pgBackRest ${execFileSync(bin, ['version'], { encoding: 'utf8' }).trim().replace(/^pgBackRest /, '')}` };
}

/**
 * A fresh pgBackRest stanza `bench` for a benchmark cluster, in the configuration the benchmarks
 * compare with: lz4-1, two processes, fast start; with `block`, bundling and block incremental.
 * Everything lives under the cluster's root (`pgbackrest-repo`, -log, -lock, -spool); the cluster
 * archives elsewhere, so archive-check is off. Returns the configuration file.
 */
export function createPgBackRestStanza(bench: BenchCluster, bin: string, o: { block: boolean }): string {
  const at = (name: string) => join(bench.root, name);
  const conf = at('pgbackrest.conf');
  rmSync(at('pgbackrest-repo'), { recursive: true, force: true });
  for (const d of ['pgbackrest-repo', 'pgbackrest-log', 'pgbackrest-lock', 'pgbackrest-spool']) {
    mkdirSync(at(d), { recursive: true });
    chownSync(at(d), bench.user.uid, bench.user.gid);
  }
  writeFileSync(
    conf,
    [
      '[global]',
      `repo1-path=${at('pgbackrest-repo')}`,
      ...(o.block ? ['repo1-bundle=y', 'repo1-block=y'] : []),
      `log-path=${at('pgbackrest-log')}`,
      `lock-path=${at('pgbackrest-lock')}`,
      `spool-path=${at('pgbackrest-spool')}`,
      'compress-type=lz4',
      'compress-level=1',
      'process-max=2',
      'start-fast=y',
      'archive-check=n',
      'repo1-retention-full=99',
      'log-level-console=error',
      'log-level-file=off',
      '',
      '[bench]',
      `pg1-path=${bench.data}`,
      `pg1-port=${bench.port}`,
      `pg1-socket-path=${bench.sock}`,
      '',
    ].join('\n'),
  );
  chownSync(conf, bench.user.uid, bench.user.gid);
  bench.asPostgres(bin, [`--config=${conf}`, '--stanza=bench', 'stanza-create']);
  return conf;
}
