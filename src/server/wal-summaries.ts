/**
 * The server's own WAL summaries (PostgreSQL 17+ with `summarize_wal = on`), the first source
 * of changed blocks for mode `pitr_block` (docs/block-incremental.md): which summaries exist, the
 * wait for the summarizer, and the merge of the summary files of a range into one block
 * reference table.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { PgbaculaError } from '../errors.js';
import { BlockRefTable, BlockRefTableError, parseBlockRefTable } from '../format/block-ref-table.js';
import { SUPPORTED_MAJORS, versionFacts } from '../pg/versions.js';
import { formatLsn, parseLsn, type Lsn } from '../wal/lsn.js';
import { compareSummaryRanges, summaryFileName, type SummaryRange } from '../wal/summary-coverage.js';

export { summaryCoverage, summaryFileName, type SummaryCoverage, type SummaryRange } from '../wal/summary-coverage.js';

/** What the functions here need of a session. */
export type SummarySession = Pick<pg.Client, 'query'>;

const FIRST_MAJOR_WITH_SUMMARIES = SUPPORTED_MAJORS.find((m) => versionFacts(m).walSummaries);

/** The directory of the summary files, relative to the data directory. */
export const SUMMARY_DIRECTORY = join('pg_wal', 'summaries');

/** A query of a summary function, with "this server has none" told apart from other failures. */
async function summaryQuery<T extends Record<string, unknown>>(session: SummarySession, sql: string, fn: string): Promise<T[]> {
  try {
    return (await session.query<T>(sql)).rows;
  } catch (e) {
    // 42883 undefined_function: a server before WAL summaries.
    if ((e as { code?: string }).code === '42883') {
      throw new PgbaculaError('PREREQUISITE', `the server has no WAL summaries (${fn} does not exist)`, {
        hint: `WAL summaries need PostgreSQL ${FIRST_MAJOR_WITH_SUMMARIES} or later with summarize_wal = on.`,
        cause: e,
      });
    }
    throw new PgbaculaError('PROTOCOL', `${fn} failed: ${(e as Error).message}`, { cause: e });
  }
}

/** pg_available_wal_summaries(), sorted by tli, start. */
export async function listServerSummaries(session: SummarySession): Promise<SummaryRange[]> {
  const rows = await summaryQuery<{ tli: string; start_lsn: string; end_lsn: string }>(
    session,
    'SELECT tli::text AS tli, start_lsn::text AS start_lsn, end_lsn::text AS end_lsn FROM pg_available_wal_summaries()',
    'pg_available_wal_summaries()',
  );
  return rows.map((r) => ({ tli: Number(r.tli), startLsn: parseLsn(r.start_lsn), endLsn: parseLsn(r.end_lsn) })).sort(compareSummaryRanges);
}

export interface SummarizerState {
  /** Summaries are on disk up to `summarizedLsn` of the awaited timeline (or it moved past that timeline). */
  readonly reached: boolean;
  readonly summarizedLsn: Lsn;
  /** The summarizer process runs (summarize_wal = on). */
  readonly running: boolean;
}

const POLL_MS = 200;

/**
 * pg_get_wal_summarizer_state(): wait (polling, bounded by timeoutMs, abortable) until
 * summarized_lsn >= lsn on that timeline.
 *
 * The summarizer writes a summary only when it reaches a checkpoint's redo point, so `lsn`
 * should be one (a backup's start LSN is). A summarizer already on a later timeline has
 * summarized all it ever will of this one: that counts as reached, and the summaries listed
 * say whether they cover the range. Returns at once when no summarizer runs.
 */
export async function awaitSummarizer(session: SummarySession, tli: number, lsn: Lsn, o: { timeoutMs: number; signal?: AbortSignal }): Promise<SummarizerState> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    if (o.signal?.aborted) throw new PgbaculaError('CANCELLED', `the job was canceled while waiting for WAL summarization through ${formatLsn(lsn)}`);
    const row = (
      await summaryQuery<{ tli: string; lsn: string; pid: number | null }>(
        session,
        'SELECT summarized_tli::text AS tli, summarized_lsn::text AS lsn, summarizer_pid AS pid FROM pg_get_wal_summarizer_state()',
        'pg_get_wal_summarizer_state()',
      )
    )[0];
    if (!row) throw new PgbaculaError('PROTOCOL', 'pg_get_wal_summarizer_state() returned no row');
    const summarizedTli = Number(row.tli);
    const summarizedLsn = parseLsn(row.lsn);
    const running = row.pid !== null;
    const reached = summarizedTli > tli || (summarizedTli === tli && summarizedLsn >= lsn);
    if (reached || !running || Date.now() >= deadline) return { reached, summarizedLsn, running };
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())), o.signal);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Read <pgdata>/pg_wal/summaries/<name>.summary for each range and merge them in LSN order:
 * a later summary's limit then forgets the earlier blocks it truncated away, so the table is
 * exact for the whole span (PostgreSQL's own merge takes directory order and may keep more).
 */
export async function readServerSummaries(pgdata: string, use: readonly SummaryRange[]): Promise<BlockRefTable> {
  let table: BlockRefTable | undefined;
  for (const r of [...use].sort(compareSummaryRanges)) {
    const path = join(pgdata, SUMMARY_DIRECTORY, summaryFileName(r));
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new PgbaculaError('IO', `cannot read WAL summary ${path}: ${(e as Error).message}`, {
        hint:
          code === 'ENOENT'
            ? 'The server removed it after listing it (wal_summary_keep_time) or the data directory is not this server\'s; run the backup again.'
            : 'The summaries are read from the data directory: run pgbacula on the database host as an OS user that can read it.',
        cause: e,
      });
    }
    let part: BlockRefTable;
    try {
      part = parseBlockRefTable(bytes, `WAL summary ${path}`);
    } catch (e) {
      if (!(e instanceof BlockRefTableError)) throw e;
      throw new PgbaculaError('WAL_DAMAGED', e.message, { hint: 'The server wrote a summary pgbacula cannot read; the changed blocks have to come from the WAL instead.', cause: e });
    }
    if (table === undefined) table = part;
    else table.merge(part);
  }
  return table ?? new BlockRefTable();
}
