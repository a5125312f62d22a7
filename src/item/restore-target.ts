/**
 * The reverse of ItemSink: where restored items go (files under a directory, a PostgreSQL
 * server, ...). A restore source (the Bacula FD, a repository) announces each item and asks the
 * target whether it wants it; the target never knows where the items come from.
 */
import type { ItemHeader, ItemTrailer } from './item.js';

export interface RestoreEntry extends ItemHeader {
  /** The name as the source gives it (for the FD: the backed-up name relocated under Where). */
  readonly fname: string;
  /** Path relative to the plugin namespace (`<cluster>/dump/42/app.dump`); undefined when not ours. */
  readonly namespacePath: string | undefined;
}

export type RestoreDecision = 'restore' | 'skip';

export interface RestoreTarget {
  /** Decide for one announced entry and prepare for its data. Throw to fail the entry. */
  begin(entry: RestoreEntry): Promise<RestoreDecision>;
  /** One data record of the current entry, in order. */
  write(chunk: Uint8Array): Promise<void>;
  /** The current entry is complete (after its data, or with no data). Throw to fail it. */
  end(trailer: ItemTrailer): Promise<void>;
  /**
   * Complete work that spans entries (e.g. a directory archive arriving file by file): called
   * before `next` begins (after the previous entry ended), and with undefined before finish().
   * Throw to report a job error.
   */
  settle(next: RestoreEntry | undefined): Promise<void>;
  /** End of the restore stream: last checks and the summary. Throw to report a job error. */
  finish(): Promise<void>;
}
