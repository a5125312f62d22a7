import { describe, expect, it } from 'vitest';
import { formatBytes, formatCount } from '../../src/item/job-log.js';

describe('job log numbers', () => {
  it('formatCount groups thousands as en-US does', () => {
    for (const n of [0, 7, 999, 1000, 12_345, 1_234_567, -1_234_567, 2 ** 53 - 1, 1.5, 1234.5]) expect(formatCount(n)).toBe(n.toLocaleString('en-US'));
    expect(formatCount(272_075)).toBe('272,075');
  });
  it('formatBytes picks the unit', () => {
    expect([formatBytes(512), formatBytes(2048), formatBytes(3 * 1024 * 1024), formatBytes(2.5 * 1024 ** 3)]).toEqual(['512 B', '2.0 KiB', '3.0 MiB', '2.50 GiB']);
  });
});
