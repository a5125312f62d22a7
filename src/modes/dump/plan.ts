/**
 * What a dump job works from (the plan read from the server before the first byte) and what its
 * steps share; dump.ts and parallel-dump.ts both use these.
 */
import type { ConnectionSettings } from '../../config/connection.js';
import type { BackupKind } from '../../item/backup-kind.js';
import type { JobLog } from '../../item/job-log.js';
import type { ClientTools } from '../../server/client-tools.js';
import type { DumpManifest } from './layout.js';
import type { DumpSettings } from './settings.js';

export interface DumpDatabase {
  readonly name: string;
  /** pg_database_size: what estimates report (a dump is usually smaller). */
  readonly sizeBytes: number;
}

export interface DumpPlan {
  readonly settings: DumpSettings;
  readonly connection: ConnectionSettings;
  readonly tools: ClientTools;
  readonly cluster: string;
  readonly systemIdentifier: string | null;
  readonly server: { readonly version: string; readonly major: number; readonly role: 'primary' | 'standby' };
  readonly databases: readonly DumpDatabase[];
  readonly tablespaces: DumpManifest['tablespaces'];
}

export interface DumpRunContext {
  /** The job's name in paths: Bacula's JobId. */
  readonly job: string;
  /** What the job asked for (a dump is always whole; the manifest records what was asked). */
  readonly kind: BackupKind;
  readonly log: JobLog;
  readonly signal: AbortSignal;
  /** Headers only, sizes estimated (Bacula estimate). */
  readonly estimate: boolean;
  readonly progressIntervalMs: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Helpers shared with parallel-dump.ts. */
export interface DumpTools {
  readonly plan: DumpPlan;
  readonly ctx: DumpRunContext;
  readonly env: Record<string, string>;
  conninfo(database: string): string;
}
