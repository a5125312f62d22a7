import { move, transferableSymbol, valueSymbol } from 'piscina';
import { listDir, type WalkDirTask } from './list-dir.js';

export { KINDS, walkedEntryAt, type EntryKind, type WalkDirTask, type WalkedDir } from './list-dir.js';

/** The worker task: listDir, its columns' buffers moved (not copied) to the main thread. */
export function walkDir(task: WalkDirTask): unknown {
  const d = listDir(task);
  return move({ [transferableSymbol]: [d.kinds.buffer, d.sizes.buffer, d.modes.buffer, d.mtimes.buffer], [valueSymbol]: d });
}
