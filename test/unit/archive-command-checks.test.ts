/**
 * `pgbacula check` and every job's prerequisites accept both archive_command forms that archive
 * with pgbacula — `pgbacula wal-push` and the native helper `pgbacula-wal-push` — and say what
 * the native one does not do (block summaries).
 */
import { describe, expect, it } from 'vitest';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import { assessModes } from '../../src/server/prerequisites.js';
import type { ServerFacts } from '../../src/server/server-facts.js';

function facts(archiveCommand: string): ServerFacts {
  return {
    version: '16.4',
    versionNum: 160004,
    major: 16,
    supported: true,
    role: 'primary',
    dataChecksums: true,
    walLevel: 'replica',
    archiveMode: 'on',
    archiveCommand,
    summarizeWal: null,
    maxWalSenders: 10,
    walSendersInUse: 0,
    maxReplicationSlots: 10,
    replicationSlotsInUse: 0,
    walSegmentSize: 16 * 1024 * 1024,
    dataDirectory: '/var/lib/postgresql/16/main',
    user: { name: 'backup', superuser: true, replication: true, readAllData: true, canRunBackupFunctions: true },
    replicationConnection: { ok: true, systemIdentifier: '7311887020705307463', timeline: 1, xlogpos: '0/3000000' },
  };
}

const problems = (cmd: string, mode: string) => assessModes(facts(cmd)).find((m) => m.mode === mode)!.findings.map((f) => `${f.severity}: ${f.problem}`);

describe('archive_command in the checks', () => {
  it.each([
    ['pgbacula wal-push %p'],
    [archiveCommandLine({ repo: '/backup/pg' })],
    ['/opt/pgbacula/native/build/pgbacula-wal-push --repo /backup/pg %p'],
    [archiveCommandLine({ spool: '/var/lib/pgbacula/wal-spool', native: true })],
  ])('%s archives with pgbacula: pitr and pitr_block have a source of WAL and of changed blocks', (cmd) => {
    expect(problems(cmd, 'pitr').filter((p) => /archive_command/.test(p))).toEqual([]);
    expect(problems(cmd, 'pitr_block').filter((p) => /no source of changed blocks/.test(p))).toEqual([]);
  });

  it('the native helper is noted for pitr_block (no block summaries), wal-push is not; another command is a warning', () => {
    expect(problems('/usr/lib/pgbacula/pgbacula-wal-push --wal-spool /s %p', 'pitr_block').join('\n')).toMatch(/^note: archive_command is the native helper pgbacula-wal-push: it stores no block summaries/m);
    expect(problems('pgbacula wal-push %p', 'pitr_block').join('\n')).not.toMatch(/no block summaries/);
    expect(problems('cp %p /mnt/%f', 'pitr')).toContain("warning: archive_command does not call pgbacula wal-push or pgbacula-wal-push (it is 'cp %p /mnt/%f')");
  });
});
