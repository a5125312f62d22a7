/**
 * The native archive helper's per-major table (generated from src/pg/versions.ts at build time,
 * native/wal-push/gen-facts.mjs) agrees with the TypeScript one: a stale build or a hand edit of
 * the generated header fails here.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ARCHIVE_FORMAT } from '../../src/archive/layout.js';
import { SUPPORTED_MAJORS, SUPPORTED_RANGE, versionFacts } from '../../src/pg/versions.js';
import { REPO_FORMAT } from '../../src/repo/layout.js';
import { DEFAULT_WAL_BLOCK_SIZE } from '../../src/wal/lsn.js';
import { NATIVE_WAL_PUSH } from '../harness/wal-pushers.js';

describe('pgbacula-wal-push facts', () => {
  it('page magics, pg_control versions and the switch-tail rule of every supported major are those of src/pg/versions.ts', () => {
    const facts = JSON.parse(execFileSync(NATIVE_WAL_PUSH, ['--print-facts'], { encoding: 'utf8' })) as {
      supportedRange: string;
      archiveFormat: number;
      repoFormat: number;
      walBlockSize: number;
      majors: { major: number; xlogPageMagic: number; pgControlVersion: number; switchZeroesSegmentTail: boolean }[];
    };
    expect(facts.majors).toEqual(
      SUPPORTED_MAJORS.map((m) => ({
        major: m,
        xlogPageMagic: versionFacts(m).xlogPageMagic,
        pgControlVersion: versionFacts(m).pgControlVersion,
        switchZeroesSegmentTail: versionFacts(m).switchZeroesSegmentTail,
      })),
    );
    expect(facts).toMatchObject({ supportedRange: SUPPORTED_RANGE, archiveFormat: ARCHIVE_FORMAT, repoFormat: REPO_FORMAT, walBlockSize: DEFAULT_WAL_BLOCK_SIZE });
  });
});
