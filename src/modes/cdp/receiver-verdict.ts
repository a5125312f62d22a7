/**
 * What a cdp job makes of the receiver that feeds its spool (pure: facts in, job log lines,
 * warnings and a refusal out). The facts are gathered by receiver-health.ts; the promise they
 * check is in docs/cdp.md: the spool is at most the receiver's flush lag behind the server, and
 * Bacula's media at most one cdp window behind the spool.
 */
import { formatBytes } from '../../item/job-log.js';

export interface ReceiverFacts {
  readonly spoolRoot: string;
  readonly systemId: string;
  /** The pid in `.receive/lock` and whether that process lives. */
  readonly lock: { readonly pid: number; readonly alive: boolean } | undefined;
  readonly slotName: string;
  readonly applicationName: string;
  /** The slot as pg_replication_slots shows it; undefined when it does not exist. */
  readonly slot:
    | {
        readonly active: boolean;
        /** Bytes between the server's WAL position and restart_lsn: the WAL the slot holds back. */
        readonly retainedBytes: number | undefined;
        /** 13+: wal_status and safe_wal_size (undefined before 13, or null when unlimited). */
        readonly walStatus?: string | undefined;
        readonly safeWalSizeBytes?: number | null | undefined;
      }
    | undefined;
  /** The receiver's row of pg_stat_replication, when it is connected. */
  readonly stream:
    | {
        readonly flushLagBytes: number;
        /** flush_lag in seconds (0 when the server has nothing unacknowledged; undefined when unknown). */
        readonly flushLagSeconds: number | undefined;
        readonly syncState: string;
      }
    | undefined;
  /** Seconds since the previous cdp job of this Job started (undefined for the first). */
  readonly sincePreviousJobSeconds: number | undefined;
}

export interface ReceiverThresholds {
  readonly windowSeconds: number;
  readonly maxLagSeconds: number;
  readonly maxLagBytes: number;
}

export interface ReceiverVerdict {
  /** One line each, in the job log. */
  readonly lines: string[];
  /** Each one a job log warning: the job ends "OK -- with warnings". */
  readonly warnings: string[];
  /** Set when no receiver feeds the spool: the job fails with this reason. */
  readonly refusal: string | undefined;
  /** What the spool may lack of the server's WAL, in seconds (for the RPO line). */
  readonly spoolLagSeconds: number | undefined;
}

const MB = 1024 * 1024;

export function judgeReceiver(f: ReceiverFacts, t: ReceiverThresholds): ReceiverVerdict {
  const lines: string[] = [];
  const warnings: string[] = [];
  const lockPath = `${f.spoolRoot}/${f.systemId}/.receive/lock`;
  if (!f.lock?.alive) {
    const why = f.lock ? `its lock ${lockPath} names process ${f.lock.pid}, which no longer exists` : `there is no ${lockPath}`;
    return { lines, warnings, refusal: `no wal-receive feeds the spool ${f.spoolRoot} for system ${f.systemId}: ${why}`, spoolLagSeconds: undefined };
  }
  lines.push(`receiver: wal-receive process ${f.lock.pid} alive (${lockPath})`);
  if (!f.slot) {
    warnings.push(`replication slot "${f.slotName}" does not exist: the server does not keep the WAL the receiver has not fsynced (a receiver restart can lose WAL)`);
  } else {
    const retained = f.slot.retainedBytes;
    const status = f.slot.walStatus === undefined ? '' : `, wal_status ${f.slot.walStatus}${f.slot.safeWalSizeBytes === null || f.slot.safeWalSizeBytes === undefined ? '' : `, safe_wal_size ${formatBytes(f.slot.safeWalSizeBytes)}`}`;
    lines.push(`slot "${f.slotName}": ${f.slot.active ? 'active' : 'INACTIVE'}, restart_lsn ${retained === undefined ? 'unknown' : `${formatBytes(retained)} behind the server`}${status}`);
    if (!f.slot.active) warnings.push(`replication slot "${f.slotName}" is not active: the receiver (process ${f.lock.pid}) is not streaming from the server (it retries; its log says why)`);
    if (retained !== undefined && retained > t.maxLagBytes) {
      warnings.push(`slot "${f.slotName}" holds ${formatBytes(retained)} of WAL, over cdp_max_lag_mb=${Math.round(t.maxLagBytes / MB)}: the receiver falls behind the server`);
    }
    if (f.slot.walStatus === 'unreserved' || f.slot.walStatus === 'lost') {
      warnings.push(`slot "${f.slotName}" has wal_status ${f.slot.walStatus}: the server ${f.slot.walStatus === 'lost' ? 'has removed' : 'is about to remove'} WAL the receiver has not received (max_slot_wal_keep_size); the spool will have a gap`);
    }
  }
  let spoolLagSeconds: number | undefined;
  if (!f.stream) {
    warnings.push(`the receiver is not connected (no ${f.applicationName} in pg_stat_replication): the spool falls behind the server until it reconnects`);
  } else {
    spoolLagSeconds = f.stream.flushLagBytes === 0 ? 0 : f.stream.flushLagSeconds;
    lines.push(`receiver flush lag: ${formatBytes(f.stream.flushLagBytes)}, ${spoolLagSeconds === undefined ? 'seconds unknown' : `${spoolLagSeconds.toFixed(1)} s`} (${f.stream.syncState === 'sync' ? 'synchronous: a commit returns only once the spool has it' : `sync_state ${f.stream.syncState}`})`);
    if (spoolLagSeconds !== undefined && spoolLagSeconds > t.maxLagSeconds) {
      warnings.push(`the receiver's flush lags ${spoolLagSeconds.toFixed(1)} s behind the server, over cdp_max_lag_seconds=${t.maxLagSeconds}`);
    }
  }
  if (f.sincePreviousJobSeconds === undefined) lines.push('previous cdp job: none recorded for this Job');
  else {
    lines.push(`previous cdp job: ${Math.round(f.sincePreviousJobSeconds)} s ago (cdp_window_seconds=${t.windowSeconds})`);
    if (f.sincePreviousJobSeconds > 2 * t.windowSeconds) {
      warnings.push(`the previous cdp job started ${Math.round(f.sincePreviousJobSeconds)} s ago, more than twice cdp_window_seconds=${t.windowSeconds}: WAL on Bacula media was that far behind (check the Schedule and the Director's concurrency)`);
    }
  }
  return { lines, warnings, refusal: undefined, spoolLagSeconds };
}

/** How to get a receiver running, for the refusal's hint. */
export function receiverFix(o: { readonly spoolRoot: string; readonly slotName: string; readonly applicationName: string; readonly cluster: string }): string {
  return (
    `Start the receiver as the PostgreSQL OS user and keep it running: systemctl enable --now pgbacula-wal-receive@${o.cluster} (README: "cdp setup"), ` +
    `or pgbacula wal-receive --wal-spool ${o.spoolRoot} --slot-name ${o.slotName} --create-slot --synchronous-receive --application-name ${o.applicationName} --host … --port … --user … ` +
    `with ${o.applicationName} in synchronous_standby_names for RPO 0 in the spool. Then run the job again. (cdp_start_receiver=true in the FileSet makes a job start a detached one itself.)`
  );
}

/** The RPO line every cdp job ends with. */
export function rpoLine(o: { readonly spoolLagSeconds: number | undefined; readonly mediaLagSeconds: number; readonly windowSeconds: number }): string {
  const spool = o.spoolLagSeconds === undefined ? 'unknown (the receiver is not connected)' : `${o.spoolLagSeconds.toFixed(1)} s`;
  return `RPO now: spool ≤ ${spool} behind the server, Bacula media ≤ ${o.mediaLagSeconds.toFixed(1)} s (growing to ≤ ${(o.mediaLagSeconds + o.windowSeconds).toFixed(0)} s until the next cdp job, cdp_window_seconds=${o.windowSeconds})`;
}
