/**
 * The hook a block-level mode gives the base backup engine: once the backup has started (its
 * start LSN known) and the cluster walked, the planner decides what each file becomes — whole,
 * an incremental file, or (not a relation file) whole again — and what the manifest says about it.
 */
import type pg from 'pg';
import type { ChangedBlocksReport, ManifestReference } from '../format/backup-manifest.js';
import type { JobLog } from '../item/job-log.js';
import type { Major } from '../pg/versions.js';
import type { PlanEntry, PlanEntryList } from '../pipeline/cluster-walk.js';

export interface PlannerContext {
  readonly entries: PlanEntryList;
  readonly startLsn: string;
  readonly timeline: number;
  readonly systemId: string;
  readonly major: Major;
  readonly pgdata: string;
  readonly blockSize: number;
  readonly walSegmentSize: number;
  /** The session holding the backup open (for questions to the server; never for ending it). */
  readonly session: pg.Client;
  readonly log: JobLog;
  readonly signal?: AbortSignal;
}

export interface PlannedBackup {
  /** In plan order; may be made as they are reached (block lists of incremental files). */
  readonly entries: Iterable<PlanEntry>;
  /** Bytes the entries read and store before compression (for progress). */
  readonly totalBytes: number;
  readonly level: 'full' | 'incremental' | 'differential';
  readonly reference?: ManifestReference;
  readonly changedBlocks?: ChangedBlocksReport;
  readonly fullBecause?: string;
}

export type BackupPlanner = (ctx: PlannerContext) => Promise<PlannedBackup>;
