/**
 * The mode registry (src/command/modes.ts) is the one place a mode is named: every entry is a
 * mode of the schema, and neither the CLI nor the Bacula job branches on a mode's name.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { modeEntry, restoreModeOf } from '../../src/command/modes.js';
import { findParameter } from '../../src/config/schema.js';
import { repoRoot } from '../harness/pg-binaries.js';
import { tsSourceFiles } from '../harness/source-files.js';

const root = repoRoot();

const tsFiles = (dir: string): string[] => tsSourceFiles(dir, root);

describe('mode registry', () => {
  const modes = findParameter('mode')!.values!;

  it('has an entry for dump, parallel_dump, pitr and pitr_block, each a mode of the schema', () => {
    for (const name of ['dump', 'parallel_dump', 'pitr', 'pitr_block']) {
      expect(modes).toContain(name);
      expect(modeEntry(name)?.name).toBe(name);
    }
    expect(modeEntry('no_such_mode')).toBeUndefined();
    expect(restoreModeOf('pitr')).toBe('pitr');
    expect(restoreModeOf('pitr_block')).toBe('pitr_block');
    expect(restoreModeOf('parallel_dump')).toBe('dump');
  });

  it('no mode name is spelled out in src/cli or src/command/bacula', () => {
    const names = modes.map((m) => `'${m}'`);
    const found = [...tsFiles('src/cli'), ...tsFiles('src/command/bacula')].flatMap((f) => {
      const text = readFileSync(join(root, f), 'utf8');
      return names.filter((n) => text.includes(n)).map((n) => `${f}: ${n}`);
    });
    expect(found).toEqual([]);
  });
});
