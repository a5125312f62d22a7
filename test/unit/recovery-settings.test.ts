import { describe, expect, it } from 'vitest';
import { gucQuote, recoveryFiles } from '../../src/restore/recovery-settings.js';
import { shellQuote } from '../../src/os/shell-quote.js';

describe('recovery settings per version', () => {
  const plan = { restoreCommand: "cp '/x/%f' '%p'", target: { kind: 'time', value: '2026-04-23 14:30:00-03' } as const, action: 'promote' as const, timeline: 'latest' as const };
  it('writes recovery.conf before 12', () => {
    const f = recoveryFiles(11, plan);
    expect(f).toHaveLength(1);
    expect(f[0]!.name).toBe('recovery.conf');
    expect(f[0]!.content).toContain("restore_command = 'cp ''/x/%f'' ''%p'''");
    expect(f[0]!.content).toContain("recovery_target_time = '2026-04-23 14:30:00-03'");
    expect(f[0]!.content).toContain("recovery_target_action = 'promote'");
    expect(f[0]!.content).not.toContain('standby_mode');
  });
  it('appends GUCs and writes recovery.signal from 12', () => {
    const f = recoveryFiles(12, plan);
    expect(f.map((x) => [x.name, x.how])).toEqual([['postgresql.auto.conf', 'append'], ['recovery.signal', 'write']]);
    expect(f[0]!.content).toContain("recovery_target_timeline = 'latest'");
  });
  it('a standby gets standby.signal and primary_conninfo, no target action', () => {
    const f = recoveryFiles(17, { ...plan, target: { kind: 'end-of-wal' }, standby: { primaryConninfo: "host=db1 user=rep password='x y'" } });
    expect(f[1]!.name).toBe('standby.signal');
    expect(f[0]!.content).toContain("primary_conninfo = 'host=db1 user=rep password=''x y'''");
    expect(f[0]!.content).not.toContain('recovery_target_action');
    expect(recoveryFiles(10, { ...plan, standby: {} })[0]!.content).toContain("standby_mode = 'on'");
  });
  it('writes target times the server can read at startup (no zone abbreviation)', () => {
    const f = recoveryFiles(16, { ...plan, target: { kind: 'time', value: '2026-11-26T13:19:25.612Z' } });
    expect(f[0]!.content).toContain("recovery_target_time = '2026-11-26 13:19:25.612+00'");
  });
  it('quotes', () => {
    expect(gucQuote("a'b\\c")).toBe("'a''b\\\\c'");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(shellQuote('/usr/lib/node_modules/pgbacula/bin/pgbacula.js')).toBe('/usr/lib/node_modules/pgbacula/bin/pgbacula.js');
    expect(shellQuote('')).toBe("''");
    expect(shellQuote('/srv/my backups')).toBe("'/srv/my backups'");
  });
});
