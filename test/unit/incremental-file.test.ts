import { describe, expect, it } from 'vitest';
import {
  encodeIncrementalHeader,
  INCREMENTAL_MAGIC,
  incrementalFileSize,
  incrementalHeaderBytesNeeded,
  incrementalHeaderLength,
  IncrementalFileError,
  parseIncrementalHeader,
  reconstructedBlocks,
} from '../../src/format/incremental-file.js';

const BLCKSZ = 8192;
const RELSEG = 131072;
const geometry = { blockSize: BLCKSZ, blocksPerSegment: RELSEG };

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.replace(/[\s|]+/g, '').match(/../g)!.map((b) => parseInt(b, 16)));
}

/** 141 blocks: 0, 411, 413, then others below 552 (a header that needs padding to a whole block). */
function exampleBlocks(): Uint32Array {
  const blocks = [0, 411, 413];
  for (let b = 414; blocks.length < 141; b++) blocks.push(b);
  return Uint32Array.from(blocks);
}

describe('the test vectors of an INCREMENTAL file', () => {
  it('no changed blocks, truncation length 8: a 12-byte file', () => {
    const bytes = encodeIncrementalHeader(new Uint32Array(0), 8, BLCKSZ, RELSEG);
    expect(bytes).toEqual(hex('0D 1F AE D3 | 00 00 00 00 | 08 00 00 00'));
    expect(incrementalFileSize(0, BLCKSZ)).toBe(12);
    const h = parseIncrementalHeader(bytes, geometry);
    expect(h.blocks.length).toBe(0);
    expect(h.truncationBlocks).toBe(8);
    expect(h.headerLength).toBe(12);
    expect(reconstructedBlocks(h)).toBe(8);
  });

  it('141 blocks of 552: the header starts as observed and is padded to one block', () => {
    const blocks = exampleBlocks();
    const bytes = encodeIncrementalHeader(blocks, 552, BLCKSZ, RELSEG);
    expect(bytes.subarray(0, 24)).toEqual(hex('0D 1F AE D3 | 8D 00 00 00 | 28 02 00 00 | 00 00 00 00 | 9B 01 00 00 | 9D 01 00 00'));
    expect(bytes.length).toBe(BLCKSZ);
    expect(bytes.subarray(12 + 4 * 141).every((b) => b === 0)).toBe(true);
    expect(incrementalFileSize(141, BLCKSZ)).toBe(BLCKSZ + 141 * BLCKSZ);
    expect(incrementalHeaderBytesNeeded(bytes.subarray(0, 12))).toBe(12 + 4 * 141);
    const h = parseIncrementalHeader(bytes, geometry);
    expect(h.blocks).toEqual(blocks);
    expect(h.truncationBlocks).toBe(552);
    expect(h.headerLength).toBe(BLCKSZ);
    expect(reconstructedBlocks(h)).toBe(552);
  });
});

describe('incremental file header', () => {
  it('pads to the next whole block, and only when there are pages', () => {
    expect(incrementalHeaderLength(0, BLCKSZ)).toBe(12);
    expect(incrementalHeaderLength(1, BLCKSZ)).toBe(BLCKSZ);
    expect(incrementalHeaderLength(2045, BLCKSZ)).toBe(BLCKSZ); // 12 + 8180 = 8192 exactly
    expect(incrementalHeaderLength(2046, BLCKSZ)).toBe(2 * BLCKSZ);
    expect(incrementalHeaderLength(RELSEG, BLCKSZ)).toBe(65 * BLCKSZ);
    expect(incrementalHeaderLength(3, 1024)).toBe(1024);
    for (const n of [1, 2045, 2046, 5000]) {
      const blocks = Uint32Array.from({ length: n }, (_, i) => 2 * i);
      const bytes = encodeIncrementalHeader(blocks, 0, BLCKSZ, RELSEG);
      expect(bytes.length).toBe(incrementalHeaderLength(n, BLCKSZ));
      expect(bytes.length % BLCKSZ).toBe(0);
      const h = parseIncrementalHeader(bytes, geometry);
      expect(h.blocks).toEqual(blocks);
      expect(reconstructedBlocks(h)).toBe(2 * (n - 1) + 1);
    }
  });

  it('the reconstructed length is past the last listed block when that is beyond the truncation length', () => {
    expect(reconstructedBlocks({ blocks: Uint32Array.of(3, 9), truncationBlocks: 5 })).toBe(10);
    expect(reconstructedBlocks({ blocks: Uint32Array.of(3, 9), truncationBlocks: 50 })).toBe(50);
    expect(reconstructedBlocks({ blocks: new Uint32Array(0), truncationBlocks: 0 })).toBe(0);
  });

  it('refuses to write what a reader would refuse', () => {
    expect(() => encodeIncrementalHeader(Uint32Array.of(2, 1), 0, BLCKSZ, RELSEG)).toThrow(IncrementalFileError);
    expect(() => encodeIncrementalHeader(Uint32Array.of(1, 1), 0, BLCKSZ, RELSEG)).toThrow(/ascending/);
    expect(() => encodeIncrementalHeader(Uint32Array.of(RELSEG), 0, BLCKSZ, RELSEG)).toThrow(/below 131072/);
    expect(() => encodeIncrementalHeader(new Uint32Array(0), RELSEG + 1, BLCKSZ, RELSEG)).toThrow(/truncation length 131073/);
    expect(() => encodeIncrementalHeader(new Uint32Array(0), -1, BLCKSZ, RELSEG)).toThrow(IncrementalFileError);
    expect(() => encodeIncrementalHeader(new Uint32Array(5), 0, BLCKSZ, 4)).toThrow(/5 blocks exceed a segment of 4/);
    expect(encodeIncrementalHeader(new Uint32Array(0), RELSEG, BLCKSZ, RELSEG).length).toBe(12);
  });

  it('refuses damaged headers, naming the file', () => {
    const good = encodeIncrementalHeader(Uint32Array.of(1, 5, 7), 10, BLCKSZ, RELSEG);
    const name = 'base/5/INCREMENTAL.16384';
    const refused = (bytes: Uint8Array, pattern: RegExp) => {
      let caught: unknown;
      try {
        parseIncrementalHeader(bytes, { ...geometry, name });
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(IncrementalFileError);
      expect((caught as Error).message).toContain(name);
      expect((caught as Error).message).toMatch(pattern);
    };
    const set = (at: number, v: number) => {
      const b = good.slice();
      new DataView(b.buffer).setUint32(at, v, true);
      return b;
    };
    refused(set(0, INCREMENTAL_MAGIC ^ 1), /bad magic number 0xd3ae1f0c \(expected 0xd3ae1f0d\)/);
    refused(good.subarray(0, 11), /ends before its 12-byte header/);
    refused(good.subarray(0, 12 + 4 * 2), /ends inside its block list/);
    refused(set(4, RELSEG + 1), /lists 131073 blocks, more than a segment of 131072/);
    refused(set(8, RELSEG + 1), /truncation length 131073, more than a segment/);
    refused(set(16, 1), /not ascending/);
    refused(set(20, 5), /not ascending/);
    refused(set(20, RELSEG), /not ascending below 131072/);
    expect(() => incrementalHeaderBytesNeeded(set(0, 0), name)).toThrow(/bad magic number 0x0/);
    expect(parseIncrementalHeader(good.subarray(0, 24), geometry).blocks).toEqual(Uint32Array.of(1, 5, 7));
  });
});
