/**
 * Scratch directories a job stages data in (directory archives under tmpdir). They hold database
 * contents, so every exit path removes them: the job's own `finally`, and — for a cancel or a
 * signal that ends the process first — `removeAllScratchNow()` from the exit handler.
 */
import { removeTreeSync } from '../os/user-dirs.js';

const dirs = new Set<string>();

export function registerScratch(dir: string): void {
  dirs.add(dir);
}

export function removeScratch(dir: string): void {
  removeTreeSync(dir);
  dirs.delete(dir);
}

/** Synchronous: safe in a process 'exit' handler. */
export function removeAllScratchNow(): void {
  for (const d of dirs) {
    try {
      removeTreeSync(d);
    } catch {
      // best effort on the way out
    }
  }
  dirs.clear();
}

/** Keep a directory after all (it now holds something the user needs): no exit path removes it. */
export function forgetScratch(dir: string): void {
  dirs.delete(dir);
}
