import { describe, expect, it } from 'vitest';
import { combinableLabel } from '../../src/format/backup-label.js';
import { manifestPathProblem } from '../../src/format/backup-manifest.js';

// A label as PostgreSQL 17 returns it from pg_backup_stop.
const server = [
  'START WAL LOCATION: 0/9000028 (file 000000010000000000000009)',
  'CHECKPOINT LOCATION: 0/9000080',
  'BACKUP METHOD: streamed',
  'BACKUP FROM: primary',
  'START TIME: 2026-11-24 23:40:29 UTC',
  'LABEL: pgbacula 20261124-234029F',
  'START TIMELINE: 1',
  '',
].join('\n');

describe('the backup_label kept for pg_combinebackup', () => {
  it('of a full backup is the server label, byte for byte', () => {
    expect(combinableLabel(server)).toBe(server);
  });

  it('of an incremental backup adds the reference start LSN and timeline, as PostgreSQL writes them', () => {
    const label = combinableLabel(server, { startLsn: '0/5000028', timeline: 1 });
    expect(label).toBe(`${server}INCREMENTAL FROM LSN: 0/5000028\nINCREMENTAL FROM TLI: 1\n`);
    // The lines pg_combinebackup removes leave the server's label.
    expect(label.replace(/^INCREMENTAL FROM (LSN|TLI): .*\n/gm, '')).toBe(server);
    expect(combinableLabel(server, { startLsn: '1a/ff000028', timeline: 3 })).toMatch(/\nINCREMENTAL FROM LSN: 1A\/FF000028\nINCREMENTAL FROM TLI: 3\n$/);
  });

  it('ends with a newline even when the server label did not', () => {
    expect(combinableLabel(server.trimEnd(), { startLsn: '0/5000028', timeline: 1 })).toContain('START TIMELINE: 1\nINCREMENTAL FROM LSN: 0/5000028\n');
  });

  it('refuses a reference that is not an LSN and a timeline', () => {
    expect(() => combinableLabel(server, { startLsn: '0/5000028\nX', timeline: 1 })).toThrow(/not an LSN/);
    expect(() => combinableLabel(server, { startLsn: '0/5000028', timeline: 0 })).toThrow(/not an LSN/);
  });

  it('is a path a manifest may list', () => {
    const file = { path: 'pgdata/backup_label', type: 'file' as const, size: 10, mode: 0o600, mtime: '2026-11-24T23:40:29.000Z' };
    expect(manifestPathProblem({ files: [file], tablespaces: [] })).toBeUndefined();
  });
});
