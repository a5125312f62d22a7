/**
 * The addon's page verifier (native/kernels/page_verify.c) against the JS definition of the
 * checksum and the verification rules: random pages, a corrupt page, a new page, a trailing partial
 * page, a vanished file, relation-wide block numbers. Real files in a temporary directory.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pageChecksum } from '../../src/format/page-checksum.js';
import { nativePageVerifier } from '../../src/format/kernels.js';
import { seededRandom } from '../harness/seeded-random.js';

const native = nativePageVerifier('native');
const dir = mkdtempSync(join(tmpdir(), 'native-verify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A page with random content and the checksum PostgreSQL would store for block blkno. */
function page(rng: () => number, blkno: number): Buffer {
  const p = Buffer.alloc(8192);
  for (let i = 0; i < p.length; i += 4) p.writeUInt32LE(rng(), i);
  p.writeUInt16LE(pageChecksum(p, blkno), 8);
  return p;
}

describe('native page verifier', () => {
  it('is built into the addon (native/kernels/build.sh)', () => {
    expect(native, 'nativePageVerifier() found no verifyRanges in the addon').toBeDefined();
  });

  it('computes the same checksum as the JS definition', () => {
    const rng = seededRandom(42);
    for (let i = 0; i < 500; i++) {
      const p = Buffer.alloc(8192);
      for (let j = 0; j < p.length; j += 4) p.writeUInt32LE(rng(), j);
      const blkno = rng() % 0xfffffffe;
      expect(native!.pageChecksum(p, blkno)).toBe(pageChecksum(p, blkno));
    }
  });

  it('counts good and new pages, names a corrupt one by its relation-wide block, ignores a partial tail and reports a vanished file', async () => {
    const rng = seededRandom(7);
    // a second segment file: its first block is 131072
    const first = 131072;
    const pages = [page(rng, first), page(rng, first + 1), Buffer.alloc(8192), page(rng, first + 3)];
    pages[1]!.writeUInt8(pages[1]!.readUInt8(5000) ^ 0x10, 5000);
    const good = join(dir, '16384.1');
    writeFileSync(good, Buffer.concat([...pages, Buffer.alloc(100, 1)]));
    const gone = join(dir, '16399');
    const r = await native!.verifyRanges([good, gone], Float64Array.from([0, first, 0, 4 * 8192 + 100, 1, 0, 0, 8192]), 8192, 2);
    expect(r.pages).toBe(3);
    expect(r.newPages).toBe(1);
    expect(r.tornPages).toBe(0);
    expect(r.failures).toEqual([{ file: 0, blkno: first + 1, stored: pages[1]!.readUInt16LE(8), computed: pageChecksum(pages[1]!, first + 1) }]);
    expect(r.problems).toEqual([{ file: 1, error: expect.stringMatching(/No such file/), vanished: true }]);
  });

  it('splits a file into ranges without changing the result', async () => {
    const rng = seededRandom(9);
    const file = join(dir, '20000');
    writeFileSync(file, Buffer.concat(Array.from({ length: 64 }, (_, i) => page(rng, i))));
    const whole = await native!.verifyRanges([file], Float64Array.from([0, 0, 0, 64 * 8192]), 8192, 1);
    const split = await native!.verifyRanges([file], Float64Array.from([0, 0, 0, 16 * 8192, 0, 0, 16 * 8192, 48 * 8192]), 8192, 3);
    expect(whole).toMatchObject({ pages: 64, failures: [], problems: [] });
    expect(split).toMatchObject({ pages: 64, failures: [], problems: [] });
  });

  it('refuses ranges that are not on block boundaries or name no file', async () => {
    expect(() => native!.verifyRanges(['/x'], Float64Array.from([0, 0, 100, 8192]), 8192, 1)).toThrow(/block boundary/);
    expect(() => native!.verifyRanges(['/x'], Float64Array.from([3, 0, 0, 8192]), 8192, 1)).toThrow(/names no file/);
  });
});
