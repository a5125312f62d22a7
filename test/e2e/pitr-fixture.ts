/**
 * What the mode pitr e2e suites share: a Bacula site with one `pitr` FileSet and Job for a server
 * (its WAL spool, staging and server binaries under the suite's directory), and stopping a
 * restored server at the end.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { serverUser } from '../harness/os-user.js';
import { embeddedPgDir, type TestMajor } from '../harness/pg-binaries.js';
import { BaculaSite, pluginLine, type BaculaInstall } from './bacula-site.js';

export interface PitrSiteOptions {
  readonly install: BaculaInstall;
  readonly shimSo: string;
  readonly work: string;
  readonly major: TestMajor;
  readonly spool: string;
  /** The server backed up: host (socket directory) and port, plus any other plugin parameters. */
  readonly params: Readonly<Record<string, string | number | boolean>>;
}

export async function startPitrSite(o: PitrSiteOptions): Promise<BaculaSite> {
  const plugin = pluginLine('pgbacula', {
    mode: 'pitr',
    user: 'postgres',
    wal_spool: o.spool,
    tmpdir: join(o.work, 'staging'),
    pg_bin_dir: join(embeddedPgDir(o.major), 'bin'),
    ...o.params,
  });
  return await BaculaSite.start({
    install: o.install,
    plugins: [o.shimSo],
    parentDir: o.work,
    fdEnv: { PGBACULA_PROGRESS_SECONDS: '0', PGBACULA_ARCHIVE_WAIT_SECONDS: '60' },
    fileSets: [{ name: 'pitr', plugins: [plugin] }],
    jobs: [{ name: 'pitr', fileSet: 'pitr' }],
  });
}

/** pg_ctl stop -m immediate of a restored server, if it runs. */
export function stopRestoredServer(major: TestMajor, pgdata: string): void {
  const u = serverUser();
  try {
    execFileSync(join(embeddedPgDir(major), 'bin', 'pg_ctl'), ['-D', pgdata, '-m', 'immediate', '-w', 'stop'], { uid: u.uid, gid: u.gid, stdio: 'ignore' });
  } catch {
    // not running
  }
}
