import { versionFacts, type Major } from '../pg/versions.js';

/**
 * Recovery settings for the restored server's version:
 * recovery.conf before 12; from 12 GUCs appended to postgresql.auto.conf (the last occurrence
 * wins) plus recovery.signal or standby.signal. Pure: returns the files to write.
 */
export type RecoveryTarget =
  | { readonly kind: 'end-of-wal' }
  | { readonly kind: 'immediate' }
  | { readonly kind: 'time'; readonly value: string }
  | { readonly kind: 'lsn'; readonly value: string }
  | { readonly kind: 'xid'; readonly value: string }
  | { readonly kind: 'name'; readonly value: string };

export interface RecoveryPlan {
  readonly restoreCommand: string;
  readonly target: RecoveryTarget;
  readonly action: 'promote' | 'pause' | 'shutdown';
  /** Restore as a standby: standby.signal (or standby_mode) and primary_conninfo. */
  readonly standby?: { readonly primaryConninfo?: string; readonly primarySlotName?: string };
  /** 'latest' follows timeline switches found in the archive (the default from 12, not before). */
  readonly timeline: 'latest' | 'current';
}

export interface RecoveryFile {
  readonly name: string;
  readonly content: string;
  /** append: add to the end of an existing file (postgresql.auto.conf); write: create or replace. */
  readonly how: 'append' | 'write';
}

/** A GUC string value: single quotes doubled, backslashes doubled. */
export function gucQuote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * A target time as the server reads it at startup: space-separated and with a numeric offset.
 * Zone abbreviations (even 'Z') are not loaded yet when the configuration is first read, so
 * '2026-04-23T17:30:00Z' would make the server refuse to start.
 */
export function serverTimeLiteral(iso: string): string {
  return iso.trim().replace('T', ' ').replace(/Z$/i, '+00');
}

function settings(plan: RecoveryPlan): Array<[string, string]> {
  const out: Array<[string, string]> = [['restore_command', plan.restoreCommand]];
  const t = plan.target;
  if (t.kind === 'immediate') out.push(['recovery_target', 'immediate']);
  else if (t.kind === 'time') out.push(['recovery_target_time', serverTimeLiteral(t.value)]);
  else if (t.kind === 'lsn') out.push(['recovery_target_lsn', t.value]);
  else if (t.kind === 'xid') out.push(['recovery_target_xid', t.value]);
  else if (t.kind === 'name') out.push(['recovery_target_name', t.value]);
  if (t.kind !== 'end-of-wal' && !plan.standby) out.push(['recovery_target_action', plan.action]);
  out.push(['recovery_target_timeline', plan.timeline]);
  if (plan.standby?.primaryConninfo) out.push(['primary_conninfo', plan.standby.primaryConninfo]);
  if (plan.standby?.primarySlotName) out.push(['primary_slot_name', plan.standby.primarySlotName]);
  return out;
}

export function recoveryFiles(major: Major, plan: RecoveryPlan): RecoveryFile[] {
  const lines = settings(plan).map(([k, v]) => `${k} = ${gucQuote(v)}`);
  if (versionFacts(major).recoveryConfig === 'recovery.conf') {
    const head = plan.standby ? ["standby_mode = 'on'"] : [];
    return [{ name: 'recovery.conf', content: ['# written by pgbacula restore', ...head, ...lines, ''].join('\n'), how: 'write' }];
  }
  return [
    { name: 'postgresql.auto.conf', content: ['# recovery settings written by pgbacula restore', ...lines, ''].join('\n'), how: 'append' },
    { name: plan.standby ? 'standby.signal' : 'recovery.signal', content: '', how: 'write' },
  ];
}

/** Settings to reset with ALTER SYSTEM once a 12+ server has promoted (recovery.conf is renamed by the server itself). */
export function settingsToResetAfterPromotion(plan: RecoveryPlan): string[] {
  return settings(plan).map(([k]) => k);
}
