import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './pg-binaries.js';

/** The TypeScript sources under `dir` (relative to the repository root), as root-relative paths. */
export function tsSourceFiles(dir: string, root: string = repoRoot()): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...tsSourceFiles(p, root));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}
