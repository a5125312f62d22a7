/**
 * The mode registry: each backup mode's entry (src/command/mode-entry.ts says what an entry
 * answers). Adding a mode is a folder under src/modes/ (the source of its items), one entry here,
 * and its rows in src/config/schema.ts; the Bacula job (src/command/bacula/plugin-job.ts) only
 * asks the entry.
 */
import type { ModeEntry } from './mode-entry.js';
import { DUMP_ENTRY, PARALLEL_DUMP_ENTRY } from './modes/dump.js';
import { PITR_ENTRY } from './modes/pitr.js';
import { PITR_BLOCK_ENTRY } from './modes/pitr_block.js';
import { CDP_ENTRY } from './modes/cdp.js';

const MODES: readonly ModeEntry[] = [DUMP_ENTRY, PARALLEL_DUMP_ENTRY, PITR_ENTRY, PITR_BLOCK_ENTRY as ModeEntry, CDP_ENTRY as ModeEntry];

/** The modes a Bacula FileSet can name in this version, for messages. */
export const MODES_HINT = 'Use mode=pitr (base backups + WAL, point-in-time restore), mode=pitr_block (the same with block-level Incrementals), mode=cdp (pitr fed by a running wal-receive, its open segment shipped by every job) or mode=dump / parallel_dump in the FileSet.';

export function modeEntry(name: string): ModeEntry | undefined {
  return MODES.find((m) => m.name === name);
}

/**
 * The restore_mode that restores a mode's backups. A mode without an entry (not available in this
 * version) counts as a dump here, so that its refusal names the mode rather than restore_mode.
 */
export function restoreModeOf(name: string): 'dump' | 'pitr' | 'pitr_block' {
  return modeEntry(name)?.restoreMode ?? 'dump';
}
