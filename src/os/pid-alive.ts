import { readFileSync } from 'node:fs';

/**
 * Is a process with this pid alive (EPERM: it exists but belongs to someone else)? A zombie is
 * not: a backend killed under the Bacula FD can stay its unreaped child for a while, and
 * kill(pid, 0) still succeeds on it.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..." — the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}
