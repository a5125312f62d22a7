import type { FileWriter } from './storage.js';

/**
 * Appends gathered into a buffer of `capacity` bytes and written when it is full (or on close):
 * a bundle of ten thousand files of a few hundred bytes is a few writes instead of thirty
 * thousand (each piece — frame header, blocks, end mark — would otherwise be a write of its own).
 * A failed write surfaces at the write or close that flushes it.
 */
export class BufferedWriter {
  private readonly buffer: Uint8Array;
  private used = 0;

  constructor(
    readonly file: FileWriter,
    capacity = 1024 * 1024,
  ) {
    this.buffer = new Uint8Array(capacity);
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.used + bytes.length > this.buffer.length) await this.flush();
    if (bytes.length >= this.buffer.length) {
      await this.file.write(bytes);
      return;
    }
    this.buffer.set(bytes, this.used);
    this.used += bytes.length;
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    // A copy: the storage may keep the bytes until its write completes, and the buffer is reused.
    const out = this.buffer.slice(0, this.used);
    this.used = 0;
    await this.file.write(out);
  }

  /** Flush, then close; the file is closed even when the flush fails. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.file.close();
    }
  }
}
