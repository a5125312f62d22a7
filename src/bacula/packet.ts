/**
 * The metaplugin packet codec: bytes in → typed packets out, and back.
 * Nothing else lives here — no I/O, no conversation state (node-postgres pg-protocol's shape:
 * one parser with a single accumulation buffer that cuts frames by their length header, one
 * serializer).
 *
 * Frame: 1 status letter, 6 ASCII decimal digits of payload length, '\n', then exactly that many
 * payload bytes. Lengths are BYTE lengths of the encoded payload. `F` and `T` never carry a
 * payload.
 */
import { PgbaculaError } from '../errors.js';

export const PACKET_HEADER_BYTES = 8;
/** Six decimal digits: the FD cannot express (and refuses to send) more. */
export const MAX_PAYLOAD_BYTES = 999_999;

/** Message letters: logged by the FD, no protocol effect. */
export type MessageLevel = 'I' | 'W' | 'Q' | 'S' | 'N' | 'R' | 'P' | 'O' | 'V';
const MESSAGE_LEVELS: ReadonlySet<string> = new Set(['I', 'W', 'Q', 'S', 'N', 'R', 'P', 'O', 'V']);

export type Packet =
  /** `C`: one command or answer; text without the trailing white space the FD strips anyway. */
  | { readonly kind: 'command'; readonly text: string }
  /** `D`: opaque bytes (file data, restore objects, ...). */
  | { readonly kind: 'data'; readonly data: Uint8Array }
  /** `F`: end of a block / end of data / acknowledgement. */
  | { readonly kind: 'eod' }
  /** `T`: "close the conversation now" (FD → backend after END). */
  | { readonly kind: 'terminate' }
  /** `E`: an error (job Error; ends the FD's current read). */
  | { readonly kind: 'error'; readonly text: string }
  /** `A`: abort (job Fatal error). */
  | { readonly kind: 'abort'; readonly text: string }
  /** `I W Q S N R P O V`: a job message. */
  | { readonly kind: 'message'; readonly level: MessageLevel; readonly text: string };

export type PacketKind = Packet['kind'];

const LETTER: Record<Exclude<PacketKind, 'message'>, string> = {
  command: 'C',
  data: 'D',
  eod: 'F',
  terminate: 'T',
  error: 'E',
  abort: 'A',
};

/** Shorthands for building packets. */
export const command = (text: string): Packet => ({ kind: 'command', text });
export const data = (bytes: Uint8Array): Packet => ({ kind: 'data', data: bytes });
export const EOD: Packet = { kind: 'eod' };
export const TERMINATE: Packet = { kind: 'terminate' };

/** The status letter of a packet. */
export function packetLetter(p: Packet): string {
  return p.kind === 'message' ? p.level : LETTER[p.kind];
}

/** A readable one-line form for messages and logs (payloads of data packets are not shown). */
export function describePacket(p: Packet): string {
  switch (p.kind) {
    case 'data':
      return `D(${p.data.length} bytes)`;
    case 'eod':
    case 'terminate':
      return packetLetter(p);
    case 'message':
      return `${p.level}"${p.text}"`;
    default:
      return `${packetLetter(p)}"${p.text}"`;
  }
}

// ---------------------------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------------------------

function protocolError(message: string, hint?: string): PgbaculaError {
  return new PgbaculaError('PROTOCOL', message, hint === undefined ? {} : { hint });
}

/** The 8 header bytes: letter, %06d length, '\n'. */
export function packetHeader(letter: string, length: number): Buffer {
  if (!Number.isInteger(length) || length < 0 || length > MAX_PAYLOAD_BYTES) {
    throw protocolError(`packet payload of ${length} bytes does not fit a packet (at most ${MAX_PAYLOAD_BYTES})`, 'Split the payload into several packets.');
  }
  return Buffer.from(`${letter}${String(length).padStart(6, '0')}\n`, 'latin1');
}

function payloadOf(p: Packet): Uint8Array | undefined {
  switch (p.kind) {
    case 'eod':
    case 'terminate':
      return undefined;
    case 'data':
      return p.data;
    default:
      return Buffer.from(p.text, 'utf8');
  }
}

/**
 * Header and payload of one packet, payload not copied (data packets are written straight from
 * the producer's buffer). Refuses what the FD would misread: empty `C`
 * and `D` packets, oversized payloads.
 */
export function serializePacketParts(p: Packet): [Buffer] | [Buffer, Uint8Array] {
  const payload = payloadOf(p);
  const letter = packetLetter(p);
  if (payload === undefined) return [packetHeader(letter, 0)];
  if (payload.length === 0 && (p.kind === 'command' || p.kind === 'data')) {
    throw protocolError(`an empty ${letter} packet would be misread by the FD`, 'Send F for "no data"; never an empty command or data packet.');
  }
  return [packetHeader(letter, payload.length), payload];
}

/** One packet as one contiguous buffer (copies the payload; use the parts for bulk data). */
export function serializePacket(p: Packet): Buffer {
  const parts = serializePacketParts(p);
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const NEWLINE = 0x0a;
const SPACE = 0x20;

function showHeader(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
}

function decodeText(payload: Uint8Array): string {
  // The FD strips all trailing white space of a command it receives; so do we, so
  // both ends agree on what "FNAME:<name>" names.
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8').replace(/\s+$/, '');
}

function toPacket(letter: string, payload: Uint8Array): Packet {
  switch (letter) {
    case 'C':
      return { kind: 'command', text: decodeText(payload) };
    case 'D':
      return { kind: 'data', data: payload };
    case 'F':
      return { kind: 'eod' };
    case 'T':
      return { kind: 'terminate' };
    case 'E':
      return { kind: 'error', text: decodeText(payload) };
    case 'A':
      return { kind: 'abort', text: decodeText(payload) };
    default:
      return { kind: 'message', level: letter as MessageLevel, text: decodeText(payload) };
  }
}

/**
 * Cuts a byte stream into packets. Feed it chunks as they arrive, of any size and at any split;
 * it calls back once per complete packet. A malformed header throws a PROTOCOL error and leaves
 * the parser failed: after a bad header the stream cannot be re-synchronised.
 */
export class PacketParser {
  /** Bytes of an incomplete packet, kept as received until the packet is complete. */
  private parts: Buffer[] = [];
  private partsBytes = 0;
  /** Total bytes of the incomplete packet once its header is known (0 = header incomplete). */
  private need = 0;
  private failure: PgbaculaError | undefined;
  private offsetInStream = 0;

  /** Bytes received but not yet part of a complete packet. */
  get bufferedBytes(): number {
    return this.partsBytes;
  }

  parse(chunk: Uint8Array, onPacket: (packet: Packet) => void): void {
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    const incoming = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // A large payload arriving in small pieces is joined once, when complete (no quadratic copying).
    if (this.need > 0 && this.partsBytes + incoming.length < this.need) {
      this.parts.push(incoming);
      this.partsBytes += incoming.length;
      return;
    }
    const buf = this.parts.length ? Buffer.concat([...this.parts, incoming]) : incoming;
    this.parts = [];
    this.partsBytes = 0;
    this.need = 0;
    let at = 0;
    let length = -1;
    try {
      while (buf.length - at >= PACKET_HEADER_BYTES) {
        length = this.readHeader(buf, at);
        const end = at + PACKET_HEADER_BYTES + length;
        if (buf.length < end) break;
        const letter = String.fromCharCode(buf[at]!);
        const packet = toPacket(letter, buf.subarray(at + PACKET_HEADER_BYTES, end));
        this.offsetInStream += end - at;
        at = end;
        length = -1;
        onPacket(packet);
      }
    } finally {
      // Keep the unparsed tail (copied, so the possibly large chunk it came from can be freed).
      const rest = buf.subarray(at);
      if (rest.length) {
        this.parts = [Buffer.from(rest)];
        this.partsBytes = rest.length;
        this.need = length >= 0 && !this.failure ? PACKET_HEADER_BYTES + length : 0;
      }
    }
  }

  /** Validate the 8 header bytes at `at`; returns the payload length. */
  private readHeader(buf: Buffer, at: number): number {
    const header = buf.subarray(at, at + PACKET_HEADER_BYTES);
    const letter = String.fromCharCode(header[0]!);
    const fail = (why: string): never => {
      this.failure = protocolError(
        `malformed packet from the FD at stream offset ${this.offsetInStream}: ${why} (header "${showHeader(header)}")`,
        'The byte stream is out of step: a Bacula FD/shim defect or something else writing to the backend\'s stdin.',
      );
      throw this.failure;
    };
    if (!(letter in REVERSE_LETTERS) && !MESSAGE_LEVELS.has(letter)) fail(`unknown status letter "${showHeader(header.subarray(0, 1))}"`);
    let length = 0;
    let seenDigit = false;
    for (let i = 1; i <= 6; i++) {
      const b = header[i]!;
      if (b >= DIGIT_0 && b <= DIGIT_9) {
        length = length * 10 + (b - DIGIT_0);
        seenDigit = true;
      } else if (b === SPACE && !seenDigit) {
        // The FD reads the length with atoi: leading blanks are tolerated there, so here too.
      } else {
        fail('the length is not six decimal digits');
      }
    }
    if (!seenDigit) fail('the length has no digits');
    if (header[7] !== NEWLINE) fail('byte 8 of the header is not a newline');
    if ((letter === 'F' || letter === 'T') && length !== 0) fail(`an ${letter} packet must have length 000000`);
    return length;
  }
}

const REVERSE_LETTERS: Readonly<Record<string, true>> = { C: true, D: true, F: true, T: true, E: true, A: true };
