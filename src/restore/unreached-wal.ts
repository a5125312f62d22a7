/**
 * WAL a restore to the end of WAL will not reach: a gap in the archive ends recovery there (the
 * window's rules, docs/wal-archive.md), and everything after it — later segments, the newest
 * `.partial` a receiver or a cdp job left — is silently left out by the server. Said before the
 * restore starts, so a restore that promotes without it does not pass for a complete one.
 */
import { listWalArchive } from '../archive/listing.js';
import type { RecoverableRange } from '../archive/window.js';
import { parseLsn } from '../wal/lsn.js';
import { parseWalSegmentName, walSegmentNumber } from '../wal/segment.js';

export async function unreachedWal(o: {
  readonly archiveRoot: string;
  readonly systemId: string;
  readonly range: RecoverableRange | undefined;
  /** The backup's stop point: where its own WAL ends when the archive adds nothing. */
  readonly stopLsn: string;
  readonly segmentSize: number;
}): Promise<string | undefined> {
  const S = o.segmentSize;
  if (o.range?.endsAtGap) {
    return `WAL segment ${o.range.endsAtGap} is missing from ${o.archiveRoot}: recovery to the end of WAL stops before it and every later segment is not replayed — bring it back (pgbacula info --repo lists the gap), or accept the point before it`;
  }
  const lastSegno = o.range?.lastSegment !== undefined ? parseWalSegmentName(o.range.lastSegment, S).segno : walSegmentNumber(parseLsn(o.stopLsn), S);
  const listing = await listWalArchive(o.archiveRoot, o.systemId).catch(() => undefined);
  if (!listing) return undefined;
  const beyond = [...listing.partials, ...(listing.receiving ? [listing.receiving] : [])].filter((p) => p.segno > lastSegno + 1n).sort((a, b) => (a.segno < b.segno ? -1 : 1)).at(-1);
  if (!beyond) return undefined;
  return `${beyond.name} (the newest WAL received) lies after a gap: the archive has no segment between ${o.range?.lastSegment ?? 'the backup\'s own WAL'} and it, so recovery ends before it and its commits are not restored — bring the missing segments back into ${o.archiveRoot} (the spool, or a later Bacula job's WAL)`;
}
