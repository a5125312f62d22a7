/**
 * An ItemSink that files every item under a prefix of another sink's namespace, and hands LZ4
 * items on as opaque standard LZ4 frames (header and end mark added here) named `<path>.lz4` —
 * exactly the stored form of the repository layout, so what a byte-stream sink (the Bacula FD)
 * keeps can be restored into a repository as it is.
 */
import { encodeFrameEnd, encodeFrameHeader } from '../format/lz4-frame.js';
import type { ItemHeader, ItemPlacement, ItemSink, ItemTrailer } from '../item/item.js';

export class PrefixedSink implements ItemSink {
  private lz4 = false;

  constructor(
    private readonly inner: ItemSink,
    /** e.g. `4711/pitr/20261126-150000F/` (ends with a slash). */
    private readonly prefix: string,
  ) {}

  async begin(header: ItemHeader): Promise<void> {
    this.lz4 = header.encoding === 'lz4' && header.type === 'file';
    await this.inner.begin({ ...header, path: `${this.prefix}${header.path}${this.lz4 ? '.lz4' : ''}`, encoding: 'raw' });
    if (this.lz4) await this.inner.write(encodeFrameHeader());
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.inner.write(chunk);
  }

  async end(trailer: ItemTrailer): Promise<ItemPlacement | void> {
    if (this.lz4) await this.inner.write(encodeFrameEnd());
    this.lz4 = false;
    return this.inner.end(trailer);
  }
}
