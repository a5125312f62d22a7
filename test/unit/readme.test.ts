import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withGeneratedParameters } from '../../src/command/readme-docs.js';

describe('README', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  it('parameter tables are the ones generated from the schema (run npm run docs)', () => {
    expect(readme).toBe(withGeneratedParameters(readme));
  });
  it('quick start is exactly two commands, and .ci/run runs the test one', () => {
    const block = /## Quick start[^\n]*\n\n```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    const lines = block.trim().split('\n').map((l) => l.replace(/\s+#.*$/, '').trim());
    expect(lines).toEqual(['./scripts/setup.sh && npm run demo', './scripts/setup.sh && npm test']);
    const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');
    expect(ci).toContain(lines[1]);
  });
});
