/**
 * WAL one archive holds beyond another, copied into it: a Bacula restore's staged archive (the
 * WAL of the restored jobs) takes what the local spool received after the last job — complete
 * segments and the receiver's open `.partial` — so recovery replays up to the spool's last byte
 * (docs/cdp.md, "Restore from the spool"). The source is only read.
 *
 * Every file goes through pushWalFile, so it is validated like anything archived (system, size,
 * page headers, history before its timeline's WAL). A name the destination already holds is not
 * copied again, except a `.partial` the source holds more WAL of (the receiver kept writing its
 * open segment after the last job copied it). A file that does not hold up is left out with a
 * warning: recovery then ends before it, and the restore's own check says what it cannot reach.
 */
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { parseWalPageHeader } from '../wal/page-header.js';
import { validRecordsEnd } from '../wal/record-scan.js';
import { isValidWalSegmentSize, parseWalFileName, segmentNumberOfName, walSegmentStart } from '../wal/segment.js';
import { posixStorage } from '../storage/posix.js';
import type { Storage } from '../storage/storage.js';
import { readIfExists } from './archive-io.js';
import { receiveDir, systemDir } from './layout.js';
import { pushWalFile } from './push.js';

const SEGMENT = /^[0-9A-F]{24}$/;
const PARTIAL = /^[0-9A-F]{24}\.partial$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;
const TIMELINE_DIR = /^[0-9A-F]{8}$/;

export interface AdoptWalOptions {
  /** The archive root to read (a spool). */
  readonly from: string;
  /** The archive root to add to (a restore's staged archive). */
  readonly into: string;
  readonly systemId: string;
  readonly warn: (text: string) => void;
  readonly storage?: Storage;
}

export interface AdoptedWal {
  /** The source holds no WAL of the system. */
  readonly none: boolean;
  readonly histories: number;
  readonly segments: number;
  readonly first?: string;
  readonly last?: string;
  /** The newest `.partial` taken (the receiver's open segment), with where it came from. */
  readonly partial?: { readonly name: string; readonly source: string };
  /** Files of the source left out, with why. */
  readonly refused: readonly string[];
}

/** Sorted by timeline, then position: the order recovery reads them, history files first. */
function byPosition(a: string, b: string): number {
  const ha = HISTORY.test(a) ? 0 : 1;
  const hb = HISTORY.test(b) ? 0 : 1;
  return ha - hb || (a < b ? -1 : a > b ? 1 : 0);
}

async function names(storage: Storage, dir: string): Promise<string[]> {
  return storage.list(dir).catch(() => [] as string[]);
}

export async function adoptNewerWal(o: AdoptWalOptions): Promise<AdoptedWal> {
  const storage = o.storage ?? posixStorage;
  const src = systemDir(o.from, o.systemId);
  const top = await names(storage, src);
  if (top.length === 0) return { none: true, histories: 0, segments: 0, refused: [] };
  const dest = systemDir(o.into, o.systemId);
  const have = async (rel: string): Promise<boolean> => (await storage.stat(join(dest, rel))) !== undefined;

  const complete: Array<{ rel: string; path: string }> = [];
  const partials = new Map<string, string[]>();
  for (const h of top.filter((n) => HISTORY.test(n)).sort(byPosition)) complete.push({ rel: h, path: join(src, h) });
  for (const tli of top.filter((n) => TIMELINE_DIR.test(n)).sort()) {
    for (const n of (await names(storage, join(src, tli))).sort()) {
      if (SEGMENT.test(n) && n.slice(0, 8) === tli) complete.push({ rel: join(tli, n), path: join(src, tli, n) });
      else if (PARTIAL.test(n) && n.slice(0, 8) === tli) partials.set(n, [...(partials.get(n) ?? []), join(src, tli, n)]);
    }
  }
  // The receiver's open segment: the newest WAL there is when the primary is gone.
  for (const n of await names(storage, receiveDir(o.from, o.systemId))) {
    if (PARTIAL.test(n)) partials.set(n, [...(partials.get(n) ?? []), join(receiveDir(o.from, o.systemId), n)]);
  }

  let histories = 0;
  let segments = 0;
  let first: string | undefined;
  let last: string | undefined;
  const refused: string[] = [];
  const push = async (path: string, what: string): Promise<boolean> => {
    try {
      await pushWalFile({ root: o.into, sourcePath: path, expectedSystemId: o.systemId, singleSystem: true, summarize: false, warn: o.warn, storage });
      return true;
    } catch (e) {
      if (!(e instanceof PgbaculaError)) throw e;
      refused.push(`${what}: ${e.message}`);
      o.warn(`${path} was not taken from the spool: ${e.message}`);
      return false;
    }
  };
  for (const f of complete) {
    if (await have(f.rel)) continue;
    const name = f.rel.slice(f.rel.lastIndexOf('/') + 1);
    if (!(await push(f.path, name))) continue;
    if (HISTORY.test(name)) histories++;
    else {
      segments++;
      first ??= name;
      last = name;
    }
  }

  let partial: AdoptedWal['partial'];
  for (const [name, sources] of [...partials].sort(([a], [b]) => byPosition(a, b))) {
    const segName = name.slice(0, 24);
    const tli = segName.slice(0, 8);
    // A complete copy is always served before a partial one: nothing to add.
    if (await have(join(tli, segName))) continue;
    // Of every copy (the destination's and the source's), the one holding the most WAL.
    const staged = join(dest, tli, name);
    let best: { path: string; end: bigint } | undefined;
    const stagedBytes = await readIfExists(storage, staged);
    if (stagedBytes !== undefined) best = { path: staged, end: recordsEnd(stagedBytes, segName) };
    for (const s of sources) {
      const bytes = await readIfExists(storage, s);
      if (bytes === undefined) continue;
      const end = recordsEnd(bytes, segName);
      if (best === undefined || end > best.end) best = { path: s, end };
    }
    if (best === undefined || best.path === staged) continue;
    // The destination is the restore's own scratch archive: its shorter copy may go.
    if (stagedBytes !== undefined) await storage.removeFile(staged);
    if (await push(best.path, name)) partial = { name, source: best.path };
  }
  return { none: false, histories, segments, ...(first ? { first } : {}), ...(last ? { last } : {}), ...(partial ? { partial } : {}), refused };
}

/** Where the valid records of a copy of segment `segName` end (its own long header gives the size). */
function recordsEnd(bytes: Uint8Array, segName: string): bigint {
  const h = parseWalPageHeader(bytes, 0);
  const segSize = h?.long?.segmentSize;
  if (segSize === undefined || !isValidWalSegmentSize(segSize)) return 0n;
  const parsed = parseWalFileName(segName, segSize);
  if (!parsed || parsed.kind !== 'segment') return 0n;
  const padded = bytes.length >= segSize ? bytes : Buffer.concat([bytes, Buffer.alloc(segSize - bytes.length)]);
  return validRecordsEnd(padded, walSegmentStart(segmentNumberOfName(parsed as { log: number; seg: number }, segSize), segSize), segSize);
}

/** The newest segment or `.partial` an archive holds of a system (timeline first, then position), if any. */
export async function newestWal(root: string, systemId: string, storage: Storage = posixStorage): Promise<{ name: string; path: string } | undefined> {
  const src = systemDir(root, systemId);
  let newest: { name: string; path: string } | undefined;
  const consider = (dir: string) => (n: string): void => {
    if ((SEGMENT.test(n) || PARTIAL.test(n)) && (newest === undefined || n.slice(0, 24) > newest.name.slice(0, 24) || (n.slice(0, 24) === newest.name.slice(0, 24) && SEGMENT.test(n)))) newest = { name: n, path: join(dir, n) };
  };
  for (const tli of (await names(storage, src)).filter((n) => TIMELINE_DIR.test(n))) (await names(storage, join(src, tli))).forEach(consider(join(src, tli)));
  (await names(storage, receiveDir(root, systemId))).forEach(consider(receiveDir(root, systemId)));
  return newest;
}

/** Does `a` (the newest WAL of one archive) hold WAL beyond `b` (another's)? */
export async function holdsWalBeyond(a: { name: string; path: string }, b: { name: string; path: string } | undefined, storage: Storage = posixStorage): Promise<boolean> {
  if (b === undefined) return true;
  const sa = a.name.slice(0, 24);
  const sb = b.name.slice(0, 24);
  if (sa !== sb) return sa > sb;
  if (!b.name.endsWith('.partial')) return false;
  if (!a.name.endsWith('.partial')) return true;
  const [ba, bb] = await Promise.all([readIfExists(storage, a.path), readIfExists(storage, b.path)]);
  return ba !== undefined && bb !== undefined && recordsEnd(ba, sa) > recordsEnd(bb, sb);
}
