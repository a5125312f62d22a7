/**
 * A full pgbacula backup whose items go nowhere: the engine's own speed, without the cost of
 * a destination. Run by bench/e2e/throughput.ts under /usr/bin/time (CPU seconds, peak RSS).
 * Usage: node dist/bench/e2e/null-backup.js HOST PORT [parallel_jobs]
 */
import { rmSync } from 'node:fs';
import v8 from 'node:v8';
import { resolveConnection } from '../../src/config/connection.js';
import { runBaseBackup } from '../../src/physical/base-backup.js';
import { silentLog } from '../../src/item/job-log.js';
import { createWorkerPool } from '../../src/pipeline/pool.js';

v8.setFlagsFromString('--max-semi-space-size=4'); // as bin/pgbacula.js does
v8.setFlagsFromString('--heap-growing-percent=20');
const [host, port, jobs] = process.argv.slice(2);
const pool = createWorkerPool({ parallelJobs: jobs ? Number(jobs) : undefined });
let bytes = 0;
const sink = { begin: async () => undefined, write: async (c: Uint8Array) => void (bytes += c.length), end: async () => undefined };
try {
  const r = await runBaseBackup({
    connection: resolveConnection(new Map<string, string | number>([['host', host!], ['port', Number(port)], ['user', 'postgres']]), {}),
    pool,
    sink,
    log: silentLog,
    backupId: `bench-${Date.now()}`,
    label: 'pgbacula bench null sink',
    verifyChecksums: true,
    compress: false,
    backupFromStandby: false,
    excludeTablespaces: [],
    tmpdir: '/var/tmp',
    progressIntervalMs: 0,
    manifestPath: `/var/tmp/pgbacula-null-manifest-${process.pid}.json`,
  });
  rmSync(`/var/tmp/pgbacula-null-manifest-${process.pid}.json`, { force: true });
  process.stdout.write(JSON.stringify({ bytes, files: r.fileCount, failures: r.failures.length }) + '\n');
} finally {
  await pool.destroy();
}
