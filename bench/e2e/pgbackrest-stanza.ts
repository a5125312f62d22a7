import { chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchCluster } from './bench-cluster.js';

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
