/**
 * Directory archives (`pg_dump -Fd -j N`): mode `parallel_dump`, and `dump_format=directory`.
 * pg_dump's parallel workers each write their own files, so the archive cannot be a stream: it
 * is staged under `tmpdir`, then emitted as a directory item followed by its files (toc.dat
 * first), each streamed from disk, and the staged copy is removed at once.
 */
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PgbaculaError } from '../../errors.js';
import { startTool, succeeded, toolFailure, warningRelay } from '../../server/tool-process.js';
import type { ItemSink } from '../../item/item.js';
import { ProgressTracker } from '../../item/job-log.js';
import type { DumpDatabase, DumpTools } from './plan.js';
import { pgDumpArgs } from './settings.js';
import { makeDirsSync, removeTreeSync } from '../../os/user-dirs.js';

export interface StagedFile {
  readonly name: string;
  readonly size: number;
  readonly mtimeMs: number;
}

export interface StagedDirectory {
  readonly dir: string;
  readonly files: readonly StagedFile[];
}

function dirBytes(dir: string): number {
  try {
    return readdirSync(dir).reduce((sum, n) => {
      try {
        return sum + statSync(join(dir, n)).size;
      } catch {
        return sum;
      }
    }, 0);
  } catch {
    return 0;
  }
}

/** toc.dat first (what a reader needs first), then the rest by name. */
export function stagedOrder(names: readonly string[]): string[] {
  return [...names].sort((a, b) => (a === 'toc.dat' ? -1 : b === 'toc.dat' ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

/** Run pg_dump -Fd [-j N] into `dir`; progress is the staged size, polled. */
export async function stageDirectoryDump(t: DumpTools, db: DumpDatabase, dir: string): Promise<StagedDirectory> {
  const { plan, ctx } = t;
  removeTreeSync(dir);
  // pg_dump creates the archive directory itself, but not its parents.
  makeDirsSync(dirname(dir), 0o700);
  const proc = startTool(plan.tools.pgDump, pgDumpArgs(plan.settings, t.conninfo(db.name), dir), {
    env: t.env,
    onStderrLine: warningRelay(ctx.log, `pg_dump ${db.name}`),
  });
  const onAbort = (): void => proc.kill('SIGTERM');
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  const tracker = new ProgressTracker(ctx.log, `dumping ${db.name} (staged)`, 0, 0);
  let last = 0;
  const poll = ctx.progressIntervalMs > 0
    ? setInterval(() => {
        const now = dirBytes(dir);
        tracker.add(Math.max(0, now - last));
        last = now;
        ctx.log.progress(tracker.snapshot());
      }, ctx.progressIntervalMs)
    : undefined;
  poll?.unref();
  try {
    const exit = await proc.exited;
    if (ctx.signal.aborted) throw new PgbaculaError('CANCELLED', 'the dump was canceled');
    if (!succeeded(exit)) throw toolFailure(`pg_dump of database ${db.name}`, 'pg_dump', exit);
  } catch (e) {
    removeTreeSync(dir);
    throw e;
  } finally {
    if (poll) clearInterval(poll);
    ctx.signal.removeEventListener('abort', onAbort);
    proc.kill('SIGKILL');
  }
  const files = stagedOrder(readdirSync(dir)).map((name) => {
    const st = statSync(join(dir, name));
    if (!st.isFile()) throw new PgbaculaError('CHILD_PROCESS', `pg_dump wrote ${join(dir, name)}, which is not a regular file`);
    return { name, size: st.size, mtimeMs: st.mtimeMs };
  });
  return { dir, files };
}

/** Emit the directory item and its files, then remove the staged copy. Returns the bytes sent. */
export async function emitStagedDirectory(staged: StagedDirectory, path: string, sink: ItemSink, signal: AbortSignal): Promise<number> {
  let bytes = 0;
  try {
    const now = Date.now();
    await sink.begin({ path, type: 'dir', mode: 0o700, mtimeMs: now, size: 0, encoding: 'raw' });
    await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
    for (const f of staged.files) {
      if (signal.aborted) throw new PgbaculaError('CANCELLED', 'the dump was canceled');
      await sink.begin({ path: `${path}/${f.name}`, type: 'file', mode: 0o600, mtimeMs: f.mtimeMs, size: f.size, encoding: 'raw' });
      let sent = 0;
      for await (const chunk of createReadStream(join(staged.dir, f.name), { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
        await sink.write(chunk);
        sent += chunk.length;
      }
      if (sent !== f.size) {
        throw new PgbaculaError('IO', `staged file ${join(staged.dir, f.name)} changed while it was sent (${sent} of ${f.size} bytes)`);
      }
      await sink.end({ hash: '', rawSize: sent, storedSize: sent });
      bytes += sent;
    }
    return bytes;
  } finally {
    removeTreeSync(staged.dir);
  }
}
