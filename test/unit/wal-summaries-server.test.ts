/** src/server/wal-summaries.ts against a scripted session: the wait and the refusals, without a server. */
import { describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { awaitSummarizer, listServerSummaries, type SummarySession } from '../../src/server/wal-summaries.js';
import { parseLsn } from '../../src/wal/lsn.js';

type Row = Record<string, unknown>;

/** A session answering each query with the next of `answers` (the last one repeats). */
function scripted(answers: Array<Row[] | Error>): SummarySession & { queries: string[] } {
  const queries: string[] = [];
  const session = {
    queries,
    query: async (sql: string) => {
      queries.push(sql);
      const a = answers.length > 1 ? answers.shift()! : answers[0]!;
      if (a instanceof Error) throw a;
      return { rows: a };
    },
  };
  return session as unknown as SummarySession & { queries: string[] };
}

const state = (tli: number, lsn: string, pid: number | null) => [{ tli: String(tli), lsn, pid }];

describe('listServerSummaries', () => {
  it('sorts the ranges by timeline and start', async () => {
    const s = scripted([
      [
        { tli: '2', start_lsn: '0/9000028', end_lsn: '0/A000028' },
        { tli: '1', start_lsn: '0/5000028', end_lsn: '0/8000028' },
        { tli: '1', start_lsn: '0/1000000', end_lsn: '0/5000028' },
      ],
    ]);
    expect(await listServerSummaries(s)).toEqual([
      { tli: 1, startLsn: parseLsn('0/1000000'), endLsn: parseLsn('0/5000028') },
      { tli: 1, startLsn: parseLsn('0/5000028'), endLsn: parseLsn('0/8000028') },
      { tli: 2, startLsn: parseLsn('0/9000028'), endLsn: parseLsn('0/A000028') },
    ]);
  });

  it('says when the server has no summary functions, and passes other failures on', async () => {
    const missing = Object.assign(new Error('function pg_available_wal_summaries() does not exist'), { code: '42883' });
    const e = await listServerSummaries(scripted([missing])).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PgbaculaError);
    expect(e).toMatchObject({ code: 'PREREQUISITE', message: 'the server has no WAL summaries (pg_available_wal_summaries() does not exist)' });
    expect((e as PgbaculaError).hint).toContain('17 or later with summarize_wal = on');
    const other = Object.assign(new Error('permission denied'), { code: '42501' });
    await expect(listServerSummaries(scripted([other]))).rejects.toMatchObject({ code: 'PROTOCOL', message: 'pg_available_wal_summaries() failed: permission denied' });
  });
});

describe('awaitSummarizer', () => {
  it('polls until the summarizer reaches the LSN on the timeline', async () => {
    const s = scripted([state(1, '0/4000000', 99), state(1, '0/5000000', 99), state(1, '0/6000028', 99)]);
    const r = await awaitSummarizer(s, 1, parseLsn('0/6000028'), { timeoutMs: 60_000 });
    expect(r).toEqual({ reached: true, summarizedLsn: parseLsn('0/6000028'), running: true });
    expect(s.queries.length).toBe(3);
  });

  it('counts a summarizer on a later timeline as done with this one', async () => {
    const r = await awaitSummarizer(scripted([state(2, '0/1000', 99)]), 1, parseLsn('0/6000028'), { timeoutMs: 60_000 });
    expect(r.reached).toBe(true);
  });

  it('returns at once when no summarizer runs, and at the deadline when it does not get there', async () => {
    const off = scripted([state(1, '0/0', null)]);
    expect(await awaitSummarizer(off, 1, parseLsn('0/6000028'), { timeoutMs: 60_000 })).toEqual({ reached: false, summarizedLsn: 0n, running: false });
    expect(off.queries.length).toBe(1);
    const stuck = scripted([state(1, '0/5000000', 99)]);
    expect(await awaitSummarizer(stuck, 1, parseLsn('0/6000028'), { timeoutMs: 300 })).toEqual({ reached: false, summarizedLsn: parseLsn('0/5000000'), running: true });
    expect(stuck.queries.length).toBeGreaterThan(1);
  });

  it('stops with CANCELLED when the job is canceled', async () => {
    const stuck = scripted([state(1, '0/5000000', 99)]);
    const ac = new AbortController();
    const waiting = awaitSummarizer(stuck, 1, parseLsn('0/6000028'), { timeoutMs: 600_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED', message: 'the job was canceled while waiting for WAL summarization through 0/6000028' });
  });
});
