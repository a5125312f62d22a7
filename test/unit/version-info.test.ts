import { describe, expect, it } from 'vitest';
import { versionText } from '../../src/command/version-info.js';
import { packageVersion } from '../../src/version.js';

// `pgbacula --version` of a checkout; the packaged form is checked by test/e2e/package.test.ts.
describe('pgbacula --version', () => {
  it('keeps the version alone on the first line and names the runtime, the kernels and the shim', () => {
    const lines = versionText().trimEnd().split('\n');
    expect(lines[0]).toBe(`pgbacula ${packageVersion()}`);
    expect(lines[1]).toBe(`node: ${process.version} (${process.execPath})`);
    expect(lines[2]).toMatch(/^kernels: (native \(.*pgbacula_kernels\.node\)|fallback, )/);
    expect(lines[3]).toMatch(/^page checksums: (wasm|js) \(/);
    expect(lines[4]).toBe('bacula shim: not part of this installation (a checkout: native/build.sh builds it)');
  });
});
