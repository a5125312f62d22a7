import { describeEndpoint } from '../config/connection.js';
import { getList, getString } from '../config/params.js';
import type { BackupMode } from '../config/schema.js';
import { EXIT } from '../errors.js';
import { assessModes, type Finding, type ModeReadiness } from '../server/prerequisites.js';
import { assessStandbyReach, assessTopologyCapture } from '../server/topology-prerequisites.js';
import { standbyEndpoint } from './modes/pitr.js';
import { collectServerFacts, type ServerFacts } from '../server/server-facts.js';
import { openSession } from '../server/session.js';
import type { CommandContext } from './context.js';
import { ok, table, type CommandResult } from './result.js';

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

function renderFacts(f: ServerFacts, endpoint: string): string {
  const roleBits = [
    f.user.superuser ? 'superuser' : 'not superuser',
    f.user.replication ? 'replication' : 'no replication',
    f.user.readAllData === null ? 'pg_read_all_data n/a (PostgreSQL 14+)' : f.user.readAllData ? 'pg_read_all_data' : 'no pg_read_all_data',
  ];
  const rc = f.replicationConnection;
  return [
    `PostgreSQL ${f.version} at ${endpoint}${f.supported ? '' : ' (NOT SUPPORTED)'}`,
    table([
      ['role', f.role],
      ['data checksums', f.dataChecksums ? 'on' : 'off'],
      ['wal_level', f.walLevel],
      ['archive_mode', f.archiveMode + (f.archiveCommand ? ` (archive_command '${f.archiveCommand}')` : '')],
      ['summarize_wal', f.summarizeWal === null ? 'n/a (PostgreSQL 17+)' : f.summarizeWal ? 'on' : 'off'],
      ['max_wal_senders', `${f.maxWalSenders} (${f.maxWalSenders - f.walSendersInUse} free)`],
      ['max_replication_slots', `${f.maxReplicationSlots} (${f.maxReplicationSlots - f.replicationSlotsInUse} free)`],
      ['wal_segment_size', `${f.walSegmentSize / (1024 * 1024)} MiB`],
      ['connected as', `${f.user.name}: ${roleBits.join(', ')}`],
      ['backup functions', yesNo(f.user.superuser || f.user.canRunBackupFunctions)],
      ['replication connection', rc.ok ? `ok (system identifier ${rc.systemIdentifier}, timeline ${rc.timeline}, ${rc.xlogpos})` : `refused: ${rc.error}`],
    ]),
  ].join('\n');
}

function renderModes(modes: readonly ModeReadiness[]): string {
  const lines: string[] = ['', 'Modes:'];
  for (const m of modes) {
    const warn = m.findings.filter((f) => f.severity === 'warning').length;
    if (!m.available) {
      lines.push(`  ${m.mode.padEnd(14)} not available in this version`);
      continue;
    }
    lines.push(`  ${m.mode.padEnd(14)} ${m.ready ? (warn ? `ready, ${warn} warning${warn > 1 ? 's' : ''}` : 'ready') : 'NOT READY'}`);
    for (const f of m.findings) {
      lines.push(`    - ${f.severity === 'blocker' ? 'missing' : f.severity}: ${f.problem}`);
      if (f.fix !== 'nothing to do') lines.push(`      fix: ${f.fix}`);
    }
  }
  return lines.join('\n');
}

/** What track_replication_state=true can capture with this role (docs/replication-topology.md). */
function renderTopology(findings: readonly Finding[], reach: readonly Finding[]): string {
  const lines = ['', 'Replication topology capture (track_replication_state=true, modes pitr and pitr_block):'];
  const warn = findings.filter((f) => f.severity !== 'note').length;
  lines.push(`  ${warn ? `${warn} thing${warn > 1 ? 's' : ''} it cannot read` : 'everything it captures is readable'}`);
  if (reach.length) {
    const bad = reach.filter((f) => f.severity !== 'note').length;
    lines.push(`  standby_hosts: ${reach.length - bad} of ${reach.length} reached as standbys of this server`);
  }
  for (const f of [...findings, ...reach]) {
    lines.push(`    - ${f.severity}: ${f.problem}`);
    if (f.fix !== 'nothing to do') lines.push(`      fix: ${f.fix}`);
  }
  return lines.join('\n');
}

/**
 * `pgbacula check`: connect, report what the server is and what each mode still needs, with
 * the exact fix. With --mode, the exit status says whether that mode is ready (1 if not).
 */
export async function runCheck(ctx: CommandContext): Promise<CommandResult> {
  const c = ctx.connection();
  const client = await openSession(c, { applicationName: 'pgbacula check' });
  let facts: ServerFacts;
  let topology: Finding[];
  let reach: Finding[] = [];
  try {
    facts = await collectServerFacts(client, c);
    topology = await assessTopologyCapture(client, facts.role === 'standby' ? 'standby' : 'primary');
    const hosts = getList(ctx.params, 'standby_hosts');
    if (hosts.length) reach = await assessStandbyReach(client, hosts.map((h) => standbyEndpoint(ctx.params, ctx.env, h)));
  } finally {
    await client.end().catch(() => undefined);
  }
  const modes = assessModes(facts);
  const wanted = ctx.params.has('mode') ? (getString(ctx.params, 'mode') as BackupMode) : undefined;
  const exitCode = wanted && !modes.find((m) => m.mode === wanted)?.ready ? EXIT.FAILURE : EXIT.OK;
  const endpoint = describeEndpoint(c);
  return ok(
    { endpoint, server: facts, modes, topologyCapture: [...topology, ...reach] },
    renderFacts(facts, endpoint) + '\n' + renderModes(wanted ? modes.filter((m) => m.mode === wanted) : modes) + '\n' + renderTopology(topology, reach),
    exitCode,
  );
}
