import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { shipOpenSegment } from '../../src/modes/cdp/open-segment.js';

describe('a cdp job shipping the receiver\'s open segment', () => {
  const root = mkdtempSync(join(tmpdir(), 'pgbacula-open-segment-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('an open segment that is gone when read (completed or replaced by the receiver) is left to the next job, not a failed job', async () => {
    const systemId = '7000000000000000001';
    const receive = join(root, systemId, '.receive');
    mkdirSync(receive, { recursive: true });
    // Listed, then gone when opened: what a rename by the receiver between the two looks like.
    symlinkSync(join(root, 'renamed-away'), join(receive, '000000010000000000000004.partial'));
    const lines: string[] = [];
    const log = { info: (l: string) => void lines.push(l), warning: (l: string) => void lines.push(`warning: ${l}`) };
    const shipped = await shipOpenSegment({
      spoolRoot: root, systemId, walSegmentSize: 16 * 1024 * 1024,
      after: { timeline: 1, segno: 3n, name: '000000010000000000000003' }, timeline: 1,
      cluster: 'c', tmpdir: root, jobId: 1, compress: false,
      pool: undefined as never, sink: undefined as never, log: log as never, signal: new AbortController().signal,
    });
    expect(shipped).toBeUndefined();
    expect(lines.join('\n')).toMatch(/open segment 000000010000000000000004\.partial was completed or replaced by the receiver while this job read it: not shipped; the next cdp job ships it/);
  });
});
