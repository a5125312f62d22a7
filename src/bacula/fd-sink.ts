/**
 * The Bacula FD as an ItemSink: each item becomes one file record of the backup stream:
 * `FNAME:` + header (`STAT:`, `TSTAMP:`, `LSTAT:`) + `F`, then the data
 * phase (`DATA`, `D`…, `F`, or a lone `F` for "no data"). Estimates and listings get the header
 * only — an extra `F` there would be read as end of stream.
 *
 * Item paths are relative to the plugin namespace: `<cluster>/dump/42/app.dump` is recorded as
 * `/@pgbacula/<cluster>/dump/42/app.dump`. A negative size means "not known before the data"
 * (a streamed dump): STAT carries -1, as Bacula's own bpipe plugin does for its streams.
 */
import { PgbaculaError } from '../errors.js';
import type { ItemHeader, ItemSink, ItemTrailer } from '../item/item.js';
import type { PacketSink } from './channel.js';
import { command, EOD } from './packet.js';

/** Stored record size: the FD's default network buffer; packet boundaries become records. */
export const DATA_PACKET_BYTES = 64 * 1024;

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

export interface FdSinkOptions {
  /** Namespace without slashes, e.g. `@pgbacula`. */
  readonly namespace: string;
  /** false for estimate and listing: headers only. */
  readonly dataPhase: boolean;
}

/** `/@ns/<path>`, with the trailing slash Bacula requires for directories. */
export function fdName(namespace: string, header: Pick<ItemHeader, 'path' | 'type'>): string {
  const rel = header.path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (rel === '' || rel.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new PgbaculaError('INTERNAL', `item path "${header.path}" is not a clean relative path`);
  }
  if (/[\n\r\0]/.test(rel) || /\s$/.test(rel)) {
    // A newline would break the FD's FNAME line at restore; trailing blanks are stripped by it.
    throw new PgbaculaError('INTERNAL', `item path "${header.path}" has characters the FD cannot carry`);
  }
  return `/${namespace}/${rel}${header.type === 'dir' ? '/' : ''}`;
}

/** The STAT line: `STAT:<t> <size> <uid> <gid> <octal mode with type bits> <nlink>`. */
export function statLine(header: ItemHeader): string {
  const perms = header.mode & 0o7777;
  const size = header.size < 0 ? -1 : Math.floor(header.size);
  switch (header.type) {
    case 'dir':
      return `STAT:D ${Math.max(size, 0)} 0 0 ${(S_IFDIR | perms).toString(8).padStart(6, '0')} 1`;
    case 'symlink':
      return `STAT:S 0 0 0 ${(S_IFLNK | (perms || 0o777)).toString(8).padStart(6, '0')} 1`;
    case 'file':
      return `STAT:${size === 0 ? 'E' : 'F'} ${size} 0 0 ${(S_IFREG | perms).toString(8).padStart(6, '0')} 1`;
  }
}

export function tstampLine(header: ItemHeader): string {
  const t = Math.max(0, Math.floor(header.mtimeMs / 1000));
  return `TSTAMP:${t} ${t} ${t}`;
}

export class FdItemSink implements ItemSink {
  private current: ItemHeader | undefined;
  private dataStarted = false;
  private buffer: Buffer | undefined;
  private buffered = 0;
  /** Bytes of data sent for the current item / the whole stream. */
  itemBytes = 0;
  totalBytes = 0;
  items = 0;

  constructor(
    private readonly out: PacketSink,
    private readonly opts: FdSinkOptions,
  ) {}

  async begin(header: ItemHeader): Promise<void> {
    if (this.current) throw new PgbaculaError('INTERNAL', `item ${header.path} begun before ${this.current.path} ended`);
    if (header.encoding !== 'raw') {
      throw new PgbaculaError('INTERNAL', `the Bacula sink stores raw bytes (Bacula compresses); item ${header.path} is ${header.encoding}`);
    }
    const name = fdName(this.opts.namespace, header);
    await this.out.send(command(`FNAME:${name}\n`));
    await this.out.send(command(statLine(header) + '\n'));
    await this.out.send(command(tstampLine(header) + '\n'));
    if (header.type === 'symlink') {
      if (!header.linkTarget) throw new PgbaculaError('INTERNAL', `symlink item ${header.path} has no target`);
      await this.out.send(command(`LSTAT:${header.linkTarget}\n`));
    }
    await this.out.send(EOD);
    this.current = header;
    this.dataStarted = false;
    this.itemBytes = 0;
    this.items++;
  }

  async write(chunk: Uint8Array): Promise<void> {
    const item = this.current;
    if (!item) throw new PgbaculaError('INTERNAL', 'data written outside an item');
    if (!this.opts.dataPhase || chunk.length === 0) return;
    if (item.type !== 'file') throw new PgbaculaError('INTERNAL', `data written to ${item.type} item ${item.path}`);
    if (!this.dataStarted) {
      await this.out.send(command('DATA\n'));
      this.dataStarted = true;
    }
    this.itemBytes += chunk.length;
    this.totalBytes += chunk.length;
    // Copy into our own packet buffers: producers may recycle theirs as soon as we return, while
    // the stream may still hold what we wrote.
    let at = 0;
    while (at < chunk.length) {
      this.buffer ??= Buffer.allocUnsafe(DATA_PACKET_BYTES);
      const n = Math.min(DATA_PACKET_BYTES - this.buffered, chunk.length - at);
      this.buffer.set(chunk.subarray(at, at + n), this.buffered);
      this.buffered += n;
      at += n;
      if (this.buffered === DATA_PACKET_BYTES) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    if (!this.buffer || this.buffered === 0) return;
    const payload = this.buffered === this.buffer.length ? this.buffer : this.buffer.subarray(0, this.buffered);
    this.buffer = undefined;
    this.buffered = 0;
    await this.out.send({ kind: 'data', data: payload });
  }

  async end(_trailer?: ItemTrailer): Promise<void> {
    if (!this.current) throw new PgbaculaError('INTERNAL', 'end() without an item');
    this.current = undefined;
    if (!this.opts.dataPhase) return;
    await this.flush();
    // After DATA + D…: F ends the data; without data: F means "no data".
    await this.out.send(EOD);
  }

  /** The item being written, if any (for error reporting). */
  get openItem(): ItemHeader | undefined {
    return this.current;
  }
}
