import { describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { parseLsn } from '../../src/wal/lsn.js';
import {
  appendTimelineHistory,
  formatTimelineHistory,
  isInLineage,
  parseTimelineHistory,
  switchPointOf,
  timelineOfLsn,
  timelineSpans,
} from '../../src/wal/timeline-history.js';

// What the server writes (17 writeTimeLineHistory): TLI 2 after a plain promotion, TLI 3 after
// promoting again, TLI 4 after a time-targeted PITR on TLI 3 (that reason ends with its own LF).
const TLI2 = '1\t0/3000158\tno recovery target specified\n';
const TLI3 = `${TLI2}\n2\t0/5000060\tno recovery target specified\n`;
const TLI4 = `${TLI3}\n3\t0/22000198\tbefore 2026-11-24 23:43:13.74387+00\n\n`;

describe('timeline history files', () => {
  it('parses the server format, skipping the empty lines it writes', () => {
    expect(parseTimelineHistory(TLI4, 4)).toEqual([
      { parentTimeline: 1, switchLsn: parseLsn('0/3000158'), reason: 'no recovery target specified' },
      { parentTimeline: 2, switchLsn: parseLsn('0/5000060'), reason: 'no recovery target specified' },
      { parentTimeline: 3, switchLsn: parseLsn('0/22000198'), reason: 'before 2026-11-24 23:43:13.74387+00' },
    ]);
  });

  it('formats byte-identically to the server by appending to the parent file', () => {
    expect(appendTimelineHistory(undefined, 1, parseLsn('0/3000158'), 'no recovery target specified')).toBe(TLI2);
    expect(appendTimelineHistory(TLI2, 2, parseLsn('0/5000060'), 'no recovery target specified')).toBe(TLI3);
    expect(appendTimelineHistory(TLI3, 3, parseLsn('0/22000198'), 'before 2026-11-24 23:43:13.74387+00\n')).toBe(TLI4);
  });

  it('round-trips parse → format → parse, and byte-for-byte for plain promotions', () => {
    expect(formatTimelineHistory(parseTimelineHistory(TLI3, 3))).toBe(TLI3);
    const again = parseTimelineHistory(formatTimelineHistory(parseTimelineHistory(TLI4, 4)), 4);
    expect(again).toEqual(parseTimelineHistory(TLI4, 4));
    expect(formatTimelineHistory([])).toBe('');
  });

  it('accepts bytes, comments, leading blanks and lower-case hex as the server does', () => {
    const text = '# comment\n   1\t0/3000158\tno recovery target specified\n\n  \n2 0/5a00060 at restore point "x"\n';
    expect(parseTimelineHistory(Buffer.from(text, 'latin1'), 3)).toEqual([
      { parentTimeline: 1, switchLsn: parseLsn('0/3000158'), reason: 'no recovery target specified' },
      { parentTimeline: 2, switchLsn: parseLsn('0/5A00060'), reason: 'at restore point "x"' },
    ]);
  });

  it('keeps non-ASCII reason bytes (restore point names) intact through latin1', () => {
    const bytes = Buffer.concat([Buffer.from('1\t0/3000158\tat restore point "'), Buffer.from('café', 'utf8'), Buffer.from('"\n')]);
    const [e] = parseTimelineHistory(bytes, 2);
    expect(Buffer.from(formatTimelineHistory([e!]), 'latin1').equals(bytes)).toBe(true);
  });

  it('refuses malformed files like the server', () => {
    const bad = [
      'x\t0/1\treason\n', // no numeric timeline
      '1\treason\n', // no switch point
      '1\t0/1\ta\n1\t0/2\tb\n', // not increasing
      '2\t0/1\ta\n1\t0/2\tb\n',
    ];
    for (const t of bad) expect(() => parseTimelineHistory(t, 5), t).toThrow(PgbaculaError);
    expect(() => parseTimelineHistory(TLI3, 2)).toThrow(/not lower than the file's own timeline/);
    try {
      parseTimelineHistory('1\treason\n', 2);
    } catch (e) {
      expect((e as PgbaculaError).code).toBe('WAL_CONFLICT');
      expect((e as PgbaculaError).message).toContain('timeline history file of timeline 2');
    }
  });

  it('answers lineage questions', () => {
    const h = parseTimelineHistory(TLI4, 4);
    expect(timelineSpans(h, 4)).toEqual([
      { timeline: 1, begin: 0n, end: parseLsn('0/3000158') },
      { timeline: 2, begin: parseLsn('0/3000158'), end: parseLsn('0/5000060') },
      { timeline: 3, begin: parseLsn('0/5000060'), end: parseLsn('0/22000198') },
      { timeline: 4, begin: parseLsn('0/22000198'), end: undefined },
    ]);
    expect(timelineOfLsn(h, 4, parseLsn('0/3000157'))).toBe(1);
    expect(timelineOfLsn(h, 4, parseLsn('0/3000158'))).toBe(2);
    expect(timelineOfLsn(h, 4, parseLsn('0/30000000'))).toBe(4);
    expect(switchPointOf(h, 2)).toBe(parseLsn('0/5000060'));
    expect(switchPointOf(h, 4)).toBeUndefined();
    expect(isInLineage(h, 4, 3)).toBe(true);
    expect(isInLineage(h, 4, 5)).toBe(false);
  });
});
