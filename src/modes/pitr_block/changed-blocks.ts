/**
 * Where the blocks changed since the reference come from (docs/block-incremental.md): the
 * server's own summaries on 17+ when they cover the range, else pgbacula's summaries of the
 * archived WAL, else nothing — and the caller reads every page instead (./lsn-scan.ts).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockRefTable } from '../../format/block-ref-table.js';
import { versionFacts } from '../../pg/versions.js';
import { formatLsn } from '../../wal/lsn.js';
import { awaitSummarizer, listServerSummaries, readServerSummaries, summaryCoverage } from '../../server/wal-summaries.js';
import { changedBlocksFromArchive } from '../../archive/changed-blocks.js';
import { listArchivedSystems } from '../../archive/listing.js';
import type { PlannerContext } from '../../physical/planner.js';

export type ChangedBlocksFound =
  | { readonly ok: true; readonly table: BlockRefTable; readonly source: 'server summaries' | 'pgbacula summaries'; readonly detail: string }
  | { readonly ok: false; readonly reasons: readonly string[] };

export interface FindRequest {
  readonly ctx: PlannerContext;
  readonly fromLsn: bigint;
  readonly toLsn: bigint;
  /** The WAL archive whose summaries count (a repository's wal/, or the spool); undefined: none. */
  readonly archiveRoot: string | undefined;
  /** How long to wait for the server's summarizer to reach the backup's start. */
  readonly summarizerWaitMs: number;
}

export async function findChangedBlocks(r: FindRequest): Promise<ChangedBlocksFound> {
  const { ctx } = r;
  const reasons: string[] = [];
  const range = `${formatLsn(r.fromLsn)}..${formatLsn(r.toLsn)}`;
  if (versionFacts(ctx.major).walSummaries) {
    const on = (await ctx.session.query<{ v: string }>("SELECT current_setting('summarize_wal') AS v")).rows[0]?.v === 'on';
    if (!on) {
      reasons.push('the server does not summarize WAL (summarize_wal = off)');
    } else {
      try {
        const state = await awaitSummarizer(ctx.session, ctx.timeline, r.toLsn, { timeoutMs: r.summarizerWaitMs, ...(ctx.signal ? { signal: ctx.signal } : {}) });
        if (!state.reached) {
          reasons.push(`the server's WAL summarizer has reached only ${formatLsn(state.summarizedLsn)}${state.running ? '' : ' and is not running'}`);
        } else {
          const cover = summaryCoverage(await listServerSummaries(ctx.session), ctx.timeline, r.fromLsn, r.toLsn);
          if (!cover.ok) reasons.push(`the server's summaries do not cover ${range}: ${cover.reason}`);
          else {
            const table = await readServerSummaries(ctx.pgdata, cover.use);
            return { ok: true, table, source: 'server summaries', detail: `${cover.use.length} summary file(s) of the server for ${range}` };
          }
        }
      } catch (e) {
        reasons.push(`the server's summaries cannot be read: ${(e as Error).message}`);
      }
    }
  }
  if (r.archiveRoot === undefined) {
    reasons.push('no WAL archive to summarize');
    return { ok: false, reasons };
  }
  const systems = await listArchivedSystems(r.archiveRoot).catch(() => [] as string[]);
  if (!systems.includes(ctx.systemId)) {
    reasons.push(`the WAL archive ${r.archiveRoot} holds no WAL of database system ${ctx.systemId} (archive_command = 'pgbacula wal-push …' fills it)`);
    return { ok: false, reasons };
  }
  const found = await changedBlocksFromArchive({
    root: r.archiveRoot,
    systemId: ctx.systemId,
    timeline: ctx.timeline,
    segmentSize: ctx.walSegmentSize,
    fromLsn: r.fromLsn,
    toLsn: r.toLsn,
    // The segment the backup starts in is usually still being written: its records before the
    // start are read from the server's pg_wal (this job runs on the database host).
    readMissing: (name) => readFile(join(ctx.pgdata, 'pg_wal', name)).then((b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength), () => undefined),
  });
  if (!found.ok) {
    reasons.push(found.reason);
    return { ok: false, reasons };
  }
  return {
    ok: true,
    table: found.table,
    source: 'pgbacula summaries',
    detail: `${found.segments} WAL segment(s) for ${range}: ${found.fromSummaries} summarized when archived, ${found.summarizedNow} summarized now${reasons.length ? `; not from the server's summaries: ${reasons.join('; ')}` : ''}`,
  };
}
