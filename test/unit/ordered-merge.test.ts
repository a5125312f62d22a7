import { describe, expect, it } from 'vitest';
import { orderedMerge, type MergeStats, type PlannedTask } from '../../src/pipeline/ordered-merge.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tasks(sizes: number[], delay: (i: number) => number, log: string[] = []): PlannedTask<number>[] {
  return sizes.map((bytes, i) => ({
    bytes,
    start: async () => {
      log.push(`start ${i}`);
      await sleep(delay(i));
      log.push(`end ${i}`);
      return i;
    },
  }));
}

describe('orderedMerge', () => {
  it('yields in plan order although tasks finish out of order', async () => {
    const out: number[] = [];
    for await (const r of orderedMerge(tasks([10, 10, 10, 10, 10, 10], (i) => (6 - i) * 5), { windowBytes: 100, maxTasks: 8 })) out.push(r);
    expect(out).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('never holds more bytes in flight than the window (except a single oversized task)', async () => {
    const stats: MergeStats = { peakBytesInFlight: 0, peakTasksInFlight: 0 };
    const sizes = Array.from({ length: 40 }, (_, i) => (i % 7) * 3 + 1);
    for await (const _ of orderedMerge(tasks(sizes, (i) => i % 3), { windowBytes: 20, maxTasks: 100 }, stats)) {
      await sleep(1); // a slow sink
    }
    expect(stats.peakBytesInFlight).toBeLessThanOrEqual(20);
    expect(stats.peakBytesInFlight).toBeGreaterThan(10);
    const big: MergeStats = { peakBytesInFlight: 0, peakTasksInFlight: 0 };
    const res: number[] = [];
    for await (const r of orderedMerge(tasks([50, 5, 50], () => 1), { windowBytes: 20, maxTasks: 10 }, big)) res.push(r);
    expect(res).toEqual([0, 1, 2]);
    expect(big.peakBytesInFlight).toBeLessThanOrEqual(55);
  });

  it('a slow consumer stops dispatch (backpressure)', async () => {
    const log: string[] = [];
    const gen = orderedMerge(tasks(Array(10).fill(10), () => 0, log), { windowBytes: 30, maxTasks: 100 });
    await gen.next();
    await sleep(20);
    expect(log.filter((l) => l.startsWith('start')).length).toBe(3);
    await gen.return(undefined);
  });

  it('caps the task count for tiny tasks', async () => {
    const stats: MergeStats = { peakBytesInFlight: 0, peakTasksInFlight: 0 };
    for await (const _ of orderedMerge(tasks(Array(50).fill(0), () => 1), { windowBytes: 1000, maxTasks: 4 }, stats)) {
      // consume
    }
    expect(stats.peakTasksInFlight).toBe(4);
  });

  it('surfaces a failure at its place in order, after earlier results', async () => {
    const ts: PlannedTask<number>[] = [
      { bytes: 1, start: async () => { await sleep(10); return 0; } },
      { bytes: 1, start: async () => { throw new Error('boom at 1'); } },
      { bytes: 1, start: async () => 2 },
    ];
    const got: number[] = [];
    await expect((async () => {
      for await (const r of orderedMerge(ts, { windowBytes: 10, maxTasks: 10 })) got.push(r);
    })()).rejects.toThrow('boom at 1');
    expect(got).toEqual([0]);
  });
});
