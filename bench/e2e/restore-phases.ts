import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Measured } from './process-tree.js';

/**
 * Where a pgbacula restore into `pgdata` spent its time, from its audit log (each phase's line is
 * stamped when the phase ends): "lay-down 3.31 s, …", the run's seconds first.
 */
export function restorePhases(pgdata: string, m: Measured, startedAtMs: number): string {
  let last = startedAtMs;
  const phases = readFileSync(join(pgdata, 'pgbacula_restore', 'audit.log'), 'utf8').split('\n').flatMap((line) => {
    const p = /^(\S+) RESTORE PHASE (\d)\/6 ([\w-]+):/.exec(line);
    if (!p) return [];
    const at = Date.parse(p[1]!);
    const took = `${p[3]} ${((at - last) / 1000).toFixed(2)} s`;
    last = at;
    return [took];
  });
  return `${m.seconds.toFixed(2)} s: ${phases.join(', ')}, exit ${((startedAtMs + m.seconds * 1000 - last) / 1000).toFixed(2)} s`;
}
