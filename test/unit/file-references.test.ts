/**
 * A README line or a code comment that points at a file must point at one in this repository:
 * a reader who follows `shared/spec/…`, "spec §2.6" or PERFORMANCE.md finds nothing. Scans
 * README.md, docs/ and every source of the repository (src/, workers/, native/, bench/, scripts/,
 * test/, bin/); a Markdown link of README.md or docs/ must reach an existing file and heading.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../harness/pg-binaries.js';

const root = repoRoot();
const tracked = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
const trackedSet = new Set(tracked);
const trackedDirs = new Set(tracked.flatMap((f) => f.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))));
const basenames = new Set(tracked.map((f) => basename(f)));

// This file is left out: it spells out the references it guards against.
const SELF = 'test/unit/file-references.test.ts';
const scanned = tracked
  .filter((f) => f === 'README.md' || /^(docs|src|workers|native|bench|scripts|test|bin)\//.test(f))
  .filter((f) => f !== SELF)
  .filter((f) => /\.(ts|mjs|js|c|cpp|h|sh|wat|md|json)$/.test(f) || f.endsWith('build.sh'));

// A layer of docs/architecture.md (LAYERS of test/unit/layering.test.ts, read as text) is a folder
// of the design even while it waits for its first file.
const declaredLayers = new Set(
  [...(/LAYERS[^=]*=\s*\[([\s\S]*?)\];/.exec(readFileSync(join(root, 'test/unit/layering.test.ts'), 'utf8'))?.[1] ?? '').matchAll(/'([^']+)'/g)].map((m) => m[1]!),
);

// Outputs of `npm run build` (not in the repository, named on purpose): dist/X.js comes from X.ts,
// dist/wasm/ from scripts/build-wasm.mjs, native/build/ from native/kernels/build.sh.
function existsInRepo(path: string): boolean {
  const p = path.replace(/\/+$/, '').replace(/[.,:;)]+$/, '');
  if (p.startsWith('native/build/') || p === 'native/build') return true;
  if (p === 'dist/wasm' || p.startsWith('dist/wasm/')) return trackedSet.has('scripts/build-wasm.mjs');
  if (p.startsWith('dist/')) return trackedSet.has(p.slice('dist/'.length).replace(/\.js$/, '.ts')) || trackedDirs.has(p.slice('dist/'.length));
  return trackedSet.has(p) || trackedDirs.has(p) || declaredLayers.has(p);
}

/** GitHub's anchor of a Markdown heading: lower case, punctuation dropped, blanks to hyphens. */
function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(join(root, file), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
  return new Set([...text.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => headingAnchor(m[1]!)));
}

/** The problem with a relative Markdown link target of `file`, or undefined. */
function linkProblem(file: string, target: string): string | undefined {
  if (/^[a-z]+:/i.test(target)) return undefined; // https:, mailto:
  const [path = '', anchor] = target.split('#');
  const resolved = path === '' ? file : normalize(join(dirname(file), path));
  if (!trackedSet.has(resolved) && !trackedDirs.has(resolved)) return `links to ${target}, which is not in the repository`;
  if (anchor !== undefined && resolved.endsWith('.md') && !anchorsOf(resolved).has(anchor)) return `links to ${target}: ${resolved} has no heading #${anchor}`;
  return undefined;
}

interface Finding {
  readonly file: string;
  readonly line: number;
  readonly text: string;
  readonly why: string;
}

/**
 * The comment of a line of code (all of a Markdown line). In test/, bench/ and scripts/ only
 * comments are checked for paths: their code builds paths inside other trees (npm packages,
 * fixtures, Bacula's sources) that are not references for a reader.
 */
function commentOf(file: string, text: string): string {
  if (file.endsWith('.md')) return text;
  const t = text.trimStart();
  if (file.endsWith('.sh')) return /(?:^|\s)(#.*)$/.exec(text)?.[1] ?? '';
  if (t.startsWith('*') || t.startsWith('/*') || t.startsWith('//')) return text;
  return /\s(\/\/.*)$/.exec(text)?.[1] ?? '';
}

const CODE_ONLY_COMMENTS = /^(test|bench|scripts)\//;

/** Names a specification by description ("the spec", "spec Appendix B", "protocol spec"): name the docs/ page. */
const SPEC_BY_DESCRIPTION = /\b(the|protocol) spec\b|\bspec (Appendix|[A-Z]\.\d)|\bAppendix [A-Z]\b|\bthe design doc/i;

function findingsIn(file: string): Finding[] {
  const out: Finding[] = [];
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  lines.forEach((text, i) => {
    const at = (why: string) => out.push({ file, line: i + 1, text: text.trim(), why });
    if (/(^|[\s`(/'"])(\.\.\/)*shared\/(spec|design|hooks)\b|shared\/[\w-]+\.md/.test(text)) at('points into shared/, which is not in the repository');
    if (text.includes('§')) at('cites a section (§) of a document that is not in the repository');
    if (/\b(postgresql-backup-internals|bacula-metaplugin-protocol)\.md\b/.test(text)) at('names a specification that is not in the repository');
    if (SPEC_BY_DESCRIPTION.test(text)) at('points at a specification by description: name the page of docs/ instead');
    for (const m of text.matchAll(/(?<![\w./@-])([A-Z][A-Z0-9_-]+\.md)\b/g)) {
      if (!basenames.has(m[1]!)) at(`names ${m[1]}, which is not in the repository`);
    }
    const pathText = CODE_ONLY_COMMENTS.test(file) ? commentOf(file, text) : text;
    for (const m of pathText.matchAll(/(?<![\w./@$<{-])((?:src|test|workers|native|scripts|bench|docs|bin|dist)\/[\w./-]*[\w/])/g)) {
      const p = m[1]!;
      if (/[*{<]/.test(p)) continue; // a pattern, not a path
      // Another project's file, named as such ("Bacula's src/filed/…", "PostgreSQL's src/include/…").
      if (/(Bacula's|PostgreSQL's|\$BACULA_SRC\/) ?`?$/.test(pathText.slice(0, m.index))) continue;
      if (!existsInRepo(p)) at(`names ${p}, which is not in the repository`);
    }
    if (file.endsWith('.md') && (file === 'README.md' || file.startsWith('docs/'))) {
      // Links outside inline code: `[FID](-\d+)` in a regular expression is not one.
      for (const m of text.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g)) {
        const problem = linkProblem(file, m[1]!);
        if (problem) at(problem);
      }
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
    for (const dir of ['docs/', 'bench/', 'scripts/', 'test/']) expect(scanned.some((f) => f.startsWith(dir))).toBe(true);
    expect(scanned).not.toContain(SELF);
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
    expect(SPEC_BY_DESCRIPTION.test('matches the test vectors of the spec (B.2)')).toBe(true);
    expect(SPEC_BY_DESCRIPTION.test('Pages of spec Appendix B.1')).toBe(true);
    expect(SPEC_BY_DESCRIPTION.test('the specification of a parameter')).toBe(false);
    expect(commentOf('scripts/x.sh', 'cd "$dir" && node scripts/y.js # see docs/z.md')).toBe('# see docs/z.md');
    expect(commentOf('test/x.ts', "const p = join(d, 'native/bin/postgres');")).toBe('');
    expect(commentOf('test/x.ts', ' * see docs/architecture.md')).toBe(' * see docs/architecture.md');
    expect(headingAnchor('wal-fetch and exit 200')).toBe('wal-fetch-and-exit-200');
    expect(headingAnchor('Levels and Since=')).toBe('levels-and-since');
    expect(linkProblem('docs/architecture.md', 'wal-archive.md#no-such-heading')).toMatch(/has no heading/);
    expect(linkProblem('docs/architecture.md', 'no-such-page.md')).toMatch(/not in the repository/);
    expect(linkProblem('docs/architecture.md', 'https://example.org/x')).toBeUndefined();
  });

  it('no reference to a missing file', () => {
    const all = scanned.flatMap(findingsIn);
    expect(all.map((f) => `${f.file}:${f.line}: ${f.why}\n    ${f.text}`)).toEqual([]);
  });
});
