import { describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/wal/lsn.js';
import { parseSummaryFileName, summaryCoverage, summaryFileName, type SummaryRange } from '../../src/wal/summary-coverage.js';

const r = (tli: number, start: string, end: string): SummaryRange => ({ tli, startLsn: parseLsn(start), endLsn: parseLsn(end) });
const L = parseLsn;

describe('summary file names', () => {
  it('are the timeline, start and end as five 8-digit upper-case hex numbers', () => {
    const range = r(1, '0/5000028', '0/8000028');
    expect(summaryFileName(range)).toBe('0000000100000000050000280000000008000028.summary');
    expect(summaryFileName(r(0x1a, 'AB/CDEF0123', '1FF/28'))).toBe('0000001A000000ABCDEF0123000001FF00000028.summary');
    expect(parseSummaryFileName(summaryFileName(range))).toEqual(range);
    expect(parseSummaryFileName('temp.summary')).toBeUndefined();
    expect(parseSummaryFileName('0000000100000000050000280000000008000028.summary.tmp')).toBeUndefined();
    expect(parseSummaryFileName('000000010000000005000028000000000800002.summary')).toBeUndefined();
  });
});

describe('summaryCoverage', () => {
  const ranges = [r(2, '0/9000028', '0/A000028'), r(1, '0/5000028', '0/8000028'), r(1, '0/1000000', '0/5000028'), r(1, '0/8000028', '0/9000000'), r(2, '0/B000028', '0/C000028')];

  it('takes the contiguous summaries of the timeline, in LSN order, whole', () => {
    expect(summaryCoverage(ranges, 1, L('0/5000028'), L('0/8000028'))).toEqual({ ok: true, use: [r(1, '0/5000028', '0/8000028')] });
    expect(summaryCoverage(ranges, 1, L('0/4000000'), L('0/8500000'))).toEqual({
      ok: true,
      use: [r(1, '0/1000000', '0/5000028'), r(1, '0/5000028', '0/8000028'), r(1, '0/8000028', '0/9000000')],
    });
    expect(summaryCoverage(ranges, 2, L('0/9000028'), L('0/9000029'))).toEqual({ ok: true, use: [r(2, '0/9000028', '0/A000028')] });
    expect(summaryCoverage(ranges, 1, L('0/7000000'), L('0/7000000'))).toEqual({ ok: true, use: [] });
  });

  it('says why not: no summaries for the timeline, a gap, the end, the start', () => {
    expect(summaryCoverage(ranges, 3, L('0/1'), L('0/2'))).toEqual({ ok: false, reason: 'there are no WAL summaries of timeline 3' });
    expect(summaryCoverage(ranges, 2, L('0/9000028'), L('0/B500000'))).toEqual({ ok: false, reason: 'the WAL summaries of timeline 2 have a gap from 0/A000028 to 0/B000028' });
    expect(summaryCoverage(ranges, 1, L('0/5000028'), L('0/9000001'))).toEqual({ ok: false, reason: 'the WAL summaries of timeline 1 end at 0/9000000, before 0/9000001' });
    expect(summaryCoverage(ranges, 2, L('0/8000000'), L('0/9500000'))).toEqual({ ok: false, reason: 'the WAL summaries of timeline 2 start at 0/9000028, after 0/8000000' });
  });

  it('where summaries overlap, takes the one reaching furthest', () => {
    const overlapping = [r(1, '0/100', '0/200'), r(1, '0/100', '0/400'), r(1, '0/300', '0/500'), r(1, '0/500', '0/600')];
    expect(summaryCoverage(overlapping, 1, L('0/150'), L('0/550'))).toEqual({
      ok: true,
      use: [r(1, '0/100', '0/400'), r(1, '0/300', '0/500'), r(1, '0/500', '0/600')],
    });
  });
});
