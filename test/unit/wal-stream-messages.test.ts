import { describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { encodeStandbyStatus, parseServerCopyMessage, pgTimestampNow, PG_EPOCH_OFFSET_US } from '../../src/server/wal-stream.js';
import { parseSizeSetting, startReplicationCommand } from '../../src/server/replication.js';
import { parseLsn } from '../../src/wal/lsn.js';

describe('replication CopyData messages', () => {
  it('decodes XLogData (big-endian header, WAL bytes after 25 bytes)', () => {
    const b = Buffer.alloc(25 + 3);
    b.write('w', 0, 'latin1');
    b.writeBigUInt64BE(parseLsn('2A/8C000000'), 1);
    b.writeBigUInt64BE(parseLsn('2A/8D000000'), 9);
    b.writeBigInt64BE(123456789n, 17);
    b.set([1, 2, 3], 25);
    const m = parseServerCopyMessage(b);
    expect(m).toMatchObject({ type: 'xlogdata', dataStart: parseLsn('2A/8C000000'), walEnd: parseLsn('2A/8D000000'), sendTime: 123456789n });
    expect(m.type === 'xlogdata' && [...m.data]).toEqual([1, 2, 3]);
  });

  it('decodes keepalives with and without a reply request', () => {
    const k = Buffer.alloc(18);
    k.write('k', 0, 'latin1');
    k.writeBigUInt64BE(0x1f000110n, 1);
    k.writeBigInt64BE(-5n, 9);
    k[17] = 1;
    expect(parseServerCopyMessage(k)).toEqual({ type: 'keepalive', walEnd: 0x1f000110n, sendTime: -5n, replyRequested: true });
    k[17] = 0;
    expect(parseServerCopyMessage(k)).toMatchObject({ replyRequested: false });
  });

  it('refuses unknown or short messages as protocol errors', () => {
    for (const b of [Buffer.from('x'), Buffer.alloc(0), Buffer.from('k123'), Buffer.alloc(24, 'w')]) {
      try {
        parseServerCopyMessage(b);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(PgbaculaError);
        expect((e as PgbaculaError).code).toBe('PROTOCOL');
      }
    }
  });

  it('encodes the 34-byte standby status update', () => {
    const b = encodeStandbyStatus({ write: 0x2a_8c0010f0n, flush: 0x2a_8c000000n, apply: 0n, clock: 42n, replyRequested: true });
    expect(b.length).toBe(34);
    expect(b.toString('latin1', 0, 1)).toBe('r');
    expect(b.readBigUInt64BE(1)).toBe(0x2a_8c0010f0n);
    expect(b.readBigUInt64BE(9)).toBe(0x2a_8c000000n);
    expect(b.readBigUInt64BE(17)).toBe(0n);
    expect(b.readBigInt64BE(25)).toBe(42n);
    expect(b[33]).toBe(1);
  });

  it('counts protocol time in microseconds from 2000-01-01 UTC', () => {
    expect(pgTimestampNow(Date.UTC(2000, 0, 1))).toBe(0n);
    expect(pgTimestampNow(Date.UTC(2000, 0, 1, 0, 0, 1))).toBe(1_000_000n);
    expect(pgTimestampNow(0)).toBe(-PG_EPOCH_OFFSET_US);
  });
});

describe('replication command text', () => {
  it('builds START_REPLICATION with a quoted slot and hex start', () => {
    expect(startReplicationCommand(parseLsn('0/3000000'), 1)).toBe('START_REPLICATION PHYSICAL 0/3000000 TIMELINE 1');
    expect(startReplicationCommand(parseLsn('2A/8C000000'), 10, 'pgbacula_1')).toBe('START_REPLICATION SLOT "pgbacula_1" PHYSICAL 2A/8C000000 TIMELINE 10');
    expect(() => startReplicationCommand(0n, 1, 'Bad-Name')).toThrow(PgbaculaError);
  });

  it('parses SHOW sizes with their units (never a bare number of 8 kB pages)', () => {
    expect(parseSizeSetting('16MB')).toBe(16 * 1024 * 1024);
    expect(parseSizeSetting('1GB')).toBe(1024 ** 3);
    expect(parseSizeSetting('1024kB')).toBe(1024 * 1024);
    expect(parseSizeSetting('8192')).toBe(8192);
    expect(parseSizeSetting('16 MB')).toBe(16 * 1024 * 1024);
    expect(parseSizeSetting('lots')).toBeUndefined();
  });
});
