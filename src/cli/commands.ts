import type { ParamScope } from '../config/schema.js';
import type { CommandContext } from './context.js';
import type { CommandResult } from './output.js';

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
    run: async (ctx) => (await import('./check.js')).runCheck(ctx),
  },
  {
    name: 'backup',
    summary: 'full physical backup (base backup + its WAL) into a local repository',
    usage: 'pgbacula backup --repo DIR [--pgdata DIR] [--compression-level N] [--parallel-jobs N] [connection flags]',
    scopes: ['backup', 'connection', 'options'],
    details:
      'Hot base backup through the non-exclusive backup API, every data page checksum verified in\n' +
      'flight, every file hashed; the WAL from start to stop is streamed over a temporary slot and\n' +
      'stored with the backup, so it restores on its own. Exit 4 when checksum failures were found.',
    run: async (ctx) => (await import('./backup.js')).runBackupCommand(ctx),
  },
  {
    name: 'restore',
    summary: 'restore a backup from a local repository and start it (six phases)',
    usage: 'pgbacula restore --repo DIR [--backup ID] --pgdata-dir DIR [--overwrite-existing] [--restore-port N] [--pg-bin-dir DIR]',
    scopes: ['restore', 'options'],
    details:
      'pre-check (empty target or overwrite_existing=true, no server running there, free space, same\n' +
      'major), lay-down (parallel, every file hash-checked), WAL setup, start as the directory owner\n' +
      'until consistent, topology, verify (SELECT 1 and every page checksum). Re-running an\n' +
      'interrupted restore into the same directory resumes it.',
    run: async (ctx) => (await import('./restore.js')).runRestoreCommand(ctx),
  },
  {
    name: 'verify',
    summary: 'verify page checksums of a cluster (--pgdata) or a stored backup (--repo) without restoring',
    usage: 'pgbacula verify --pgdata DIR | --repo DIR [--backup ID]',
    scopes: [],
    details:
      '--pgdata: every data page of every relation file, online (torn pages under concurrent writes are\n' +
      're-read, not reported) or offline; exit 4 when a checksum fails. --repo: every stored file present\n' +
      'and equal to its manifest hash, and the WAL from start to stop present; exit 1 when damaged.',
    run: async (ctx) => (await import('./verify.js')).runVerifyCommand(ctx),
  },
  {
    name: 'info',
    summary: 'list the backups of a local repository with state, sizes and LSN range',
    usage: 'pgbacula info --repo DIR [--json]',
    scopes: [],
    run: async (ctx) => (await import('./info.js')).runInfoCommand(ctx),
  },
  {
    name: 'bench',
    summary: 'measure the read / verify / hash / compress pipeline on a data directory, stage by stage',
    usage: 'pgbacula bench --pgdata DIR [--parallel-jobs N] [--json]',
    scopes: ['options'],
    run: async (ctx) => (await import('./bench.js')).runBenchCommand(ctx),
  },
  {
    name: 'demo',
    summary: 'start a throwaway cluster and show what pgbacula sees (no setup needed)',
    usage: 'pgbacula demo [--pg-bin-dir DIR] [--json]',
    scopes: ['options'],
    details: 'Uses the newest PostgreSQL under /usr/lib/postgresql unless --pg-bin-dir names one.',
    run: async (ctx) => (await import('./demo.js')).runDemo(ctx),
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
