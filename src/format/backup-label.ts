/**
 * The backup_label a block-level backup keeps inside its data directory for PostgreSQL's
 * pg_combinebackup (docs/block-incremental.md): the server's label, and for an incremental or
 * differential backup the two lines pg_combinebackup checks the chain with — the start LSN and
 * timeline of the backup it was taken against, in the form PostgreSQL 17 writes them. Pure text.
 */
import { PgbaculaError } from '../errors.js';

/** The backup an incremental label counts from. */
export interface LabelReference {
  /** As the server printed it (`%X/%X`): pg_combinebackup compares it with that backup's START WAL LOCATION. */
  readonly startLsn: string;
  readonly timeline: number;
}

const LSN_TEXT = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;

export function combinableLabel(serverLabel: string, reference?: LabelReference): string {
  // The server's label ends with a newline; pg_combinebackup reads whole lines only.
  const label = serverLabel.endsWith('\n') ? serverLabel : `${serverLabel}\n`;
  if (!reference) return label;
  if (!LSN_TEXT.test(reference.startLsn) || !Number.isSafeInteger(reference.timeline) || reference.timeline < 1) {
    // The reference comes from a manifest of the repository.
    throw new PgbaculaError('REPOSITORY', `the reference backup starts at ${JSON.stringify(reference.startLsn)} on timeline ${String(reference.timeline)}, which is not an LSN and a timeline`, {
      hint: 'Run pgbacula verify --repo; take a full backup.',
    });
  }
  return `${label}INCREMENTAL FROM LSN: ${reference.startLsn.toUpperCase()}\nINCREMENTAL FROM TLI: ${reference.timeline}\n`;
}
