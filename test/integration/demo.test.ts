import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../harness/pg-binaries.js';

const execFileAsync = promisify(execFile);

// The README's demo line, run as a user would run it (the built CLI, a child process): the
// whole story, and its proof must hold — exact rows at the chosen second.
describe('pgbacula demo', () => {
  it('takes a full and an incremental backup, archives WAL, restores to a chosen second and proves the rows match exactly', async () => {
    const { stdout, stderr } = await execFileAsync(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), 'demo', '--json'], { timeout: 180_000 });
    const out = JSON.parse(stdout) as { exact: boolean; restoredIds: number[]; expectedIds: number[]; target: string };
    expect(out.exact).toBe(true);
    expect(out.restoredIds).toEqual(out.expectedIds);
    // The 1,901 orders before the incremental backup, and some of the six after it: those
    // committed after the target must not be there.
    const late = out.restoredIds.filter((id) => id < 100);
    expect(out.restoredIds.filter((id) => id >= 100)).toHaveLength(1901);
    expect(late.length).toBeGreaterThan(3);
    expect(late.length).toBeLessThan(9);
    expect(stderr).toMatch(/incremental backup against \d{8}-\d{6}F \(full, start lsn/);
    expect(stderr).toMatch(/rebuilt block by block from a chain of 2 backups/);
    expect(stderr).toContain('recovery stopping before commit of transaction');
    expect(stderr).toContain('RESTORE PHASE 6/6 verify: SELECT 1 answered');
  });
});
