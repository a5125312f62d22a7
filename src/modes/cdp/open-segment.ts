/**
 * The receiver's open segment, shipped by a cdp job under its own name
 * (`<cluster>/wal/<TLI>/<segment>.partial`), so that it never shadows the complete segment a later
 * job ships: a restore serves a `.partial` only when no complete copy exists and it is the end of
 * WAL (src/archive/partial-at-end.ts).
 *
 * The receiver writes the file while we read it. WAL bytes once written never change, so the
 * snapshot is taken whole, its records are read, and everything after the last valid record is
 * zeroed: what is shipped is exactly the WAL the receiver had fsynced up to a record boundary.
 */
import { join } from 'node:path';
import type { ItemSink } from '../../item/item.js';
import { formatBytes, type JobLog } from '../../item/job-log.js';
import { listWalArchive } from '../../archive/listing.js';
import { makeDirs } from '../../os/user-dirs.js';
import { DEFAULT_RANGE_SIZE, emitFiles } from '../../pipeline/emit-files.js';
import type { WorkerPool } from '../../pipeline/pool.js';
import { PrefixedSink } from '../../pipeline/prefixed-sink.js';
import { registerScratch, removeScratch } from '../../pipeline/scratch-dirs.js';
import { posixStorage } from '../../storage/posix.js';
import { formatLsn } from '../../wal/lsn.js';
import { pgTimeToIso, scanSegmentRecords } from '../../wal/record-scan.js';
import { hex8, walSegmentStart } from '../../wal/segment.js';

export interface OpenSegmentRequest {
  readonly spoolRoot: string;
  readonly systemId: string;
  readonly walSegmentSize: number;
  /** The last complete segment the chain holds: the open one must directly follow it. */
  readonly after: { readonly timeline: number; readonly segno: bigint; readonly name: string };
  /** The timeline the server is on now. */
  readonly timeline: number;
  readonly cluster: string;
  readonly tmpdir: string;
  readonly jobId: number;
  readonly compress: boolean;
  readonly pool: WorkerPool;
  readonly sink: ItemSink;
  readonly log: JobLog;
  readonly signal: AbortSignal;
}

export interface OpenSegmentShipped {
  readonly name: string;
  /** End of the last valid record shipped. */
  readonly endLsn: string;
  /** The last commit or abort in it (ISO-8601), if any. */
  readonly lastCommit: string | undefined;
  /** When the snapshot was read (ms since the epoch). */
  readonly atMs: number;
}

/** Ship the open segment when it follows `after`; undefined (with a line saying why) otherwise. */
export async function shipOpenSegment(r: OpenSegmentRequest): Promise<OpenSegmentShipped | undefined> {
  // The receiver renames its open segment when it completes it (and a receiver just started
  // replaces a stale one): a file listed a moment ago may be gone. Listed again once; gone twice,
  // it is left to the next job, which finds it complete.
  for (let attempt = 1; ; attempt++) {
    try {
      return await shipListed(r);
    } catch (e) {
      if (!(e instanceof OpenSegmentGone)) throw e;
      if (attempt === 2) {
        r.log.info(`open segment ${e.segment} was completed or replaced by the receiver while this job read it: not shipped; the next cdp job ships it`);
        return undefined;
      }
    }
  }
}

class OpenSegmentGone extends Error {
  constructor(readonly segment: string) {
    super(`open segment ${segment} is gone`);
  }
}

async function shipListed(r: OpenSegmentRequest): Promise<OpenSegmentShipped | undefined> {
  const listing = await listWalArchive(r.spoolRoot, r.systemId);
  const open = listing.receiving;
  if (!open) {
    r.log.info('open segment: none in the spool (the receiver has not started one yet): nothing beyond the complete segments shipped');
    return undefined;
  }
  if (open.segno !== r.after.segno + 1n || open.timeline !== r.timeline) {
    // Segments completed after the job listed the spool: the next job ships them and the open one.
    r.log.info(`open segment ${open.name} does not directly follow ${r.after.name} (shipped through): not shipped by this job; the next cdp job ships the segments between`);
    return undefined;
  }
  const atMs = Date.now();
  const bytes = await posixStorage.readFileIfExists(open.path);
  if (bytes === undefined) throw new OpenSegmentGone(open.name);
  const S = r.walSegmentSize;
  if (bytes.length !== S) {
    r.log.warning(`open segment ${open.name} in the spool is ${bytes.length} bytes, not ${S}: not shipped`);
    return undefined;
  }
  const start = walSegmentStart(open.segno, S);
  const scan = scanSegmentRecords(bytes, { segmentStart: start, segmentSize: S });
  if (scan.records === 0) {
    r.log.info(`open segment ${open.name}: no whole record yet, not shipped`);
    return undefined;
  }
  const valid = Number(scan.endLsn - start);
  const snapshot = Buffer.alloc(S);
  bytes.copy(snapshot, 0, 0, valid);
  const work = join(r.tmpdir, `cdp-${r.jobId}-${process.pid}`);
  await makeDirs(work, 0o700);
  registerScratch(work);
  try {
    const file = join(work, open.name);
    await posixStorage.writeFileDurable(file, snapshot, { mode: 0o600 });
    await emitFiles([{ path: `${hex8(open.timeline)}/${open.name}`, absPath: file, type: 'file', mode: 0o640, mtimeMs: atMs, size: S, verifyPages: false, firstBlock: 0 }], {
      pool: r.pool, sink: new PrefixedSink(r.sink, `${r.cluster}/wal/`), log: r.log, verifyPages: false, compress: r.compress, rangeSize: DEFAULT_RANGE_SIZE, signal: r.signal,
    });
  } finally {
    removeScratch(work);
  }
  const lastCommit = scan.lastXact ? pgTimeToIso(scan.lastXact.pgTime) : undefined;
  r.log.info(`open segment shipped: ${open.name} (${formatBytes(valid)} of WAL, to ${formatLsn(scan.endLsn)}${lastCommit ? `, last commit ${lastCommit}` : ''})`);
  return { name: open.name, endLsn: formatLsn(scan.endLsn), lastCommit, atMs };
}
