import type { ParamScope } from '../config/schema.js';
import { runCheck } from './check.js';
import type { CommandContext } from './context.js';
import type { CommandResult } from './output.js';
import { runDemo } from './demo.js';
import { runShimParams } from './shim-params.js';

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
    run: runCheck,
  },
  {
    name: 'demo',
    summary: 'start a throwaway cluster and show what pgbacula sees (no setup needed)',
    usage: 'pgbacula demo [--pg-bin-dir DIR] [--json]',
    scopes: ['options'],
    details: 'Uses the newest PostgreSQL under /usr/lib/postgresql unless --pg-bin-dir names one.',
    run: runDemo,
  },
  {
    name: 'shim-params',
    summary: 'the parameter list compiled into the Bacula FD shim (build helper)',
    usage: 'pgbacula shim-params --json',
    scopes: [],
    hidden: true,
    run: runShimParams,
  },
];

// `check --mode` selects the mode to judge; it is a backup parameter, so allow that scope's key.
export function scopesFor(cmd: CommandDef): readonly ParamScope[] {
  return cmd.name === 'check' ? [...cmd.scopes, 'backup'] : cmd.scopes;
}

export function findCommand(name: string): CommandDef | undefined {
  return COMMANDS.find((c) => c.name === name);
}
