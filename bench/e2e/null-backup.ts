/**
 * A full pgbacula backup whose items go nowhere: the engine's own speed, without the cost of
 * a destination. Run by bench/e2e/throughput.ts under /usr/bin/time (CPU seconds, peak RSS).
 * Usage: node dist/bench/e2e/null-backup.js HOST PORT [parallel_jobs]
 */
import { resolveConnection } from '../../src/config/connection.js';
import { runBaseBackup } from '../../src/modes/base-backup.js';
import { silentLog } from '../../src/pipeline/job-log.js';
import { createWorkerPool, workerCount } from '../../src/pipeline/pool.js';

const [host, port, jobs] = process.argv.slice(2);
const pool = createWorkerPool(workerCount(jobs ? Number(jobs) : undefined));
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
  });
  process.stdout.write(JSON.stringify({ bytes, files: r.manifest.files.length, failures: r.failures.length }) + '\n');
} finally {
  await pool.destroy();
}
