/**
 * verifyNatively (src/pipeline/page-verification.ts): a cluster's relation files checked in native
 * calls of bounded size — a failure found in any call names its own file and block.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nativePageVerifier } from '../../src/format/kernels.js';
import type { PlanEntry } from '../../src/pipeline/cluster-walk.js';
import { verifyNatively } from '../../src/pipeline/page-verification.js';

const dir = mkdtempSync(join(tmpdir(), 'pgbacula-page-verification-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('verifyNatively', () => {
  it('checks files over several calls and names the file and block of each failure', async () => {
    const native = nativePageVerifier();
    expect(native, 'the addon is built by npm run build').toBeDefined();
    const files: PlanEntry[] = [];
    for (let n = 0; n < 10; n++) {
      const pages = Buffer.alloc(2 * 8192);
      for (let b = 0; b < 2; b++) {
        const page = pages.subarray(b * 8192, (b + 1) * 8192);
        page.fill(n + 1, 24);
        page.writeUInt16LE(native!.pageChecksum(page, b), 8);
      }
      if (n === 1 || n === 8) pages.writeUInt8(pages.readUInt8(8192 + 100) ^ 0xff, 8192 + 100); // block 1 of files 1 and 8 damaged
      const absPath = join(dir, String(16384 + n));
      writeFileSync(absPath, pages);
      files.push({ path: `pgdata/base/5/${16384 + n}`, absPath, type: 'file', mode: 0o600, mtimeMs: 0, size: pages.length, verifyPages: true, firstBlock: 0 });
      // An empty file between them: nothing to check, nothing sent.
      files.push({ path: `pgdata/base/5/${26384 + n}`, absPath: join(dir, 'missing-empty'), type: 'file', mode: 0o600, mtimeMs: 0, size: 0, verifyPages: true, firstBlock: 0 });
    }
    for (const batchFiles of [3, 20_000]) {
      const v = await verifyNatively(files, native!, { batchFiles });
      expect(v.pagesChecked).toBe(20);
      expect(v.vanished).toBe(0);
      expect(v.failures.map((f) => `${f.path}#${f.blkno}`).sort()).toEqual(['pgdata/base/5/16385#1', 'pgdata/base/5/16392#1']);
    }
  });
});
