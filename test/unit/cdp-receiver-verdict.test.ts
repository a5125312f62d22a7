import { describe, expect, it } from 'vitest';
import { judgeReceiver, receiverFix, rpoLine, type ReceiverFacts } from '../../src/modes/cdp/receiver-verdict.js';

/** What a cdp job says of its receiver (src/modes/cdp/receiver-verdict.ts). */
const T = { windowSeconds: 60, maxLagSeconds: 30, maxLagBytes: 64 * 1024 * 1024 };
const healthy: ReceiverFacts = {
  spoolRoot: '/spool',
  systemId: '7311887020705307463',
  lock: { pid: 4242, alive: true },
  slotName: 'pgbacula',
  applicationName: 'pgbacula_wal_receive',
  slot: { active: true, retainedBytes: 8192, walStatus: 'reserved', safeWalSizeBytes: null },
  stream: { flushLagBytes: 0, flushLagSeconds: 0.002, syncState: 'sync' },
  sincePreviousJobSeconds: 58,
};

describe('a cdp job judges its receiver', () => {
  it('healthy: lines for the lock, the slot, the lag and the previous job; no warning', () => {
    const v = judgeReceiver(healthy, T);
    expect(v.refusal).toBeUndefined();
    expect(v.warnings).toEqual([]);
    expect(v.lines.join('\n')).toMatch(/receiver: wal-receive process 4242 alive \(\/spool\/7311887020705307463\/\.receive\/lock\)/);
    expect(v.lines.join('\n')).toMatch(/slot "pgbacula": active, restart_lsn 8\.0 KiB behind the server, wal_status reserved/);
    expect(v.lines.join('\n')).toMatch(/receiver flush lag: 0 B, 0\.0 s \(synchronous/);
    expect(v.lines.join('\n')).toMatch(/previous cdp job: 58 s ago \(cdp_window_seconds=60\)/);
    expect(v.spoolLagSeconds).toBe(0);
  });

  it('no receiver, or a dead one: the job is refused, with the fix', () => {
    expect(judgeReceiver({ ...healthy, lock: undefined }, T).refusal).toMatch(/no wal-receive feeds the spool \/spool for system \d+: there is no .*\.receive\/lock/);
    expect(judgeReceiver({ ...healthy, lock: { pid: 99, alive: false } }, T).refusal).toMatch(/names process 99, which no longer exists/);
    expect(receiverFix({ spoolRoot: '/spool', slotName: 'pgbacula', applicationName: 'pgbacula_wal_receive', cluster: 'main' })).toMatch(/systemctl enable --now pgbacula-wal-receive@main.*pgbacula wal-receive --wal-spool \/spool --slot-name pgbacula/);
  });

  it('warns past the thresholds with the figure', () => {
    const v = judgeReceiver({ ...healthy, slot: { active: true, retainedBytes: 100 * 1024 * 1024 }, stream: { flushLagBytes: 5_000_000, flushLagSeconds: 45, syncState: 'async' }, sincePreviousJobSeconds: 300 }, T);
    expect(v.refusal).toBeUndefined();
    expect(v.warnings.join('\n')).toMatch(/slot "pgbacula" holds 100\.0 MiB of WAL, over cdp_max_lag_mb=64/);
    expect(v.warnings.join('\n')).toMatch(/flush lags 45\.0 s behind the server, over cdp_max_lag_seconds=30/);
    expect(v.warnings.join('\n')).toMatch(/started 300 s ago, more than twice cdp_window_seconds=60/);
    expect(v.spoolLagSeconds).toBe(45);
  });

  it('warns when the slot is missing, inactive or losing WAL, and when the receiver is not connected', () => {
    expect(judgeReceiver({ ...healthy, slot: undefined }, T).warnings.join()).toMatch(/slot "pgbacula" does not exist/);
    expect(judgeReceiver({ ...healthy, slot: { active: false, retainedBytes: 0 } }, T).warnings.join()).toMatch(/is not active/);
    expect(judgeReceiver({ ...healthy, slot: { active: true, retainedBytes: 0, walStatus: 'lost', safeWalSizeBytes: null } }, T).warnings.join()).toMatch(/wal_status lost/);
    const off = judgeReceiver({ ...healthy, stream: undefined }, T);
    expect(off.warnings.join()).toMatch(/not connected/);
    expect(off.spoolLagSeconds).toBeUndefined();
  });

  it('states the RPO', () => {
    expect(rpoLine({ spoolLagSeconds: 0, mediaLagSeconds: 2.25, windowSeconds: 60 })).toBe('RPO now: spool ≤ 0.0 s behind the server, Bacula media ≤ 2.3 s (growing to ≤ 62 s until the next cdp job, cdp_window_seconds=60)');
  });
});
