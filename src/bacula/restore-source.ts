/**
 * The FD as a source of items during a restore: the FD announces each entry
 * (`FNAME:` + `STAT:` + `TSTAMP:` [+ `LSTAT:`] + `F`), the backend answers `OK`/`SKIP`/`E`, then
 * the FD sends metadata/`DATA`/ACL/XATTR blocks for accepted entries, each answered `OK`.
 * This module turns that dialogue into begin/write/end calls on a RestoreTarget and answers for
 * it; the target never sees a packet.
 *
 * An entry without data gets no `DATA` at all, so an accepted entry is ended when the next
 * `FNAME:` or `FINISH` arrives. Errors the target raises for an entry are answered `E` where the
 * protocol has an answer for that entry, and reported as `Q` (a job error without protocol
 * effect) where it has not; either way the restore job ends "Restore Error", which is the
 * truth. A failure at FINISH (where the restore itself runs) is too late for `Q`: it is thrown,
 * and answered `A`.
 */
import { asPgbaculaError, PgbaculaError } from '../errors.js';
import type { ItemType } from '../item/item.js';
import type { RestoreDecision, RestoreEntry, RestoreTarget } from '../item/restore-target.js';
import { unexpected, type PacketSink, type PacketSource } from './channel.js';
import type { FdJobLog } from './fd-job-log.js';
import { command, EOD, type Packet } from './packet.js';

export type RestoreStreamEnd =
  /** FINISH answered: the epilogue (END/T or EOF) follows. */
  | 'finished'
  /** END arrived without FINISH (not seen from 15.0.3, handled anyway). */
  | 'end'
  | 'terminate'
  | 'eof';

const TYPE_OF: Readonly<Record<string, ItemType>> = { F: 'file', E: 'file', L: 'file', D: 'dir', S: 'symlink' };

/** Parse the FD's restore STAT line: `STAT:%c %lld %d %d %06o %d %d`. */
export function parseRestoreStat(line: string): { type: ItemType; letter: string; size: number; mode: number } {
  const m = /^STAT:(.) (-?\d+) (-?\d+) (-?\d+) ([0-7]+) (-?\d+)(?: (-?\d+))?$/.exec(line);
  if (!m) throw new PgbaculaError('PROTOCOL', `malformed STAT line from the FD: "${line}"`, { hint: 'A Bacula FD/shim version mismatch.' });
  const letter = m[1]!;
  return { type: TYPE_OF[letter] ?? 'file', letter, size: Number(m[2]), mode: parseInt(m[5]!, 8) & 0o7777 };
}

/** The namespace-relative path of an FD output name, stripping Where or locating `/@ns/`. */
export function namespacePathOf(fname: string, namespace: string, where: string | undefined): string | undefined {
  const marker = `/${namespace}/`;
  let rest = fname;
  if (where && where !== '/' && fname.startsWith(where)) {
    rest = fname.slice(where.replace(/\/+$/, '').length);
    if (!rest.startsWith('/')) rest = '/' + rest;
  }
  const at = rest.startsWith(marker) ? 0 : rest.indexOf(marker);
  if (at < 0) return undefined;
  const rel = rest.slice(at + marker.length).replace(/\/+$/, '');
  return rel === '' ? undefined : rel;
}

interface OpenEntry {
  readonly entry: RestoreEntry;
  bytes: number;
  ended: boolean;
}

export interface RestoreStreamOptions {
  readonly namespace: string;
  readonly where: string | undefined;
  readonly log: FdJobLog;
}

/**
 * Run the restore loop from just after the `RestoreStart` acknowledgement until FINISH is
 * answered (or END/T/EOF). Protocol violations throw (the caller aborts the job).
 */
export async function runRestoreStream(fd: PacketSource, out: PacketSink, target: RestoreTarget, o: RestoreStreamOptions): Promise<RestoreStreamEnd> {
  let open: OpenEntry | undefined;

  const report = (what: string, e: unknown): void => {
    const err = asPgbaculaError(e);
    o.log.error(`${what}: ${err.hint ? `${err.message}. ${err.hint}` : err.message}`);
  };

  /**
   * End an accepted entry that got no DATA, then let the target settle before `next`. At FINISH
   * (`last`) a failure is thrown instead of reported: see the FINISH branch.
   */
  const closeOpen = async (next: RestoreEntry | undefined, last = false): Promise<void> => {
    if (open && !open.ended) {
      open.ended = true;
      try {
        await target.end({ hash: '', rawSize: open.bytes, storedSize: open.bytes });
      } catch (e) {
        if (last) throw e;
        report(`restore of ${open.entry.fname} failed`, e);
      }
    }
    open = undefined;
    try {
      await target.settle(next);
    } catch (e) {
      if (last) throw e;
      report('restore failed', e);
    }
  };

  /** Read a block up to its F, returning the command lines (data packets are discarded). */
  const readBlock = async (what: string): Promise<string[]> => {
    const lines: string[] = [];
    for (;;) {
      const p = await fd.next();
      if (!p) throw unexpected(p, `the rest of ${what}`);
      if (p.kind === 'eod') return lines;
      if (p.kind === 'command') lines.push(p.text);
      else if (p.kind !== 'data') throw unexpected(p, `the rest of ${what}`);
    }
  };

  const answer = (text: string): Promise<void> => out.send(command(`${text}\n`));
  const fail = (e: unknown): Promise<void> => {
    const err = asPgbaculaError(e);
    return out.send({ kind: 'error', text: err.hint ? `${err.message}. ${err.hint}` : err.message });
  };

  for (;;) {
    const p: Packet | undefined = await fd.next();
    if (!p) return 'eof';
    if (p.kind === 'terminate') return 'terminate';
    if (p.kind === 'message') continue;
    if (p.kind !== 'command') throw unexpected(p, 'a restore command (FNAME, DATA, FINISH, ...)');
    const text = p.text;

    if (text.startsWith('FNAME:')) {
      const fname = text.slice('FNAME:'.length);
      const header = await readBlock(`the header of ${fname}`);
      const statText = header.find((l) => l.startsWith('STAT:'));
      if (!statText) throw new PgbaculaError('PROTOCOL', `restore entry ${fname} came without STAT`);
      const stat = parseRestoreStat(statText);
      const ts = header.find((l) => l.startsWith('TSTAMP:'));
      const mtime = ts ? Number(ts.slice(7).split(' ')[1] ?? 0) : 0;
      const lstat = header.find((l) => l.startsWith('LSTAT:'));
      const entry: RestoreEntry = {
        path: fname,
        type: stat.type,
        mode: stat.mode,
        mtimeMs: (Number.isFinite(mtime) ? mtime : 0) * 1000,
        size: stat.size,
        encoding: 'raw',
        ...(lstat ? { linkTarget: lstat.slice('LSTAT:'.length) } : {}),
        fname,
        namespacePath: namespacePathOf(fname, o.namespace, o.where),
      };
      await closeOpen(entry);
      let decision: RestoreDecision;
      try {
        decision = await target.begin(entry);
      } catch (e) {
        await fail(e);
        continue;
      }
      if (decision === 'skip') {
        await answer('SKIP');
        continue;
      }
      open = { entry, bytes: 0, ended: false };
      await answer('OK');
      continue;
    }

    if (text === 'DATA') {
      if (!open || open.ended) throw new PgbaculaError('PROTOCOL', 'DATA from the FD for an entry that was not accepted');
      const current = open;
      let failure: unknown;
      for (;;) {
        const d = await fd.next();
        if (!d) return 'eof';
        if (d.kind === 'eod') break;
        if (d.kind !== 'data') throw unexpected(d, `data of ${current.entry.fname}`);
        current.bytes += d.data.length;
        if (failure === undefined) {
          try {
            await target.write(d.data);
          } catch (e) {
            // Keep reading the FD's data (it does not listen until its F), then answer E.
            failure = e;
          }
        }
      }
      current.ended = true;
      if (failure === undefined) {
        try {
          await target.end({ hash: '', rawSize: current.bytes, storedSize: current.bytes });
        } catch (e) {
          failure = e;
        }
      } else {
        try {
          await target.end({ hash: '', rawSize: current.bytes, storedSize: current.bytes });
        } catch {
          // the first failure is the one to report
        }
      }
      if (failure === undefined) await answer('OK');
      else await fail(failure);
      continue;
    }

    if (text === 'FINISH') {
      // The FD has already settled the job's status when it sends FINISH (15.0.3 filed/job.c,
      // end_restore_cmd: errors counted before it make the job E). An Error message now only
      // turns "Restore OK" into "Restore OK -- with errors" (JobStatus T) — a restore that did
      // not happen reported as done. So a failure here is thrown: the conversation answers
      // FINISH with `A`, a fatal error, and the job ends f (issue 9, item 10).
      await closeOpen(undefined, true);
      await target.finish();
      await out.send(EOD);
      return 'finished';
    }

    if (text === 'END') return 'end';

    // RESTOREOBJ + RESTOREOBJ_LEN + D… + F, ACL/XATTR/metadata blocks + D + F: nothing of ours
    // uses them (no ACL/XATTR/metadata/restore objects are written at backup); acknowledge.
    await readBlock(text);
    await answer('OK');
  }
}
