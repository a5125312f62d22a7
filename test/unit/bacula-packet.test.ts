import { describe, expect, it } from 'vitest';
import {
  describePacket, MAX_PAYLOAD_BYTES, PacketParser, serializePacket, serializePacketParts, type Packet,
} from '../../src/bacula/packet.js';

function parseAll(chunks: readonly Uint8Array[]): Packet[] {
  const parser = new PacketParser();
  const out: Packet[] = [];
  for (const c of chunks) parser.parse(c, (p) => out.push(p));
  expect(parser.bufferedBytes).toBe(0);
  return out;
}

/** Comparable form: data payloads as hex. */
function plain(ps: readonly Packet[]): unknown[] {
  return ps.map((p) => (p.kind === 'data' ? { kind: 'data', hex: Buffer.from(p.data).toString('hex') } : p));
}

const binary = Buffer.from([0x00, 0x01, 0x0a, 0xff, 0x46, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x0a]); // contains "F000000\n"

// Every packet kind, with payloads that contain newlines, NULs, header look-alikes and UTF-8.
const SAMPLE: Packet[] = [
  { kind: 'command', text: 'Hello pgbacula 1' },
  { kind: 'command', text: 'FNAME:/@pgbacula/démo/données é.dump' },
  { kind: 'eod' },
  { kind: 'data', data: binary },
  { kind: 'data', data: Buffer.alloc(70_000, 0x41) },
  { kind: 'message', level: 'I', text: 'dumping database app' },
  { kind: 'message', level: 'W', text: 'two\nlines' },
  { kind: 'message', level: 'Q', text: 'x' },
  { kind: 'message', level: 'S', text: 's' },
  { kind: 'message', level: 'N', text: 'n' },
  { kind: 'message', level: 'R', text: 'r' },
  { kind: 'message', level: 'P', text: 'p' },
  { kind: 'message', level: 'O', text: 'o' },
  { kind: 'message', level: 'V', text: 'v' },
  { kind: 'error', text: 'cannot read' },
  { kind: 'abort', text: 'E_PARAM_UNKNOWN: unknown parameter colour=blue' },
  { kind: 'terminate' },
];

describe('packet codec: serializer', () => {
  it('writes the bytes of docs/bacula-protocol.md exactly', () => {
    expect(serializePacket({ kind: 'command', text: 'Hello pgbacula 1\n' }).toString('latin1')).toBe('C000017\nHello pgbacula 1\n');
    expect(serializePacket({ kind: 'command', text: 'Hello Bacula\n' }).toString('latin1')).toBe('C000013\nHello Bacula\n');
    expect(serializePacket({ kind: 'eod' }).toString('latin1')).toBe('F000000\n');
    expect(serializePacket({ kind: 'terminate' }).toString('latin1')).toBe('T000000\n');
    expect(serializePacket({ kind: 'message', level: 'I', text: 'dumping database app' }).toString('latin1')).toBe('I000020\ndumping database app');
    expect(serializePacket({ kind: 'command', text: 'STAT:F 12 0 0 100640 1\n' }).toString('latin1')).toBe('C000023\nSTAT:F 12 0 0 100640 1\n');
    expect(serializePacket({ kind: 'data', data: Buffer.from([0, 1]) })).toEqual(Buffer.from('D000002\n\x00\x01', 'latin1'));
  });

  it('counts bytes of the UTF-8 encoding, not characters', () => {
    const text = 'FNAME:/@pgbacula/é\n'; // é is 2 bytes
    const bytes = serializePacket({ kind: 'command', text });
    expect(text.length).toBe(19);
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('C000020\n');
    expect(bytes.length).toBe(28);
  });

  it('refuses what the FD would misread', () => {
    expect(() => serializePacket({ kind: 'command', text: '' })).toThrow(/empty C packet/);
    expect(() => serializePacket({ kind: 'data', data: new Uint8Array(0) })).toThrow(/empty D packet/);
    expect(() => serializePacket({ kind: 'data', data: new Uint8Array(MAX_PAYLOAD_BYTES + 1) })).toThrow(/does not fit/);
    expect(serializePacket({ kind: 'data', data: new Uint8Array(MAX_PAYLOAD_BYTES) }).subarray(0, 8).toString()).toBe('D999999\n');
  });

  it('does not copy data payloads in the parts form', () => {
    const payload = Buffer.from('abc');
    const parts = serializePacketParts({ kind: 'data', data: payload });
    expect(parts[1]).toBe(payload);
  });
});

describe('packet codec: parser', () => {
  const stream = Buffer.concat(SAMPLE.map(serializePacket));

  it('round-trips every packet kind', () => {
    expect(plain(parseAll([stream]))).toEqual(plain(SAMPLE));
  });

  it('cuts the same packets at every split point of the stream', () => {
    const want = plain(SAMPLE);
    // Every single split (the 70 000-byte packet makes this ~70k parses: keep the per-split work small).
    const small = Buffer.concat(SAMPLE.filter((p) => !(p.kind === 'data' && p.data.length > 1000)).map(serializePacket));
    const wantSmall = plain(SAMPLE.filter((p) => !(p.kind === 'data' && p.data.length > 1000)));
    for (let i = 0; i <= small.length; i++) {
      expect(plain(parseAll([small.subarray(0, i), small.subarray(i)])), `split at ${i}`).toEqual(wantSmall);
    }
    // Every pair of splits over the small stream (three chunks).
    for (let i = 0; i <= small.length; i += 3) {
      for (let j = i; j <= small.length; j += 7) {
        expect(plain(parseAll([small.subarray(0, i), small.subarray(i, j), small.subarray(j)]))).toEqual(wantSmall);
      }
    }
    // The big stream: byte by byte, and splits around every header.
    expect(plain(parseAll(Array.from(stream, (b) => Uint8Array.of(b))))).toEqual(want);
    let at = 0;
    for (const p of SAMPLE) {
      const len = serializePacket(p).length;
      for (const d of [-1, 0, 1, 4, 7, 8, 9]) {
        const cut = Math.min(Math.max(at + d, 0), stream.length);
        expect(plain(parseAll([stream.subarray(0, cut), stream.subarray(cut)]))).toEqual(want);
      }
      at += len;
    }
  });

  it('strips the trailing white space of commands as the FD does', () => {
    const [p] = parseAll([Buffer.from('C000010\nmode=dump\n', 'latin1')]);
    expect(p).toEqual({ kind: 'command', text: 'mode=dump' });
  });

  it('tolerates leading blanks in the length (the FD reads it with atoi)', () => {
    expect(parseAll([Buffer.from('C    10\nmode=dump\n', 'latin1')])).toEqual([{ kind: 'command', text: 'mode=dump' }]);
  });

  it('keeps a partial packet until the rest arrives', () => {
    const parser = new PacketParser();
    const got: Packet[] = [];
    parser.parse(Buffer.from('D000004\nab', 'latin1'), (p) => got.push(p));
    expect(got).toEqual([]);
    expect(parser.bufferedBytes).toBe(10);
    parser.parse(Buffer.from('cdF000000\n', 'latin1'), (p) => got.push(p));
    expect(got.map(describePacket)).toEqual(['D(4 bytes)', 'F']);
  });

  describe('refuses malformed packets with a clear error and stays failed', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['unknown status letter', 'X000003\nabc', /unknown status letter "X"/],
      ['lower-case letter', 'c000003\nabc', /unknown status letter "c"/],
      ['letters in the length', 'C00a003\nabc', /not six decimal digits/],
      ['blank inside the length', 'C00 003\nabc', /not six decimal digits/],
      ['a length of blanks', 'C      \nabc', /no digits/],
      ['no newline at byte 8', 'C0000030abc', /not a newline/],
      ['F with a payload', 'F000002\nxx', /must have length 000000/],
      ['T with a payload', 'T000001\nx', /must have length 000000/],
      ['a binary header', '\x00\x01\x02\x03\x04\x05\x06\x07', /unknown status letter "\\x00"/],
    ];
    for (const [name, bytes, message] of cases) {
      it(name, () => {
        const parser = new PacketParser();
        const got: Packet[] = [];
        const good = serializePacket({ kind: 'command', text: 'Hello pgbacula 1\n' });
        expect(() => parser.parse(Buffer.concat([good, Buffer.from(bytes, 'latin1')]), (p) => got.push(p))).toThrow(message);
        // The good packet before the bad header was delivered; the error names the offset.
        expect(got).toEqual([{ kind: 'command', text: 'Hello pgbacula 1' }]);
        let again: unknown;
        try {
          parser.parse(serializePacket({ kind: 'eod' }), () => undefined);
        } catch (e) {
          again = e;
        }
        expect(String(again)).toMatch(message);
        expect((again as { code?: string }).code).toBe('PROTOCOL');
      });
    }
    it('reports the stream offset of the bad header', () => {
      const parser = new PacketParser();
      expect(() => parser.parse(Buffer.from('F000000\nZ000000\n', 'latin1'), () => undefined)).toThrow(/stream offset 8/);
    });
  });
});
