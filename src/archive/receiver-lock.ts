/**
 * Who holds wal-receive's lock (`.receive/lock` of an archive and system, docs/wal-archive.md):
 * read by `info` and by every cdp job (src/modes/cdp/receiver-health.ts) to tell a running
 * receiver from a dead one.
 */
import { join } from 'node:path';
import { pidAlive } from '../os/pid-alive.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { receiveDir } from './layout.js';

export interface ReceiverLock {
  readonly path: string;
  readonly pid: number;
  readonly alive: boolean;
}

/** The pid in the lock and whether that process lives; undefined when there is no (readable) lock. */
export async function receiverLock(root: string, systemId: string, storage: Storage = posixStorage): Promise<ReceiverLock | undefined> {
  const path = join(receiveDir(root, systemId), 'lock');
  const text = (await storage.readFileIfExists(path).catch(() => undefined))?.toString('utf8').trim();
  const pid = Number(text);
  // A pid_t is a positive 32-bit integer: anything else in the file is not a receiver's pid.
  if (!text || !/^\d+$/.test(text) || !Number.isInteger(pid) || pid <= 0 || pid > 0x7fffffff) return undefined;
  return { path, pid, alive: pidAlive(pid) };
}
