/**
 * A README line or a code comment that points at a file must point at one in this repository:
 * a reader who follows `shared/spec/…`, "spec §2.6" or PERFORMANCE.md finds nothing. Scans
 * README.md, src/, workers/ and native/ (the sources of the product).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../harness/pg-binaries.js';

const root = repoRoot();
const tracked = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
const trackedSet = new Set(tracked);
const trackedDirs = new Set(tracked.flatMap((f) => f.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))));
const basenames = new Set(tracked.map((f) => basename(f)));

const scanned = tracked.filter((f) => f === 'README.md' || /^(src|workers|native)\//.test(f)).filter((f) => /\.(ts|mjs|js|c|cpp|h|sh|wat|md|json)$/.test(f) || f.endsWith('build.sh'));

// Outputs of `npm run build` (not in the repository, named on purpose): dist/X.js comes from X.ts,
// dist/wasm/ from scripts/build-wasm.mjs, native/build/ from native/kernels/build.sh.
function existsInRepo(path: string): boolean {
  const p = path.replace(/\/+$/, '').replace(/[.,:;)]+$/, '');
  if (p.startsWith('native/build/') || p === 'native/build') return true;
  if (p === 'dist/wasm' || p.startsWith('dist/wasm/')) return trackedSet.has('scripts/build-wasm.mjs');
  if (p.startsWith('dist/')) return trackedSet.has(p.slice('dist/'.length).replace(/\.js$/, '.ts')) || trackedDirs.has(p.slice('dist/'.length));
  return trackedSet.has(p) || trackedDirs.has(p);
}

interface Finding {
  readonly file: string;
  readonly line: number;
  readonly text: string;
  readonly why: string;
}

function findingsIn(file: string): Finding[] {
  const out: Finding[] = [];
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  lines.forEach((text, i) => {
    const at = (why: string) => out.push({ file, line: i + 1, text: text.trim(), why });
    if (/(^|[\s`(/'"])(\.\.\/)*shared\/(spec|design|hooks)\b|shared\/[\w-]+\.md/.test(text)) at('points into shared/, which is not in the repository');
    if (text.includes('§')) at('cites a section (§) of a document that is not in the repository');
    if (/\b(postgresql-backup-internals|bacula-metaplugin-protocol)\.md\b/.test(text)) at('names a specification that is not in the repository');
    for (const m of text.matchAll(/(?<![\w./@-])([A-Z][A-Z0-9_-]+\.md)\b/g)) {
      if (!basenames.has(m[1]!)) at(`names ${m[1]}, which is not in the repository`);
    }
    for (const m of text.matchAll(/(?<![\w./@$<{-])((?:src|test|workers|native|scripts|bench|docs|bin|dist)\/[\w./-]*[\w/])/g)) {
      const p = m[1]!;
      if (/[*{<]/.test(p)) continue; // a pattern, not a path
      // Another project's file, named as such ("Bacula's src/filed/…", "PostgreSQL's src/include/…").
      if (/(Bacula's|PostgreSQL's|\$BACULA_SRC\/) ?`?$/.test(text.slice(0, m.index))) continue;
      if (!existsInRepo(p)) at(`names ${p}, which is not in the repository`);
    }
  });
  return out;
}

describe('README.md and the sources point only at files that are in the repository', () => {
  it('scans the files it is meant to', () => {
    expect(scanned).toContain('README.md');
    expect(scanned.some((f) => f.startsWith('src/'))).toBe(true);
    expect(scanned.some((f) => f.startsWith('workers/'))).toBe(true);
    expect(scanned.some((f) => f.startsWith('native/'))).toBe(true);
  });

  it('finds the kinds of reference it guards against (the checker itself)', () => {
    const probe = (text: string) => {
      const out: string[] = [];
      if (text.includes('§')) out.push('§');
      if (/shared\/spec\b/.test(text)) out.push('shared');
      for (const m of text.matchAll(/(?<![\w./@-])([A-Z][A-Z0-9_-]+\.md)\b/g)) if (!basenames.has(m[1]!)) out.push(m[1]!);
      return out;
    };
    expect(probe('see shared/spec/bacula-metaplugin-protocol.md')).toContain('shared');
    expect(probe('the slot holds WAL (spec §2.6)')).toContain('§');
    expect(probe('(PERFORMANCE.md)')).toContain('PERFORMANCE.md');
    expect(probe('see README.md')).toEqual([]);
    expect(existsInRepo('src/archive/layout.ts')).toBe(true);
    expect(existsInRepo('src/wal/no-such-file.ts')).toBe(false);
  });

  it('no reference to a missing file', () => {
    const all = scanned.flatMap(findingsIn);
    expect(all.map((f) => `${f.file}:${f.line}: ${f.why}\n    ${f.text}`)).toEqual([]);
  });
});
