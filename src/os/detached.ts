/**
 * A process that outlives the one starting it (mode cdp's optional receiver start): its own
 * session, no pipes back to us, stdout and stderr appended to a log file opened here (never
 * through a link).
 */
import { spawn } from 'node:child_process';
import { closeSync, constants as fsc, openSync } from 'node:fs';

export interface DetachedOptions {
  readonly uid?: number;
  readonly gid?: number;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  /** Appended to (created 0640 when missing). */
  readonly logPath: string;
}

/** Start `file args` detached; returns its pid (the process is not waited for). */
export function spawnDetached(file: string, args: readonly string[], o: DetachedOptions): number {
  const fd = openSync(o.logPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_APPEND | fsc.O_NOFOLLOW, 0o640);
  try {
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: o.cwd,
      env: { ...o.env },
      ...(o.uid !== undefined && o.gid !== undefined ? { uid: o.uid, gid: o.gid } : {}),
    });
    child.on('error', () => undefined);
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${file}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}
