import { describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import {
  compareLsn,
  formatLsn,
  INVALID_LSN,
  lsnAdd,
  lsnDiff,
  lsnFromParts,
  MAX_LSN,
  maxLsn,
  minLsn,
  parseLsn,
  tryParseLsn,
  walPageOffset,
  walPageStart,
} from '../../src/wal/lsn.js';

describe('LSN text form', () => {
  it('parses %X/%X into a bigint', () => {
    expect(parseLsn('0/16B3F48')).toBe(0x16b3f48n);
    expect(parseLsn('0/0')).toBe(INVALID_LSN);
    expect(parseLsn('2A/8C0010F0')).toBe(0x2a_8c0010f0n);
    expect(parseLsn('2a/8c0010f0')).toBe(0x2a_8c0010f0n);
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe(MAX_LSN);
    expect(parseLsn(' 1/0 ')).toBe(1n << 32n);
  });

  it('keeps precision above 2^53 (never a JS number)', () => {
    const lsn = parseLsn('FFFFFFFF/FFFFFFFE');
    expect(lsn).toBe(0xffff_ffff_ffff_fffen);
    expect(formatLsn(lsn + 1n)).toBe('FFFFFFFF/FFFFFFFF');
    expect(Number(lsn) === Number(lsn + 1n)).toBe(true); // what a number would have lost
  });

  it('formats upper-case without padding', () => {
    expect(formatLsn(0x16b3f48n)).toBe('0/16B3F48');
    expect(formatLsn(0n)).toBe('0/0');
    expect(formatLsn(0x2a_8c0010f0n)).toBe('2A/8C0010F0');
    expect(formatLsn(1n << 32n)).toBe('1/0');
  });

  it('round-trips', () => {
    for (const t of ['0/1F000110', '2A/8C0010F0', '1/0', 'ABCDEF01/2345678', '0/1']) expect(formatLsn(parseLsn(t))).toBe(t);
  });

  it('refuses malformed text with a PARAM_INVALID error naming it', () => {
    for (const bad of ['', '0', '0/', '/0', '0/1/2', '123456789/0', '0/123456789', 'G/0', '0x1/0', '-1/0']) {
      expect(tryParseLsn(bad), bad).toBeUndefined();
      expect(() => parseLsn(bad), bad).toThrow(PgbaculaError);
    }
    try {
      parseLsn('nope', 'stop LSN');
    } catch (e) {
      expect((e as PgbaculaError).code).toBe('PARAM_INVALID');
      expect((e as PgbaculaError).message).toBe('invalid stop LSN "nope"');
    }
  });

  it('refuses to format values outside 64 bits', () => {
    expect(() => formatLsn(-1n)).toThrow(PgbaculaError);
    expect(() => formatLsn(MAX_LSN + 1n)).toThrow(PgbaculaError);
  });
});

describe('LSN arithmetic', () => {
  it('compares, adds and subtracts', () => {
    expect(compareLsn(1n, 2n)).toBe(-1);
    expect(compareLsn(2n, 2n)).toBe(0);
    expect(compareLsn(3n, 2n)).toBe(1);
    expect(lsnAdd(parseLsn('0/FFFFFFFF'), 1)).toBe(parseLsn('1/0'));
    expect(lsnDiff(parseLsn('1/0'), parseLsn('0/FFFFFFFF'))).toBe(1n);
    expect(lsnDiff(parseLsn('0/0'), parseLsn('0/10'))).toBe(-16n);
    expect(() => lsnAdd(MAX_LSN, 1)).toThrow(PgbaculaError);
    expect(maxLsn(3n, 9n, 1n)).toBe(9n);
    expect(minLsn(3n, 9n, 1n)).toBe(1n);
    expect(lsnFromParts(0x2a, 0x8c0010f0)).toBe(0x2a_8c0010f0n);
    expect(lsnFromParts(0xffffffff, 0xffffffff)).toBe(MAX_LSN);
  });

  it('finds the WAL page of a position', () => {
    expect(walPageStart(parseLsn('0/1F000110'))).toBe(parseLsn('0/1F000000'));
    expect(walPageStart(parseLsn('0/1F002001'))).toBe(parseLsn('0/1F002000'));
    expect(walPageOffset(parseLsn('0/1F002001'))).toBe(1);
    expect(walPageStart(parseLsn('0/1F002001'), 4096)).toBe(parseLsn('0/1F002000'));
  });
});
