/**
 * Which of the server's WAL summaries (PostgreSQL 17+, `pg_wal/summaries/`) cover an LSN range,
 * and how their files are named (docs/block-incremental.md, "Where the changed blocks come
 * from"). A summary covers `[start, end)` of one timeline; the summarizer closes one at every
 * checkpoint's redo point, so the summaries of a timeline follow each other without a gap unless
 * the summarizer was off or skipped WAL written with `wal_level = minimal`.
 *
 * Pure: values in, values out.
 */
import { formatLsn, type Lsn } from './lsn.js';

export interface SummaryRange {
  readonly tli: number;
  readonly startLsn: Lsn;
  readonly endLsn: Lsn;
}

export type SummaryCoverage = { readonly ok: true; readonly use: SummaryRange[] } | { readonly ok: false; readonly reason: string };

function hex8(v: bigint | number): string {
  return v.toString(16).toUpperCase().padStart(8, '0');
}

/** `%08X%08X%08X%08X%08X.summary`: timeline, start LSN high and low, end LSN high and low. */
export function summaryFileName(r: SummaryRange): string {
  const hiLo = (lsn: Lsn) => hex8(lsn >> 32n) + hex8(lsn & 0xffff_ffffn);
  return `${hex8(r.tli)}${hiLo(r.startLsn)}${hiLo(r.endLsn)}.summary`;
}

/** The range a summary file name stands for, or undefined for any other name (`temp.summary`). */
export function parseSummaryFileName(name: string): SummaryRange | undefined {
  const m = /^([0-9A-F]{8})([0-9A-F]{16})([0-9A-F]{16})\.summary$/.exec(name);
  if (!m) return undefined;
  return { tli: parseInt(m[1]!, 16), startLsn: BigInt(`0x${m[2]!}`), endLsn: BigInt(`0x${m[3]!}`) };
}

export function compareSummaryRanges(a: SummaryRange, b: SummaryRange): number {
  return a.tli - b.tli || (a.startLsn < b.startLsn ? -1 : a.startLsn > b.startLsn ? 1 : 0) || (a.endLsn < b.endLsn ? -1 : a.endLsn > b.endLsn ? 1 : 0);
}

/**
 * The summaries of timeline `tli` that together cover `[from, to)` without a gap, in LSN order,
 * or why there are none. Summaries reaching before `from` or past `to` are used whole: their
 * extra blocks and limits only make the backup store more than strictly needed, never less.
 * Where summaries overlap, the one reaching furthest is taken.
 */
export function summaryCoverage(ranges: readonly SummaryRange[], tli: number, from: Lsn, to: Lsn): SummaryCoverage {
  if (to <= from) return { ok: true, use: [] };
  const mine = ranges.filter((r) => r.tli === tli && r.endLsn > r.startLsn).sort(compareSummaryRanges);
  const what = `WAL summaries of timeline ${tli}`;
  if (mine.length === 0) return { ok: false, reason: `there are no ${what}` };
  const use: SummaryRange[] = [];
  let cursor = from;
  while (cursor < to) {
    let best: SummaryRange | undefined;
    for (const r of mine) if (r.startLsn <= cursor && r.endLsn > cursor && (best === undefined || r.endLsn > best.endLsn)) best = r;
    if (best === undefined) {
      const next = mine.find((r) => r.startLsn > cursor);
      const last = mine[mine.length - 1]!;
      if (next === undefined) {
        const reach = mine.reduce((m, r) => (r.endLsn > m ? r.endLsn : m), last.endLsn);
        return { ok: false, reason: `the ${what} end at ${formatLsn(reach)}, before ${formatLsn(to)}` };
      }
      if (cursor === from && mine.every((r) => r.startLsn > from)) {
        return { ok: false, reason: `the ${what} start at ${formatLsn(next.startLsn)}, after ${formatLsn(from)}` };
      }
      return { ok: false, reason: `the ${what} have a gap from ${formatLsn(cursor)} to ${formatLsn(next.startLsn)}` };
    }
    use.push(best);
    cursor = best.endLsn;
  }
  return { ok: true, use };
}
