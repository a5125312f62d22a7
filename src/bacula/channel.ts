/**
 * The two ends of the pipe pair to the FD: a reader that turns the FD's byte stream into an async
 * sequence of packets, and the ONE writer of packets to the FD (one writer, whole packets, in call order). Both are
 * plain stream adapters; what the packets mean is conversation.ts's business.
 */
import type { Readable, Writable } from 'node:stream';
import { PgbaculaError } from '../errors.js';
import { describePacket, PacketParser, serializePacketParts, type Packet } from './packet.js';

/** Where packets come from: `undefined` is end of input (the FD closed our stdin). */
export interface PacketSource {
  next(): Promise<Packet | undefined>;
}

/** Where packets go. */
export interface PacketSink {
  send(packet: Packet): Promise<void>;
}

/**
 * Packets from a byte stream. Input is read promptly (the FD must never block on us while it is
 * sending) but not without bound: above `highWaterBytes` of unconsumed packets the stream
 * is paused, which makes the FD wait in its write — harmless, it is not reading from us then.
 */
export class PacketReader implements PacketSource {
  private readonly parser = new PacketParser();
  private readonly queue: Packet[] = [];
  private queuedBytes = 0;
  private waiters: (() => void)[] = [];
  private ended = false;
  private failure: PgbaculaError | undefined;
  private paused = false;

  constructor(
    private readonly input: Readable,
    private readonly highWaterBytes = 8 * 1024 * 1024,
  ) {
    input.on('data', (chunk: Buffer) => this.onData(chunk));
    input.on('end', () => this.finish());
    input.on('close', () => this.finish());
    input.on('error', () => this.finish());
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return; // out of step: ignore everything until EOF
    try {
      this.parser.parse(chunk, (p) => {
        this.queue.push(p);
        this.queuedBytes += p.kind === 'data' ? p.data.length : 16;
      });
    } catch (e) {
      this.failure = e instanceof PgbaculaError ? e : new PgbaculaError('PROTOCOL', String(e));
    }
    if (this.queuedBytes > this.highWaterBytes && !this.paused) {
      this.paused = true;
      this.input.pause();
    }
    this.wake();
  }

  private finish(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  private wait(): Promise<void> {
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /**
   * The next packet; undefined at end of input. A malformed packet throws (once queued packets
   * before it were delivered); afterwards the reader only waits for end of input.
   */
  async next(): Promise<Packet | undefined> {
    for (;;) {
      const p = this.queue.shift();
      if (p) {
        this.queuedBytes -= p.kind === 'data' ? p.data.length : 16;
        if (this.paused && this.queuedBytes <= this.highWaterBytes / 2) {
          this.paused = false;
          this.input.resume();
        }
        return p;
      }
      if (this.failure) {
        const f = this.failure;
        this.failure = new PgbaculaError('PROTOCOL', 'the packet stream from the FD is out of step', { cause: f });
        throw f;
      }
      if (this.ended) return undefined;
      await this.wait();
    }
  }

  /** After a protocol failure or an abort: read and discard everything until end of input. */
  async drainToEnd(): Promise<void> {
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.failure ??= new PgbaculaError('PROTOCOL', 'draining');
    if (this.paused) {
      this.paused = false;
      this.input.resume();
    }
    while (!this.ended) await this.wait();
  }
}

/**
 * The only writer of fd 1. Packets are written whole and in call order (a packet is header +
 * payload written back to back without yielding, so nothing can interleave); `send` resolves
 * when the stream accepted it, honouring back-pressure. After `silence()` (an `A` was sent, or
 * the FD went away) every further packet is dropped: nothing more until the FD
 * speaks, and after an abort it will not.
 */
export class PacketWriter implements PacketSink {
  private silenced = false;
  private broken = false;
  private drainWaiters: (() => void)[] = [];
  /** Packets written, for tests and diagnostics. */
  packetsSent = 0;

  constructor(private readonly output: Writable) {
    output.on('drain', () => this.releaseDrainWaiters());
    output.on('error', () => {
      // EPIPE: the FD closed our stdout (job ended or canceled). Nothing more can be said.
      this.broken = true;
      this.releaseDrainWaiters();
    });
    output.on('close', () => {
      this.broken = true;
      this.releaseDrainWaiters();
    });
  }

  private releaseDrainWaiters(): void {
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) w();
  }

  get isSilenced(): boolean {
    return this.silenced || this.broken;
  }

  silence(): void {
    this.silenced = true;
  }

  async send(packet: Packet): Promise<void> {
    if (this.silenced || this.broken) return;
    const parts = serializePacketParts(packet);
    let ok = true;
    if (parts.length === 1) {
      ok = this.output.write(parts[0]);
    } else {
      this.output.cork();
      this.output.write(parts[0]);
      ok = this.output.write(parts[1]);
      this.output.uncork();
    }
    this.packetsSent++;
    if (!ok && !this.broken) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }
}

/** For error messages: what was received when something else was expected. */
export function unexpected(p: Packet | undefined, expected: string): PgbaculaError {
  return new PgbaculaError('PROTOCOL', `expected ${expected} from the FD, got ${p ? describePacket(p) : 'end of input'}`, {
    hint: 'The FD and the backend disagree about the protocol state: a Bacula FD/shim version mismatch or defect.',
  });
}
