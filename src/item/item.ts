/**
 * Items: what flows from a source (a backup mode, a repository, the FD during restore) to a
 * sink (the FD, a repository, a restore target). Modes never know which sink they feed.
 */
export type ItemType = 'file' | 'dir' | 'symlink';

/** How an item's chunks are encoded: raw bytes, or LZ4 block records of a standard LZ4 frame. */
export type ItemEncoding = 'raw' | 'lz4';

export interface ItemHeader {
  /** Path inside the backup, '/'-separated, e.g. `pgdata/base/5/16384`, `wal/000000010000000000000003`. */
  readonly path: string;
  readonly type: ItemType;
  readonly mode: number;
  readonly mtimeMs: number;
  /** Raw (decoded) size in bytes; 0 for directories and links. */
  readonly size: number;
  readonly linkTarget?: string;
  readonly encoding: ItemEncoding;
}

/** Page-checksum result of one relation file (absent when the file carries no checksums). */
export interface PageCheckResult {
  readonly pagesChecked: number;
  readonly newPages: number;
  /** Relation-wide block numbers whose checksum failed twice with the same bytes. */
  readonly failedBlocks: readonly number[];
  /** Pages that failed once and had changed when re-read (torn by a concurrent write). */
  readonly tornPages: number;
}

export interface ItemTrailer {
  /** Hash of the raw content (see src/format/content-hash.ts). */
  readonly hash: string;
  readonly rawSize: number;
  readonly storedSize: number;
  readonly pageCheck?: PageCheckResult;
}

/**
 * Where a sink put an item when it is not under its own name: the repository stores small files
 * together in bundle files (docs/repository-format.md, "Bundles"), and the manifest must say where.
 */
export interface ItemPlacement {
  readonly bundle?: BundleRef;
}

/** A stored file inside bundle `id` of its backup: `length` bytes from byte `offset` (an LZ4 frame's header and end mark included). */
export interface BundleRef {
  readonly id: number;
  readonly offset: number;
  readonly length: number;
}

export interface ItemSink {
  begin(header: ItemHeader): Promise<void>;
  /** One encoded chunk of the current item, in order. */
  write(chunk: Uint8Array): Promise<void>;
  /** The item is complete; a sink that stores it elsewhere than under its path says where. */
  end(trailer: ItemTrailer): Promise<ItemPlacement | void>;
}
