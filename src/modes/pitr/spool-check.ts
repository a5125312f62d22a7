/**
 * The spool as mode pitr finds it under Bacula: the FD (usually root) runs the job, while the
 * server's archiver (archive_command = pgbacula wal-push, as the OS user that runs PostgreSQL)
 * fills the spool. A spool that user cannot write is an outage in waiting — archiving stalls and
 * pg_wal grows — so the job refuses it, with the command that fixes it, before it creates
 * anything (issue 9, item 9).
 *
 * A missing spool is refused too, not created. The archiver creates the spool itself on its first
 * wal-push when it can; a spool still missing when a job starts means no WAL has ever reached it:
 * archive_command names another directory than wal_spool (creating this one would hide the
 * mismatch behind an empty spool), or the archiver cannot create it (then only the operator can
 * choose the owner and the place). A root process creating directories for another user under a
 * path taken from a plugin string is also a privilege hazard (links in the parent path).
 *
 * Permissions are judged from the mode bits for the archiver's uid and groups (owner of the data
 * directory; its groups from /etc/passwd and /etc/group). POSIX ACLs are not read: a spool
 * writable only through an ACL is refused — give the archiver ownership instead.
 */
import { readFileSync } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PgbaculaError } from '../../errors.js';
import { hex8 } from '../../wal/segment.js';
import { giveTo } from '../../os/file-owner.js';

/** The OS user that runs the server (and its archive_command): the owner of the data directory. */
export interface Archiver {
  readonly uid: number;
  readonly gid: number;
  readonly name: string;
  readonly groupName: string;
  readonly groups: readonly number[];
}

function readLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** Who runs the server whose data directory this is; undefined when it cannot be seen from here. */
export async function archiverOf(dataDirectory: string | null): Promise<Archiver | undefined> {
  if (!dataDirectory) return undefined;
  let st;
  try {
    st = await stat(dataDirectory);
  } catch {
    return undefined;
  }
  const pw = readLines('/etc/passwd').map((l) => l.split(':')).find((f) => f.length >= 4 && Number(f[2]) === st.uid);
  const name = pw?.[0] ?? String(st.uid);
  const primary = pw ? Number(pw[3]) : st.gid;
  const groupLines = readLines('/etc/group').map((l) => l.split(':')).filter((f) => f.length >= 4);
  const groups = new Set<number>([primary, st.gid]);
  for (const g of groupLines) if (g[3]!.split(',').includes(name)) groups.add(Number(g[2]));
  const groupName = groupLines.find((g) => Number(g[2]) === primary)?.[0] ?? String(primary);
  return { uid: st.uid, gid: primary, name, groupName, groups: [...groups] };
}

interface Mode {
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
}

/** The rwx bits that apply to the archiver: owner, else group, else other. */
function bitsFor(st: Mode, a: Archiver): number {
  if (st.uid === a.uid) return (st.mode >> 6) & 7;
  if (a.groups.includes(st.gid)) return (st.mode >> 3) & 7;
  return st.mode & 7;
}

/**
 * Refuse a spool the archiver cannot use: missing, not a directory, not writable (w+x) by it, a
 * parent it cannot enter, or an existing system or timeline directory of this server it cannot
 * write. Nothing is created or changed.
 */
export async function checkSpool(spoolRoot: string, archiver: Archiver | undefined, systemId: string, timeline: number): Promise<void> {
  const who = archiver ? archiver.name : 'the OS user that runs PostgreSQL';
  const owner = archiver ? `${archiver.name}:${archiver.groupName}` : 'postgres:postgres';
  let st;
  try {
    st = await stat(spoolRoot);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new PgbaculaError('IO', `cannot check the WAL spool ${spoolRoot}: ${(e as Error).message}`, { cause: e });
    throw new PgbaculaError('PREREQUISITE', `the WAL spool ${spoolRoot} does not exist: no WAL has reached it, so this job could not be restored to any point after its base backup`, {
      hint:
        `Create it for the archiver (${who}), not for the File Daemon: install -d -o ${archiver?.name ?? 'postgres'} -g ${archiver?.groupName ?? 'postgres'} -m 0750 ${spoolRoot} — ` +
        `and check that archive_command stores there (archive_command = 'pgbacula wal-push --wal-spool ${spoolRoot} %p', or the native helper 'pgbacula-wal-push --wal-spool ${spoolRoot} %p') and that wal_spool in the FileSet names the same directory.`,
    });
  }
  if (!st.isDirectory()) {
    throw new PgbaculaError('PREREQUISITE', `the WAL spool ${spoolRoot} is not a directory`, { hint: 'Point wal_spool (and archive_command\'s --wal-spool) at a directory.' });
  }
  if (!archiver) return;
  const fix = `chown -R ${owner} ${spoolRoot} && chmod 0750 ${spoolRoot}`;
  if ((bitsFor(st, archiver) & 3) !== 3) {
    throw new PgbaculaError('PREREQUISITE', `the WAL spool ${spoolRoot} is not writable by ${archiver.name}, who runs PostgreSQL and its archive_command (owner uid ${st.uid}, gid ${st.gid}, mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}): every wal-push would fail and pg_wal would grow`, {
      hint: `Give the spool to the archiver: ${fix}. The File Daemon (root) reads and prunes it as it is.`,
    });
  }
  for (let d = dirname(spoolRoot); ; d = dirname(d)) {
    const p = await stat(d);
    if ((bitsFor(p, archiver) & 1) !== 1) {
      throw new PgbaculaError('PREREQUISITE', `${archiver.name} (who runs PostgreSQL and its archive_command) cannot enter ${d}, the parent of the WAL spool ${spoolRoot}`, {
        hint: `Let it through (e.g. chmod o+x ${d}) or put the spool elsewhere.`,
      });
    }
    if (d === dirname(d)) break;
  }
  // What the archiver writes into next: this system's directory and its current timeline's.
  for (const d of [join(spoolRoot, systemId), join(spoolRoot, systemId, hex8(timeline))]) {
    let s;
    try {
      s = await lstat(d);
    } catch {
      continue;
    }
    if (!s.isDirectory() || (bitsFor(s, archiver) & 3) !== 3) {
      throw new PgbaculaError('PREREQUISITE', `${d} in the WAL spool is not writable by ${archiver.name}, who runs PostgreSQL and its archive_command (owner uid ${s.uid}): every wal-push would fail and pg_wal would grow`, {
        hint: `Give the spool to the archiver: ${fix}.`,
      });
    }
  }
}

/**
 * Files the job itself had to add where the archiver writes (a timeline history fetched from the
 * server) go to the spool's owner, so that a root FD never leaves the archiver a directory or a
 * file it cannot replace.
 */
export async function giveToSpoolOwner(spoolRoot: string, paths: readonly string[]): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const owner = await stat(spoolRoot);
  for (const p of paths) {
    const s = await lstat(p).catch(() => undefined);
    if (!s || s.isSymbolicLink() || (s.uid === owner.uid && s.gid === owner.gid)) continue;
    await giveTo(p, owner);
  }
}
