/**
 * The chain record of the pitr jobs run through Bacula, on disk in the spool (what
 * pitr-chain.ts decides from). A damaged record only costs a Full.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { PgbaculaError } from '../../errors.js';
import { posixStorage } from '../../storage/posix.js';
import { CHAIN_FORMAT, type ChainFile, type ChainRecord } from './pitr-chain.js';

/**
 * `ROOT/.bacula-chain/<cluster>.json`: dot directories are not systems of the archive. One file per
 * cluster; each record names its Job, and a job continues only records of its own Job (Bacula's
 * Since= is per Job) — console estimates (Job `-Console-`) look at all of them.
 */
export const CHAIN_DIR = '.bacula-chain';

export function chainFilePath(spoolRoot: string, cluster: string): string {
  return join(spoolRoot, CHAIN_DIR, `${cluster.replace(/[^A-Za-z0-9_.-]/g, '_')}.json`);
}

export async function loadChain(path: string): Promise<ChainRecord[]> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new PgbaculaError('IO', `cannot read the chain record ${path}: ${(e as Error).message}`);
  }
  try {
    const f = JSON.parse(text) as ChainFile;
    if (f.format !== CHAIN_FORMAT || !Array.isArray(f.records)) throw new Error(`format ${String(f.format)}`);
    return [...f.records];
  } catch (e) {
    // A damaged record only costs a Full: say so, never fail the job for it.
    throw new PgbaculaError('REPOSITORY', `the chain record ${path} is damaged (${(e as Error).message})`, {
      hint: 'Remove it: the next job stores a base backup and starts a new chain.',
    });
  }
}

export async function saveChain(path: string, records: readonly ChainRecord[]): Promise<void> {
  await posixStorage.makeDirs(join(path, '..'), { mode: 0o750 });
  await posixStorage.writeFileDurable(path, JSON.stringify({ format: CHAIN_FORMAT, records } satisfies ChainFile, null, 1) + '\n', { mode: 0o640 });
}
