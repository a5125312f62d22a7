/**
 * What a mode is to the jobs that run it: its settings, read once from the parameters; its
 * backup (and estimate), listing (.ls), query answers and restore. The registry of entries is
 * src/command/modes.ts.
 */
import { resolveConnection, type ConnectionSettings, type Env } from '../config/connection.js';
import { getString, mergeParams, type ParamMap } from '../config/params.js';
import type { ItemProducer, JobContext, QueryAnswer } from '../bacula/conversation.js';
import type { RestoreTarget } from '../item/restore-target.js';

/** What every job of the backend shares. */
export interface BackendSettings {
  readonly env: Env;
  /** Interval of progress lines in the job log; 0 = none. */
  readonly progressIntervalMs: number;
}

/** Where a job reads from, whatever its mode. */
export interface SourceSettings {
  /** The server to read from: standby_host replaces the connection host. */
  readonly connection: ConnectionSettings;
  /** Configured cluster name, or undefined (each mode names it by the server then). */
  readonly cluster: string | undefined;
  readonly pgBinDir: string | undefined;
}

export function sourceSettingsOf(params: ParamMap, env: Env): SourceSettings {
  const standby = getString(params, 'standby_host');
  const p = standby ? mergeParams(params, new Map([['host', standby]])) : params;
  return {
    connection: resolveConnection(p, env),
    cluster: getString(params, 'cluster') || undefined,
    pgBinDir: params.has('pg_bin_dir') ? getString(params, 'pg_bin_dir') : undefined,
  };
}

/** One job of a mode, as its entry sees it: the parameters already read (each once, on first use). */
export interface ModeJob<S, R> {
  readonly ctx: JobContext;
  readonly backend: BackendSettings;
  source(): SourceSettings;
  settings(): S;
  restoreSettings(): R;
}

/** A restore target that holds resources until the job ends. */
export interface ModeRestoreTarget extends RestoreTarget {
  dispose(): void;
}

export interface ModeEntry<S = unknown, R = unknown> {
  readonly name: string;
  /** The restore_mode that restores this mode's backups. */
  readonly restoreMode: 'dump' | 'pitr' | 'pitr_block';
  /** Parameters of other modes: each one given is warned about (`<name>=<value> <why>`) and ignored. */
  readonly ignored: { readonly names: readonly string[]; readonly when: 'start' | 'restore'; readonly why: string };
  /** A where= restore writes the stored files as they are: what they are, and what stays untouched. */
  readonly files: { readonly what: string; readonly untouched: string };
  /** Refuse when a restore job starts what would otherwise fail only after the FD sent the data. */
  checkRestore?(params: ParamMap): void;
  settings(params: ParamMap, source: SourceSettings, backend: BackendSettings): S;
  restoreSettings(params: ParamMap, backend: BackendSettings): R;
  backup(job: ModeJob<S, R>, kind: 'backup' | 'estimate'): Promise<ItemProducer>;
  /** `.ls` of `path`. */
  listing(job: ModeJob<S, R>, path: string): Promise<ItemProducer>;
  /** `.query` of `parameter`. */
  query(job: ModeJob<S, R>, parameter: string): Promise<QueryAnswer[]>;
  /** The restore into its real destination (a server, a data directory), prepared before the first byte. */
  restore(job: ModeJob<S, R>): Promise<ModeRestoreTarget>;
}
