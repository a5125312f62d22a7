/**
 * The planner mode pitr_block gives the base backup engine (src/physical/planner.ts): choose the
 * reference, find the blocks changed since it (WAL summaries, else a page LSN scan), and turn the
 * walked plan into whole and incremental files — or, when there is no usable reference, keep the
 * plan whole and say why.
 */
import type { BackupManifest } from '../../format/backup-manifest.js';
import { DEFAULT_BLOCKS_PER_SEGMENT } from '../../format/page.js';
import { wholePathOf } from '../../format/incremental-file.js';
import { formatBytes, formatCount } from '../../item/job-log.js';
import type { BackupPlanner, PlannedBackup, PlannerContext } from '../../physical/planner.js';
import { parseLsn } from '../../wal/lsn.js';
import { planBlocks, type ChangedBlockLookup } from './block-plan.js';
import { findChangedBlocks } from './changed-blocks.js';
import { scanChangedBlocks } from './lsn-scan.js';
import { checkReference, chooseReference, type BlockBackupType, type ReferenceRequest } from './reference.js';

export interface BlockBackupSettings {
  readonly type: BlockBackupType;
  /** pitr_block_summary_days: the oldest reference counted from. */
  readonly summaryDays: number;
  /** The WAL archive whose summaries count; undefined: none. */
  readonly archiveRoot: string | undefined;
  readonly summarizerWaitMs: number;
  /** The reference, when the caller has chosen it (a Bacula job names it by its level and Since=). */
  readonly reference?: BackupManifest;
}

/** PostgreSQL's default relation segment: 1 GiB of 8 kB blocks (`SHOW segment_size`). */
const DEFAULT_SEGMENT_SIZE_TEXT = '1GB';

function whole(ctx: PlannerContext, fullBecause?: string): PlannedBackup {
  let totalBytes = 0;
  for (const e of ctx.entries) if (e.type === 'file') totalBytes += e.size;
  return { entries: ctx.entries, totalBytes, level: 'full', ...(fullBecause ? { fullBecause } : {}) };
}

/**
 * `backups`: the complete backups (oldest first) a reference may be chosen from, given what the
 * server is — at least the newest that isReferenceCandidate accepts, with its chain.
 */
export function blockPlanner(s: BlockBackupSettings, backups: (asked: Pick<ReferenceRequest, 'type' | 'systemId'>) => Promise<readonly BackupManifest[]>): BackupPlanner {
  return async (ctx) => {
    const { log } = ctx;
    const asked = { type: s.type, systemId: ctx.systemId, timeline: ctx.timeline, blockSize: ctx.blockSize, maxAgeDays: s.summaryDays, now: new Date() };
    const complete = s.type === 'full' ? [] : await backups(asked);
    const choice = s.reference ? checkReference(s.reference, complete, asked) : chooseReference(complete, asked);
    if (choice.kind === 'full') {
      if (choice.because) log.warning(`full backup instead of ${s.type === 'incr' ? 'an incremental' : 'a differential'} one: ${choice.because}`);
      return whole(ctx, choice.because);
    }
    const segment = (await ctx.session.query<{ v: string }>("SELECT current_setting('segment_size') AS v")).rows[0]?.v;
    if (segment !== DEFAULT_SEGMENT_SIZE_TEXT) {
      const because = `block-level backups need 1 GB relation segments; this server was built with segment_size ${segment}`;
      log.warning(`full backup instead of ${choice.level} one: ${because}`);
      return whole(ctx, because);
    }
    const ref = choice.reference;
    log.info(`${choice.level} backup against ${ref.backupId} (${ref.level}, start lsn ${ref.startLsn}): blocks changed since ${ref.startLsn}`);
    const fromLsn = parseLsn(ref.startLsn);
    const found = await findChangedBlocks({ ctx, fromLsn, toLsn: parseLsn(ctx.startLsn), archiveRoot: s.archiveRoot, summarizerWaitMs: s.summarizerWaitMs });
    const refPaths = new Set(ref.files.map((f) => wholePathOf(f.path)));
    const inReference = (p: string) => refPaths.has(p);
    let changed: ChangedBlockLookup;
    let source: string;
    let scanned: number | undefined;
    if (found.ok) {
      changed = found.table;
      source = found.source;
      log.info(`changed blocks found from ${found.source} (${found.detail}): ${formatCount(found.table.blockCount)} blocks changed`);
    } else {
      // No WAL summary covers the range: every page of the reference's relation files is read and
      // kept when its LSN is the reference's start or later (./lsn-scan.ts) — a full backup's
      // reading, an incremental's storing.
      log.warning(`the changed blocks cannot be found from WAL summaries (${found.reasons.join('; ')}): reading every page of the relation files instead (page LSN scan)`);
      const scan = await scanChangedBlocks({ entries: ctx.entries, inReference, fromLsn, blockSize: ctx.blockSize, blocksPerSegment: DEFAULT_BLOCKS_PER_SEGMENT, ...(ctx.signal ? { signal: ctx.signal } : {}) });
      changed = scan.lookup;
      source = 'page LSN scan';
      scanned = scan.bytesScanned;
      log.info(`changed blocks found from the page LSN scan (${formatCount(scan.filesScanned)} relation files, ${formatBytes(scan.bytesScanned)} read, pages with an LSN from ${ref.startLsn} on): ${formatCount(scan.changedBlocks)} blocks changed`);
    }
    const plan = planBlocks({ entries: ctx.entries, changed, inReference, blockSize: ctx.blockSize, blocksPerSegment: DEFAULT_BLOCKS_PER_SEGMENT });
    const st = plan.stats;
    // A scan read every page it judged: nothing of those files was left unread.
    const bytesRead = scanned ?? st.bytesRead;
    const bytesSkipped = scanned === undefined ? st.bytesSkipped : 0;
    log.info(`relation files: ${formatCount(st.incrementalFiles)} incremental (${formatCount(st.changedBlocks)} blocks, ${formatBytes(bytesRead)} read), ${formatCount(st.unchangedFiles)} unchanged, ${formatCount(st.wholeFiles)} whole; ${formatBytes(bytesSkipped)} of relation files not read`);
    return {
      entries: plan.entries,
      totalBytes: plan.totalBytes,
      level: choice.level,
      reference: { backupId: ref.backupId, startLsn: ref.startLsn, timeline: ref.stopTimeline },
      changedBlocks: { source, changedBlocks: st.changedBlocks, wholeFiles: st.wholeFiles, incrementalFiles: st.incrementalFiles, unchangedFiles: st.unchangedFiles, bytesRead, bytesSkipped },
    };
  };
}
