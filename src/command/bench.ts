import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getInt } from '../config/params.js';
import { PgbaculaError } from '../errors.js';
import { planCluster } from '../pipeline/cluster-walk.js';
import { emitFiles } from '../pipeline/emit-files.js';
import { formatBytes, formatCount } from '../item/job-log.js';
import { loadKernels } from '../format/kernels.js';
import { createWorkerPool, workerCount } from '../pipeline/pool.js';
import type { CommandContext } from './context.js';
import { ok, table, type CommandResult } from './result.js';

interface Stage {
  readonly name: string;
  readonly verifyPages: boolean;
  readonly verifyOnly: boolean;
  readonly compress: boolean;
}

// Cumulative stages of the backup pipeline: each adds one step to the one before.
const STAGES: readonly Stage[] = [
  { name: 'read', verifyPages: false, verifyOnly: true, compress: false },
  { name: 'read + page checksums', verifyPages: true, verifyOnly: true, compress: false },
  { name: '+ hash + hand-over to the main thread', verifyPages: true, verifyOnly: false, compress: false },
  { name: '+ lz4', verifyPages: true, verifyOnly: false, compress: true },
];

/** `pgbacula bench --pgdata DIR`: the read/verify/hash/compress pipeline alone, stage by stage. */
export async function runBenchCommand(ctx: CommandContext): Promise<CommandResult> {
  const pgdata = ctx.argv.globals.pgdata;
  if (typeof pgdata !== 'string') throw new PgbaculaError('USAGE', 'bench needs --pgdata DIR', { hint: 'Name a data directory to read.' });
  let major: number;
  try {
    major = Number(readFileSync(join(pgdata, 'PG_VERSION'), 'utf8').trim());
  } catch {
    throw new PgbaculaError('PARAM_INVALID', `${pgdata} is not a PostgreSQL data directory (no PG_VERSION)`);
  }
  const threads = workerCount(ctx.params.has('parallel_jobs') ? getInt(ctx.params, 'parallel_jobs') : undefined);
  const pool = createWorkerPool({ parallelJobs: threads });
  const nullSink = { begin: async () => undefined, write: async () => undefined, end: async () => undefined };
  const results: { stage: string; seconds: number; mbPerSecond: number; storedBytes: number }[] = [];
  let totalBytes = 0;
  let files = 0;
  try {
    const plan = await planCluster(pool, pgdata, major);
    const entries = Array.from(plan.entries).filter((e) => e.type === 'file');
    totalBytes = plan.totalBytes;
    files = entries.length;
    for (const stage of STAGES) {
      let stored = 0;
      const sink = { ...nullSink, write: async (c: Uint8Array) => void (stored += c.length) };
      const t0 = process.hrtime.bigint();
      await emitFiles(entries, { pool, sink, log: ctx.log, verifyPages: stage.verifyPages, verifyOnly: stage.verifyOnly, compress: stage.compress });
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      results.push({ stage: stage.name, seconds, mbPerSecond: totalBytes / 1e6 / seconds, storedBytes: stored });
    }
  } finally {
    await pool.destroy();
  }
  const kernels = loadKernels();
  const text = [
    `pipeline over ${pgdata}: ${formatCount(files)} files, ${formatBytes(totalBytes)}, ${threads} worker thread(s), kernels ${kernels.kind}`,
    table(results.map((r) => [r.stage, `${r.mbPerSecond.toFixed(0)} MB/s (${r.seconds.toFixed(2)} s)${r.storedBytes ? `, out ${formatBytes(r.storedBytes)}` : ''}`])),
  ].join('\n');
  return ok({ pgdata, files, totalBytes, threads, kernels: kernels.kind, stages: results }, text);
}
