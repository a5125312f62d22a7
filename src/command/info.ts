import { EXIT } from '../errors.js';
import { formatBytes } from '../item/job-log.js';
import { assertRepository, listBackups } from '../repo/catalog.js';
import { requireRepo } from './backup.js';
import { walArchiveRoot } from '../archive/layout.js';
import { windowToJson } from '../archive/window.js';
import { describeWindowReport, windowReports } from '../archive/window-report.js';
import type { CommandContext } from './context.js';
import type { BackupManifest } from '../format/backup-manifest.js';
import { describeTopology, type TopologyDocument } from '../format/topology.js';
import { loadTopology } from '../restore/topology-restore.js';
import { redactConninfo, scrub } from '../config/redact.js';
import { ok, type CommandResult } from './result.js';

/**
 * The replication topology a backup captured, for showing: every conninfo with its password
 * masked (the stored document keeps them; nothing printed does).
 */
function topologyOf(repo: string, m: BackupManifest): { topology?: TopologyDocument; topologyProblem?: string } {
  try {
    const doc = loadTopology(repo, m);
    if (!doc) return {};
    return {
      topology: {
        ...doc,
        subscriptions: doc.subscriptions.map((s) => ({ ...s, conninfo: s.conninfo === null ? null : redactConninfo(s.conninfo) })),
        standbys: doc.standbys.map((s) => ({ ...s, primaryConninfo: redactConninfo(s.primaryConninfo) })),
        standbySettings: doc.standbySettings && { ...doc.standbySettings, primaryConninfo: doc.standbySettings.primaryConninfo === null ? null : redactConninfo(doc.standbySettings.primaryConninfo) },
      },
    };
  } catch (e) {
    return { topologyProblem: scrub((e as Error).message) };
  }
}

/** `pgbacula info --repo DIR`: every backup with its state, sizes, LSN range and captured topology. */
export async function runInfoCommand(ctx: CommandContext): Promise<CommandResult> {
  const repo = requireRepo(ctx);
  await assertRepository(repo);
  const backups = await listBackups(repo, true);
  const rows = backups.map((b) =>
    b.state === 'complete'
      ? {
          id: b.id,
          state: b.state,
          mode: b.manifest.mode,
          level: b.manifest.level,
          pgVersion: b.manifest.pgVersion,
          systemIdentifier: b.manifest.systemIdentifier,
          startLsn: b.manifest.startLsn,
          stopLsn: b.manifest.stopLsn,
          timeline: b.manifest.stopTimeline,
          startTime: b.manifest.startTime,
          stopTime: b.manifest.stopTime,
          rawBytes: b.manifest.files.reduce((s, f) => s + (f.incremental?.fileSize ?? f.size), 0),
          storedBytes: b.storedBytes,
          ...(b.manifest.reference ? { reference: b.manifest.reference.backupId } : {}),
          ...(b.manifest.changedBlocks ? { changedBlocks: b.manifest.changedBlocks } : {}),
          ...(b.manifest.fullBecause ? { fullBecause: b.manifest.fullBecause } : {}),
          pageVerification: b.manifest.pageVerification,
          checksumFailures: b.manifest.checksumFailures,
          ...topologyOf(repo, b.manifest),
        }
      : { id: b.id, state: b.state, reason: b.reason },
  );
  // The recoverable window per cluster: earliest and latest restorable point, every WAL gap.
  const manifests = backups.flatMap((b) => (b.state === 'complete' ? [b.manifest] : []));
  const reports = await windowReports(walArchiveRoot({ repo }), manifests).catch(() => []);
  const windowLines = reports.flatMap((r) => describeWindowReport(r));
  const text = rows.length === 0
    ? `repository ${repo}: no backups`
    : [`repository ${repo}:`, ...rows.map((r) =>
        'reason' in r
          ? `  ${r.id}  ${r.state.toUpperCase()}  ${r.reason}`
          : `  ${r.id}  ${r.state}  ${r.mode} ${r.level}${r.reference ? ` of ${r.reference}` : ''}  PG ${r.pgVersion}  lsn ${r.startLsn}..${r.stopLsn} tli ${r.timeline}  ${formatBytes(r.rawBytes)} (stored ${formatBytes(r.storedBytes)}${r.reference ? `, ${((100 * r.storedBytes) / Math.max(1, r.rawBytes)).toFixed(1)} %` : ''})  pages ${r.pageVerification}${r.checksumFailures ? ` (${r.checksumFailures} failures)` : ''}  ${r.stopTime}${
              r.changedBlocks ? `\n      changed blocks from ${r.changedBlocks.source}: ${r.changedBlocks.changedBlocks} in ${r.changedBlocks.incrementalFiles} incremental files, ${r.changedBlocks.unchangedFiles} unchanged, ${r.changedBlocks.wholeFiles} whole` : ''}${
              r.fullBecause ? `\n      full because ${r.fullBecause}` : ''}${
              r.topology ? `\n${describeTopology(r.topology, redactConninfo).map((l) => `      ${scrub(l)}`).join('\n')}` : r.topologyProblem ? `\n      topology: ${r.topologyProblem}` : ''}`,
      )].join('\n');
  const damaged = rows.filter((r) => r.state === 'damaged');
  const damagedWal = reports.reduce((n, r) => n + r.damaged.length, 0);
  const tail = [
    damaged.length ? `${damaged.length} damaged backup(s): kept as found; pgbacula verify --repo ${repo} says what is wrong` : '',
    damagedWal ? `${damagedWal} damaged WAL file(s) in the archive: restore an intact copy (e.g. from Bacula) under the same name; pgbacula verify --repo ${repo} checks them all` : '',
  ].filter(Boolean).map((l) => `\n${l}`).join('');
  return ok(
    { repo, backups: rows, windows: reports.map((r) => windowToJson(r.window)) },
    (windowLines.length ? `${text}\n${windowLines.join('\n')}` : text) + tail,
    damaged.length || damagedWal ? EXIT.FAILURE : EXIT.OK,
  );
}
