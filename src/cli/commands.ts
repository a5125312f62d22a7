import type { ParamScope } from '../config/schema.js';
import type { CommandContext } from '../command/context.js';
import type { CommandResult } from '../command/result.js';
import { BACKUP_COMMAND_SCOPES, RESTORE_COMMAND_SCOPES } from '../command/command-scopes.js';

export interface CommandDef {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  /** Parameter scopes the command accepts as flags. */
  readonly scopes: readonly ParamScope[];
  readonly details?: string;
  readonly hidden?: boolean;
  run(ctx: CommandContext): Promise<CommandResult>;
}

export const COMMANDS: readonly CommandDef[] = [
  {
    name: 'check',
    summary: 'connect to a cluster and report what each backup mode needs',
    usage: 'pgbacula check [--host H] [--port P] [--user U] [--dbname D] [--config FILE] [--mode MODE] [--json]',
    scopes: ['connection', 'options'],
    details:
      'Reports version, primary/standby, data checksums, wal_level, archive_mode, summarize_wal (17+),\n' +
      'WAL senders and slots, the privileges of the connecting role, and whether a replication\n' +
      'connection is accepted; then, per mode, every missing prerequisite with the exact fix.\n' +
      'With --mode, exits 1 when that mode is not ready.',
    run: async (ctx) => (await import('../command/check.js')).runCheck(ctx),
  },
  {
    name: 'backup',
    summary: 'full physical backup (base backup + its WAL) into a local repository',
    usage: 'pgbacula backup --repo DIR [--pgdata DIR] [--compression-level N] [--parallel-jobs N] [connection flags]',
    scopes: BACKUP_COMMAND_SCOPES,
    details:
      'Hot base backup through the non-exclusive backup API, every data page checksum verified in\n' +
      'flight, every file hashed; the WAL from start to stop is streamed over a temporary slot and\n' +
      'stored with the backup, so it restores on its own. Exit 4 when checksum failures were found.',
    run: async (ctx) => (await import('../command/backup.js')).runBackupCommand(ctx),
  },
  {
    name: 'restore',
    summary: 'restore a backup from a local repository and start it (six phases)',
    usage: 'pgbacula restore --repo DIR [--backup ID] --pgdata-dir DIR [--overwrite-existing] [--restore-port N] [--pg-bin-dir DIR]',
    scopes: RESTORE_COMMAND_SCOPES,
    details:
      'pre-check (empty target or overwrite_existing=true, no server running there, free space, same\n' +
      'major), lay-down (parallel, every file hash-checked), WAL setup, start as the directory owner\n' +
      'until consistent, topology, verify (SELECT 1 and every page checksum). Re-running an\n' +
      'interrupted restore into the same directory resumes it.',
    run: async (ctx) => (await import('../command/restore.js')).runRestoreCommand(ctx),
  },
  {
    name: 'verify',
    summary: 'verify page checksums of a cluster (--pgdata) or a stored backup (--repo) without restoring',
    usage: 'pgbacula verify --pgdata DIR [--pg-bin-dir DIR] | --repo DIR [--backup ID]',
    // options: pg_bin_dir (pg_controldata tells whether the cluster has checksums at all).
    scopes: ['options'],
    details:
      '--pgdata: every data page of every relation file, online (torn pages under concurrent writes are\n' +
      're-read, not reported) or offline; exit 4 when a checksum fails. --repo: every stored file present\n' +
      'and equal to its manifest hash, and the WAL from start to stop present; exit 1 when damaged.',
    run: async (ctx) => (await import('../command/verify.js')).runVerifyCommand(ctx),
  },
  {
    name: 'info',
    summary: 'list the backups of a local repository with state, sizes and LSN range',
    usage: 'pgbacula info --repo DIR [--json]',
    scopes: [],
    run: async (ctx) => (await import('../command/info.js')).runInfoCommand(ctx),
  },
  {
    name: 'wal-push',
    summary: 'archive one WAL file (archive_command): validated, fsynced, never overwriting different bytes',
    usage: "pgbacula wal-push [--repo DIR | --wal-spool DIR] [--pgdata DIR] FILE      (archive_command = 'pgbacula wal-push --repo DIR %p')",
    scopes: ['options'],
    details:
      'Stores FILE under <archive>/<system-identifier>/<timeline>/ (history files one level up), where\n' +
      '<archive> is DIR/wal of a repository or the wal_spool directory. The file is checked first: its\n' +
      'page headers (system identifier of the data directory it runs in, segment size, major, page\n' +
      'addresses), and for timeline N > 1 the N.history file must be archived (it is taken from pg_wal\n' +
      'when missing). An identical copy already archived is success; different bytes under an existing\n' +
      'segment or history name are refused (exit 1). Silent on success.',
    run: async (ctx) => (await import('../command/wal-push.js')).runWalPushCommand(ctx),
  },
  {
    name: 'wal-fetch',
    summary: 'copy one archived WAL file to where recovery wants it (restore_command)',
    usage: "pgbacula wal-fetch [--repo DIR | --wal-spool DIR] [--pgdata DIR] [--staged DIR] [--latest] NAME DEST   (restore_command = 'pgbacula wal-fetch --repo DIR %f %p')",
    scopes: ['options'],
    details:
      'Exit 0 when the complete file is at DEST; exit 1 without output when it is not archived (recovery\n' +
      'probes for files that do not exist). A .partial segment is not served as a complete one (a\n' +
      'line says so when only such a copy exists), except with --latest when it is the end of WAL (no\n' +
      'complete copy, nothing later, no newer timeline): pgbacula restore asks for that. Every record of a segment is checked before it is\n' +
      'served: a damaged, foreign or unreadable file, or a wrong command line, exits 200 with the reason —\n' +
      'PostgreSQL stops recovery on a status above 125 instead of promoting without that WAL.\n' +
      '--staged DIR: a backup\'s own WAL (pgbacula restore stages it), served when the archive lacks a file.',
    run: async (ctx) => (await import('../command/wal-fetch.js')).runWalFetchCommand(ctx),
  },
  {
    name: 'wal-receive',
    summary: 'stream WAL continuously over a physical replication slot into the archive (long-running)',
    usage: 'pgbacula wal-receive [--repo DIR | --wal-spool DIR] [--slot-name S] [--create-slot] [--synchronous-receive] [connection flags]',
    scopes: ['connection', 'options'],
    details:
      'Like pg_receivewal into the same archive wal-push feeds: the open segment is a .partial in\n' +
      '<archive>/<system-identifier>/.receive/, each complete segment is fsynced and moved into the\n' +
      'archive, the slot advances only with what is fsynced (a killed receiver loses nothing), history\n' +
      'files are archived before their timeline, a promotion upstream is followed to the new timeline,\n' +
      'lost connections are retried with backoff. --synchronous-receive reports each write as flushed\n' +
      'once fsynced: list its application_name in synchronous_standby_names. Stops on SIGTERM/SIGINT.',
    run: async (ctx) => (await import('../command/wal-receive.js')).runWalReceiveCommand(ctx),
  },
  {
    name: 'bench',
    summary: 'measure the read / verify / hash / compress pipeline on a data directory, stage by stage',
    usage: 'pgbacula bench --pgdata DIR [--parallel-jobs N] [--json]',
    scopes: ['options'],
    run: async (ctx) => (await import('../command/bench.js')).runBenchCommand(ctx),
  },
  {
    name: 'demo',
    summary: 'start a throwaway cluster and show what pgbacula sees (no setup needed)',
    usage: 'pgbacula demo [--pg-bin-dir DIR] [--json]',
    scopes: ['options'],
    details: 'Uses the newest PostgreSQL under /usr/lib/postgresql unless --pg-bin-dir names one.',
    run: async (ctx) => (await import('../command/demo.js')).runDemo(ctx),
  },
  {
    name: 'backend',
    summary: 'the Bacula FD plugin backend (started by pgbacula-fd.so; speaks the metaplugin protocol on stdin/stdout)',
    usage: 'pgbacula backend',
    scopes: [],
    hidden: true,
    details:
      'Not for interactive use: the FD starts it through a launcher script (BACKEND_CMD cannot carry\n' +
      'arguments), e.g. #!/bin/sh + exec node --no-warnings /usr/lib/pgbacula/bin/pgbacula.js backend.',
    run: async (ctx) => (await import('../command/bacula/backend.js')).runBackend(ctx),
  },
  {
    name: 'shim-params',
    summary: 'the parameter list compiled into the Bacula FD shim (build helper)',
    usage: 'pgbacula shim-params --json',
    scopes: [],
    hidden: true,
    run: async (ctx) => (await import('./shim-params.js')).runShimParams(ctx),
  },
];

// `check --mode` selects the mode to judge; it is a backup parameter, so allow that scope's key.
export function scopesFor(cmd: CommandDef): readonly ParamScope[] {
  return cmd.name === 'check' ? [...cmd.scopes, 'backup'] : cmd.scopes;
}

export function findCommand(name: string): CommandDef | undefined {
  return COMMANDS.find((c) => c.name === name);
}
