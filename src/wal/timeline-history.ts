/**
 * Timeline history files (`%08X.history`).
 *
 * The file for timeline N holds its whole ancestry: one line per ancestor,
 * `<parent TLI decimal> TAB <switch LSN %X/%X> TAB <reason> LF`, meaning "timeline p ended at L
 * and the next timeline of this lineage started there". The server writes a new file by copying
 * the parent's file verbatim and appending one line, preceded by an extra LF when a parent file
 * existed (17 `writeTimeLineHistory`); some reasons end with their own LF. So real files contain
 * empty lines, which parsing ignores (17 `readTimeLineHistory`).
 *
 * Pure: text in, values out.
 */
import { PgbaculaError } from '../errors.js';
import { formatLsn, lsnFromParts, type Lsn } from './lsn.js';
import { assertTimeline } from './segment.js';

export interface TimelineHistoryEntry {
  /** The ancestor timeline that ended. */
  readonly parentTimeline: number;
  /** Where it ended: the first byte of the next timeline in this lineage. */
  readonly switchLsn: Lsn;
  /** Free text after the LSN (the server ignores it). */
  readonly reason: string;
}

/** One timeline and the range of WAL positions it owns in a lineage; `end` undefined = open. */
export interface TimelineSpan {
  readonly timeline: number;
  readonly begin: Lsn;
  readonly end: Lsn | undefined;
}

function historyError(message: string, fileTimeline: number | undefined): PgbaculaError {
  const file = fileTimeline === undefined ? 'timeline history file' : `timeline history file of timeline ${fileTimeline}`;
  return new PgbaculaError('WAL_CONFLICT', `${message} in ${file}`, {
    hint: 'The file is damaged or is not a PostgreSQL history file; fetch it again from the server (TIMELINE_HISTORY) or the archive.',
  });
}

/**
 * Parse a history file as the server does: for each line skip leading white space, ignore it
 * when empty or starting with `#`, read `%u <ws> %X/%X`, ignore the rest. Timelines must be
 * strictly increasing and (when fileTimeline is given) lower than the file's own timeline.
 */
export function parseTimelineHistory(content: string | Uint8Array, fileTimeline?: number): TimelineHistoryEntry[] {
  const text = typeof content === 'string' ? content : Buffer.from(content).toString('latin1');
  const entries: TimelineHistoryEntry[] = [];
  let last = 0;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/^[ \t\r\f\v]+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\d+)(?:[ \t\r\f\v]+([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8}))?/.exec(line);
    if (!m) throw historyError(`syntax error (expected a numeric timeline ID) in line "${rawLine}"`, fileTimeline);
    if (m[2] === undefined || m[3] === undefined) {
      throw historyError(`syntax error (expected a write-ahead log switchpoint location) in line "${rawLine}"`, fileTimeline);
    }
    const tli = Number(m[1]);
    if (!Number.isSafeInteger(tli) || tli < 1 || tli > 0xffff_ffff) throw historyError(`invalid timeline ${m[1]!}`, fileTimeline);
    if (tli <= last) throw historyError(`timeline IDs not in increasing sequence (${tli} after ${last})`, fileTimeline);
    const rest = line.slice(m[0].length).replace(/^[ \t]/, '').replace(/\r$/, '');
    entries.push({ parentTimeline: tli, switchLsn: lsnFromParts(parseInt(m[2], 16), parseInt(m[3], 16)), reason: rest });
    last = tli;
  }
  if (fileTimeline !== undefined && last >= fileTimeline) {
    throw historyError(`timeline ${last} is not lower than the file's own timeline ${fileTimeline}`, fileTimeline);
  }
  return entries;
}

/**
 * The file the server writes when timeline `parentTimeline` ends at switchLsn: the parent's
 * file verbatim (none for timeline 1), an LF if there was one, then the new line.
 */
export function appendTimelineHistory(parentContent: string | undefined, parentTimeline: number, switchLsn: Lsn, reason: string): string {
  assertTimeline(parentTimeline);
  const sep = parentContent === undefined ? '' : '\n';
  return `${parentContent ?? ''}${sep}${parentTimeline}\t${formatLsn(switchLsn)}\t${reason}\n`;
}

/**
 * Format entries the way a chain of promotions writes them (each line appended by
 * appendTimelineHistory). Byte-identical to the server's file when every reason is given as the
 * server wrote it (time- and LSN-targeted reasons end with their own "\n").
 */
export function formatTimelineHistory(entries: readonly TimelineHistoryEntry[]): string {
  let content: string | undefined;
  for (const e of entries) content = appendTimelineHistory(content, e.parentTimeline, e.switchLsn, e.reason);
  return content ?? '';
}

/**
 * The timelines of the lineage described by the history of `timeline`, oldest first, each with
 * the WAL range it owns. The last span (timeline itself) is open-ended.
 */
export function timelineSpans(entries: readonly TimelineHistoryEntry[], timeline: number): TimelineSpan[] {
  const spans: TimelineSpan[] = [];
  let begin: Lsn = 0n;
  for (const e of entries) {
    spans.push({ timeline: e.parentTimeline, begin, end: e.switchLsn });
    begin = e.switchLsn;
  }
  spans.push({ timeline, begin, end: undefined });
  return spans;
}

/**
 * Which timeline of the lineage holds the WAL byte at lsn (the server's tliOfPointInHistory):
 * the first timeline whose switch point is after lsn.
 */
export function timelineOfLsn(entries: readonly TimelineHistoryEntry[], timeline: number, lsn: Lsn): number {
  for (const e of entries) if (lsn < e.switchLsn) return e.parentTimeline;
  return timeline;
}

/** Where `ancestor` ended in this lineage (undefined: it is the file's own, open timeline). */
export function switchPointOf(entries: readonly TimelineHistoryEntry[], ancestor: number): Lsn | undefined {
  return entries.find((e) => e.parentTimeline === ancestor)?.switchLsn;
}

/** Whether `candidate` is timeline itself or one of its ancestors. */
export function isInLineage(entries: readonly TimelineHistoryEntry[], timeline: number, candidate: number): boolean {
  return candidate === timeline || entries.some((e) => e.parentTimeline === candidate);
}
