import type { BackupMode } from '../config/schema.js';
import type { ServerFacts } from './server-facts.js';
import { SUPPORTED_RANGE, versionFacts } from '../pg/versions.js';
import { pgbaculaArchiver } from './archive-command-kind.js';

export interface Finding {
  /** What is missing, naming the setting or privilege. */
  readonly problem: string;
  /** The exact fix an operator can run. */
  readonly fix: string;
  /** A blocker stops the mode; a warning degrades it (e.g. no checksum verification); a note says what an option would change. */
  readonly severity: 'blocker' | 'warning' | 'note';
}

export interface ModeReadiness {
  readonly mode: BackupMode;
  readonly ready: boolean;
  /** False for a mode this version does not implement (it is then never ready). */
  readonly available: boolean;
  readonly findings: readonly Finding[];
}

const RESTART = 'then restart PostgreSQL';

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

function readAccess(f: ServerFacts): Finding[] {
  if (f.user.superuser || f.user.readAllData) return [];
  const role = quoteIdent(f.user.name);
  return [
    {
      problem: `role ${f.user.name} may not read every table (neither superuser nor member of pg_read_all_data)`,
      fix: versionFacts(f.major).readAllDataRole ? `GRANT pg_read_all_data TO ${role};` : `ALTER ROLE ${role} SUPERUSER; (pg_read_all_data exists from PostgreSQL 14)`,
      severity: 'blocker',
    },
  ];
}

function physicalBase(f: ServerFacts): Finding[] {
  const out: Finding[] = [];
  const role = quoteIdent(f.user.name);
  if (f.walLevel !== 'replica' && f.walLevel !== 'logical') {
    out.push({ problem: `wal_level is ${f.walLevel}`, fix: `ALTER SYSTEM SET wal_level = replica; ${RESTART}`, severity: 'blocker' });
  }
  if (!f.user.superuser && !f.user.replication) {
    out.push({ problem: `role ${f.user.name} lacks the REPLICATION attribute`, fix: `ALTER ROLE ${role} REPLICATION;`, severity: 'blocker' });
  }
  if (!f.user.superuser && !f.user.canRunBackupFunctions) {
    const facts = versionFacts(f.major);
    const fn = `${facts.backupStartSignature}, ${facts.backupStopSignature}`;
    out.push({ problem: `role ${f.user.name} may not run the backup functions`, fix: `GRANT EXECUTE ON FUNCTION ${fn} TO ${role};`, severity: 'blocker' });
  }
  if (f.maxWalSenders - f.walSendersInUse < 1) {
    out.push({
      problem: `no free WAL sender (max_wal_senders ${f.maxWalSenders}, ${f.walSendersInUse} in use)`,
      fix: `ALTER SYSTEM SET max_wal_senders = ${f.maxWalSenders + 2}; ${RESTART}`,
      severity: 'blocker',
    });
  }
  if (!f.replicationConnection.ok) {
    out.push({
      problem: `a replication connection is refused: ${f.replicationConnection.error}`,
      fix: `add "host replication ${f.user.name} <backup-host-address>/32 scram-sha-256" (or a local line) to pg_hba.conf, then SELECT pg_reload_conf();`,
      severity: 'blocker',
    });
  }
  const archiving = f.role === 'standby' ? f.archiveMode === 'always' : f.archiveMode === 'on' || f.archiveMode === 'always';
  if (!archiving) {
    const mode = f.role === 'standby' ? 'always' : 'on';
    out.push({
      problem: `archive_mode is ${f.archiveMode}${f.role === 'standby' ? ' on this standby' : ''}: WAL between jobs is not collected (unless pgbacula wal-receive runs)`,
      fix: `ALTER SYSTEM SET archive_mode = ${mode}; ALTER SYSTEM SET archive_command = 'pgbacula wal-push %p'; ${RESTART} — or run pgbacula wal-receive`,
      severity: 'warning',
    });
  } else if (pgbaculaArchiver(f.archiveCommand) === undefined) {
    out.push({
      problem: `archive_command does not call pgbacula wal-push or pgbacula-wal-push (it is '${f.archiveCommand}')`,
      fix: `ALTER SYSTEM SET archive_command = 'pgbacula wal-push %p'; SELECT pg_reload_conf(); — or run pgbacula wal-receive`,
      severity: 'warning',
    });
  }
  if (!f.dataChecksums) {
    out.push({
      problem: 'data checksums are off: page verification is unavailable (backups still work)',
      fix: versionFacts(f.major).checksumsEnableOffline
        ? 'stop PostgreSQL, run pg_checksums --enable -D <PGDATA>, start it again'
        : 'checksums can only be enabled at initdb time (initdb --data-checksums) before PostgreSQL 12',
      severity: 'warning',
    });
  }
  return out;
}

/**
 * Mode cdp (docs/cdp.md): what pitr needs, WAL from a running wal-receive rather than
 * archive_command (so archiving findings do not apply), and a slot and a WAL sender for the
 * receiver. Whether the receiver runs is checked by every cdp job, which fails without one.
 */
function continuous(f: ServerFacts): Finding[] {
  const out = physicalBase(f).filter((x) => !/^archive_(mode|command)/.test(x.problem));
  if (f.maxReplicationSlots - f.replicationSlotsInUse < 1) {
    out.push({
      problem: `no free replication slot (max_replication_slots ${f.maxReplicationSlots}, ${f.replicationSlotsInUse} in use): wal-receive needs its own slot unless it already exists`,
      fix: `ALTER SYSTEM SET max_replication_slots = ${f.maxReplicationSlots + 2}; ${RESTART}`,
      severity: 'warning',
    });
  }
  out.push({
    problem: 'mode cdp streams WAL with pgbacula wal-receive into wal_spool; every cdp job fails while no receiver runs',
    fix: "run pgbacula wal-receive --wal-spool <wal_spool> --create-slot --synchronous-receive as the PostgreSQL OS user (README: cdp setup), and for RPO 0 in the spool ALTER SYSTEM SET synchronous_standby_names = 'pgbacula_wal_receive'; SELECT pg_reload_conf();",
    severity: 'note',
  });
  return out;
}

/**
 * Block-level backups (docs/block-incremental.md) need what pitr needs, and a source of changed
 * blocks: pgbacula's summaries of the WAL wal-push archives, or on 17+ the server's own. Without
 * either, incremental and differential jobs are full backups (they say why).
 */
function blockLevel(f: ServerFacts): Finding[] {
  const out = physicalBase(f);
  const pgbaculaArchives = (f.archiveMode === 'on' || f.archiveMode === 'always') && pgbaculaArchiver(f.archiveCommand) !== undefined;
  const serverSummaries = versionFacts(f.major).walSummaries;
  if (pgbaculaArchives && pgbaculaArchiver(f.archiveCommand) === 'native') {
    out.push({
      problem: 'archive_command is the native helper pgbacula-wal-push: it stores no block summaries, so incremental jobs summarize the archived WAL they cover themselves (more CPU per job)',
      fix: "nothing to do — or archive_command = 'pgbacula wal-push …' to summarize each segment as it is archived",
      severity: 'note',
    });
  }
  if (serverSummaries && f.summarizeWal) {
    out.push({ problem: 'summarize_wal is on: incremental jobs read the changed blocks from the server\'s own WAL summaries (pgbacula\'s summaries of the archived WAL are the fallback)', fix: 'nothing to do', severity: 'note' });
  } else if (serverSummaries) {
    out.push({
      problem: 'summarize_wal is off (optional): incremental jobs find the changed blocks in pgbacula\'s summaries of the archived WAL',
      fix: "ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf(); — then the server's own summaries are used first",
      severity: 'note',
    });
  }
  if (!pgbaculaArchives && !(serverSummaries && f.summarizeWal)) {
    out.push({
      problem: `no source of changed blocks: WAL is not archived by pgbacula wal-push${serverSummaries ? ' and summarize_wal is off' : ''} — incremental and differential jobs will read every page of the cluster to find them (a page LSN scan: a full backup's reading, an incremental's storing)`,
      fix: `ALTER SYSTEM SET archive_command = 'pgbacula wal-push %p'; (archive_mode = on)${serverSummaries ? ' or ALTER SYSTEM SET summarize_wal = on;' : ''} SELECT pg_reload_conf(); — or run pgbacula wal-receive`,
      severity: 'warning',
    });
  }
  return out;
}

/** Data, not branches: what each mode needs, given what the server told us. */
const RULES: Record<BackupMode, (f: ServerFacts) => Finding[]> = {
  dump: readAccess,
  parallel_dump: readAccess,
  pitr: physicalBase,
  pitr_block: blockLevel,
  cdp: continuous,
};

export function assessModes(f: ServerFacts): ModeReadiness[] {
  return (Object.keys(RULES) as BackupMode[]).map((mode) => {
    const available = true;
    const findings = f.supported ? RULES[mode](f) : [{
      problem: `PostgreSQL ${f.version} is not supported`,
      fix: `use ${SUPPORTED_RANGE}`,
      severity: 'blocker' as const,
    }];
    return { mode, ready: !findings.some((x) => x.severity === 'blocker'), available, findings };
  });
}
