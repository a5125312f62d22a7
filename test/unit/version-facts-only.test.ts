/**
 * Per-major differences live in src/pg/versions.ts only: elsewhere the code reads a fact by name
 * (`versionFacts(major).walSummaries`), never compares a major or a version number with a literal.
 * A stray comparison fails here with its file and line.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../harness/pg-binaries.js';

const root = repoRoot();
const HOME = 'src/pg/versions.ts';
const OP = String.raw`(?:>=|<=|===|!==|==|!=|>(?![>=])|<(?![<=]))`;
/** Something that holds a major or a version number: `major`, `facts.major`, `serverVersionNum`, `server_version_num`. */
const SUBJECT = String.raw`[\w.$]*(?:major|version_?num|server_?version)\w*`;

const STRAYS: readonly RegExp[] = [
  // major >= 15, facts.major < 12, serverVersionNum >= 170000, (o.major ?? 11) >= 11
  new RegExp(String.raw`\b${SUBJECT}(?:\s*\?\?\s*\d+\))?\s*${OP}\s*\d`, 'i'),
  // 15 <= major
  new RegExp(String.raw`\d\s*${OP}\s*${SUBJECT}\b`, 'i'),
  // >= 90600, < 170000: a server_version_num literal, whatever it is compared with
  new RegExp(String.raw`${OP}\s*(?:9[0-6]\d{3}|[1-9]\d0\d{3})\b`),
];

/** Comment lines are prose: "(11+)" and "before 12" explain, they do not decide. */
function isComment(line: string): boolean {
  return /^\s*(?:\/\/|\/\*|\*)/.test(line);
}

export function strayComparisons(text: string): number[] {
  const lines: number[] = [];
  text.split('\n').forEach((line, i) => {
    if (!isComment(line) && STRAYS.some((re) => re.test(line))) lines.push(i + 1);
  });
  return lines;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('version facts only in src/pg/versions.ts', () => {
  it('the pattern catches the comparisons it is for (self-check)', () => {
    const planted = [
      'if (major >= 15) x();',
      'const old = facts.major < 12;',
      'if (serverVersionNum >= 170000) y();',
      'return v.server_version_num >= 90600;',
      'if (n >= 90600) z();',
      'if (!o.partial && (o.major ?? 11) >= 11) {',
      'const ok = 14 <= this.serverMajor;',
      'const f = plan.tools.major === 16 ? a : b;',
      '  const s = `${major >= 12 ? "signal" : "conf"}`;',
    ];
    for (const line of planted) expect(strayComparisons(line), line).toEqual([1]);
    const innocent = [
      'if (tools.major >= serverMajor) return;',
      'if (m && Number(m[1]) === major) return dir;',
      'const magic = versionFacts(major).xlogPageMagic;',
      '// The zero tail of a switched segment (11+, major >= 11 in the table)',
      'SELECT count(*) FROM pg_class WHERE oid >= 16384',
      'if (rest.length >= 2) return;',
      'return major === undefined ? hex(magic) : name;',
    ];
    for (const line of innocent) expect(strayComparisons(line), line).toEqual([]);
  });

  it('src/ and workers/ compare no major or version number outside the version table', () => {
    const found: string[] = [];
    for (const file of [...sources(join(root, 'src')), ...sources(join(root, 'workers'))]) {
      const rel = relative(root, file);
      if (rel === HOME) continue;
      for (const line of strayComparisons(readFileSync(file, 'utf8'))) found.push(`${rel}:${line}`);
    }
    expect(found, `a per-major difference belongs in ${HOME} as a named fact (versionFacts(major).<fact>)`).toEqual([]);
  });
});
