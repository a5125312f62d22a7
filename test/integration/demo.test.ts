import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../harness/pg-binaries.js';

const execFileAsync = promisify(execFile);

// The README's demo line, run as a user would run it (the built CLI, a child process).
describe('pgbacula demo', () => {
  it('starts a throwaway cluster, reports it and removes it', async () => {
    const { stdout, stderr } = await execFileAsync(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), 'demo', '--json'], { timeout: 120_000 });
    expect(stderr).toBe('');
    const out = JSON.parse(stdout) as { binDir: string; check: { server: { role: string; dataChecksums: boolean; walLevel: string } } };
    expect(out.check.server).toMatchObject({ role: 'primary', dataChecksums: true, walLevel: 'replica' });
  });
});
