/**
 * The layers of docs/architecture.md, enforced: a module imports only from its own folder or from
 * a folder below it, the folders of src/modes/ never import one another, the CLI reaches the work
 * only through src/command/, and no module imports itself back through a chain (an import cycle).
 * A new upward import or cycle fails here with the file and the edge to remove.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../harness/pg-binaries.js';
import { tsSourceFiles } from '../harness/source-files.js';

const root = repoRoot();

/** Bottom to top. A folder may import the folders listed before it, never those after it. */
export const LAYERS: readonly string[] = [
  'src', // errors.ts, version.ts: the ground
  'src/item', // the item, restore-target and job-log contracts
  'src/pg', // facts of each PostgreSQL major (no I/O)
  'src/format', // pure formats and the kernels that compute them
  'src/wal', // pure WAL: LSNs, segment names, page headers, records, timeline histories
  'src/config', // the parameter schema, values, config file, connection settings
  'src/os', // process-level facilities: durable writes, pid locks, scratch space
  'src/storage', // the one storage interface and its implementations
  'workers', // worker-thread entry points (compute on items)
  'src/pipeline', // walk, emit, ordered merge, pools
  'src/server', // talking to a running PostgreSQL: sessions, replication, backup API, tools
  'src/bacula', // the metaplugin protocol
  'src/repo', // the local repository
  'src/archive', // the WAL archive / spool and the recoverable window
  'src/restore', // laying a backup down and recovering it
  'src/physical', // the physical backup engine the physical modes share (a base backup, its plan)
  'src/modes', // one folder per mode: sources of items (siblings never import each other)
  'src/command', // the mode registry and the jobs (bacula/, backup, restore, verify, receive)
  'src/cli', // argv → command → output
];

/** What src/cli may import besides its own folder: it turns argv into a command and prints. */
const CLI_MAY_IMPORT = new Set(['src', 'src/item', 'src/config', 'src/command']);

/** Allowed by rank, refused by design: a mode never knows its sink (no Bacula levels or Since= in a mode). */
const NEVER: ReadonlyArray<readonly [string, string, string]> = [['src/modes', 'src/bacula', 'a mode never knows its sink: Bacula levels and Since= belong in src/command/bacula']];

const tsFiles = (dir: string): string[] => tsSourceFiles(dir, root);

/** The layer a file belongs to: the longest listed folder that contains it. */
function layerOf(file: string): string {
  let best = '';
  for (const l of LAYERS) if ((file.startsWith(`${l}/`) || dirname(file) === l) && l.length > best.length) best = l;
  if (!best) throw new Error(`${file} is in no layer: add its folder to LAYERS and to docs/architecture.md`);
  return best;
}

/** For src/modes/<mode>/…: the mode folder; otherwise undefined. */
function modeOf(file: string): string | undefined {
  const m = /^src\/modes\/([^/]+)\//.exec(file);
  return m ? m[1] : undefined;
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = (m[1] ?? m[2])!;
    out.push(normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts'));
  }
  return out;
}

const files = [...tsFiles('src'), ...tsFiles('workers')];
const graph = new Map(files.map((f) => [f, importsOf(f)]));

export function layeringProblems(): string[] {
  const problems: string[] = [];
  const rank = (f: string) => LAYERS.indexOf(layerOf(f));
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const a = layerOf(from);
      const b = layerOf(to);
      if (a === b) {
        const ma = modeOf(from);
        const mb = modeOf(to);
        if (ma && mb && ma !== mb) problems.push(`${from} imports ${to}: one mode may not import another (move what both need below src/modes)`);
        continue;
      }
      const never = NEVER.find(([x, y]) => x === a && y === b);
      if (never) problems.push(`${from} imports ${to}: ${never[2]}`);
      else if (rank(to) > rank(from)) problems.push(`${from} imports ${to}: ${a} sits below ${b} (docs/architecture.md)`);
      else if (a === 'src/cli' && !CLI_MAY_IMPORT.has(b)) problems.push(`${from} imports ${to}: the CLI reaches ${b} only through src/command`);
    }
  }
  return problems;
}

export function importCycles(): string[] {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 1);
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (!graph.has(t)) continue;
      if (state.get(t) === 1) cycles.push([...stack.slice(stack.indexOf(t)), t].join(' → '));
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return cycles;
}

describe('layering (docs/architecture.md)', () => {
  it('every source file belongs to a layer, and every relative import resolves to a source file', () => {
    const unresolved = [...graph].flatMap(([f, ts]) => ts.filter((t) => !graph.has(t)).map((t) => `${f} → ${relative(root, join(root, t))}`));
    expect(unresolved).toEqual([]);
    for (const f of files) expect(LAYERS).toContain(layerOf(f));
  });

  it('no module imports a folder above its own, a sibling mode, or (from the CLI) past src/command', () => {
    expect(layeringProblems()).toEqual([]);
  });

  it('no import cycle', () => {
    expect(importCycles()).toEqual([]);
  });

  it('finds what it is meant to find', () => {
    expect(layerOf('src/modes/pitr/chain.ts')).toBe('src/modes');
    expect(layerOf('src/errors.ts')).toBe('src');
    expect(layerOf('workers/restore-file.ts')).toBe('workers');
    expect(() => layerOf('lib/x.ts')).toThrow(/no layer/);
    expect(importsOf('src/item/restore-target.ts')).toContain('src/item/item.ts');
  });
});
