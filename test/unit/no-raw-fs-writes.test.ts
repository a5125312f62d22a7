/**
 * Every write to the file system goes through src/storage/ (the product's stored data: the
 * repository, the WAL archive and spool) or src/os/ (the user's directories: PGDATA, tablespaces,
 * where= targets, dump files, scratch space), where owners, modes, no-follow opens and durability
 * are decided once (docs/architecture.md). Anywhere else in src/ and workers/ a raw node:fs write
 * — a named, aliased or namespace import of a write call, or an open with a write flag — fails
 * here with the file, the line and the call to route through one of those two folders.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../harness/pg-binaries.js';
import { tsSourceFiles } from '../harness/source-files.js';

const root = repoRoot();

/** Where raw writes belong. */
const ALLOWED = ['src/storage/', 'src/os/'];

const FS_MODULES = new Set(['fs', 'node:fs', 'fs/promises', 'node:fs/promises']);

/** Calls that change the file system whatever their arguments. */
const WRITES = new Set(
  [
    'writeFile', 'appendFile', 'createWriteStream', 'mkdir', 'mkdtemp', 'rename', 'rm', 'rmdir', 'unlink',
    'chmod', 'lchmod', 'fchmod', 'chown', 'lchown', 'fchown', 'utimes', 'lutimes', 'futimes',
    'symlink', 'link', 'copyFile', 'cp', 'truncate', 'ftruncate', 'fsync', 'fdatasync', 'write', 'writev',
  ].flatMap((n) => [n, `${n}Sync`]),
);

/** open/openSync change the file system with a write flag ('w', 'a', 'r+', 'wx'…) or O_WRONLY/O_RDWR/O_CREAT…. */
const OPENS = new Set(['open', 'openSync']);
const WRITE_FLAG_NAMES = /\bO_(?:WRONLY|RDWR|CREAT|APPEND|TRUNC|EXCL)\b/;

export interface RawWrite {
  file: string;
  line: number;
  call: string;
}

/** Is this open's flags argument a write (a flag we cannot read counts as one: the rule is "no doubt"). */
function opensForWrite(call: ts.CallExpression, sf: ts.SourceFile): boolean {
  const flags = call.arguments[1];
  if (!flags) return false;
  if (ts.isStringLiteralLike(flags)) return /[wa+]/.test(flags.text);
  const text = flags.getText(sf);
  if (WRITE_FLAG_NAMES.test(text)) return true;
  // constants.O_RDONLY | O_NOFOLLOW … and the like: read-only.
  return !/\bO_RDONLY\b/.test(text);
}

/** The raw node:fs writes in one TypeScript source. */
export function rawWritesIn(file: string, source: string): RawWrite[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const named = new Map<string, string>(); // local name → the fs function it is
  const namespaces = new Set<string>(); // local names of the module itself (import * as fs, import fs, { promises as fsp })
  for (const st of sf.statements) {
    if (!ts.isImportDeclaration(st) || !ts.isStringLiteral(st.moduleSpecifier) || !FS_MODULES.has(st.moduleSpecifier.text)) continue;
    const clause = st.importClause;
    if (!clause || clause.isTypeOnly) continue;
    if (clause.name) namespaces.add(clause.name.text);
    const bindings = clause.namedBindings;
    if (bindings && ts.isNamespaceImport(bindings)) namespaces.add(bindings.name.text);
    if (bindings && ts.isNamedImports(bindings)) {
      for (const el of bindings.elements) {
        if (el.isTypeOnly) continue;
        const imported = (el.propertyName ?? el.name).text;
        if (imported === 'promises') namespaces.add(el.name.text);
        else named.set(el.name.text, imported);
      }
    }
  }
  const found: RawWrite[] = [];
  const report = (node: ts.Node, call: string): void => {
    found.push({ file, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, call });
  };
  /** The fs function a callee names: `writeFile`, `fs.writeFile`, `fs.promises.writeFile`. */
  const isModule = (e: ts.Expression): boolean =>
    (ts.isIdentifier(e) && namespaces.has(e.text)) || (ts.isPropertyAccessExpression(e) && e.name.text === 'promises' && isModule(e.expression));
  const fsFunction = (callee: ts.Expression): string | undefined => {
    if (ts.isIdentifier(callee)) return named.get(callee.text);
    if (ts.isPropertyAccessExpression(callee) && isModule(callee.expression)) return callee.name.text;
    if (ts.isElementAccessExpression(callee) && isModule(callee.expression) && ts.isStringLiteralLike(callee.argumentExpression)) return callee.argumentExpression.text;
    return undefined;
  };
  /** Is this identifier a reference to a binding (not a property name, an import specifier or a declaration)? */
  const isReference = (node: ts.Identifier): boolean => {
    const p = node.parent;
    if (ts.isPropertyAccessExpression(p) && p.name === node) return false;
    if (ts.isImportSpecifier(p) || ts.isImportClause(p) || ts.isNamespaceImport(p)) return false;
    if ((ts.isPropertyAssignment(p) || ts.isMethodDeclaration(p) || ts.isPropertyDeclaration(p) || ts.isPropertySignature(p) || ts.isMethodSignature(p)) && p.name === node) return false;
    return true;
  };
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      // A dynamic import of node:fs escapes the import scan: refuse it outright.
      const spec = node.arguments[0];
      if (spec && ts.isStringLiteralLike(spec) && FS_MODULES.has(spec.text)) report(node, `import('${spec.text}')`);
    }
    // const { writeFileSync: w } = fs: a write taken out of the module under another name.
    if (ts.isVariableDeclaration(node) && ts.isObjectBindingPattern(node.name) && node.initializer && isModule(node.initializer)) {
      for (const el of node.name.elements) {
        const key = el.propertyName ?? el.name;
        if (ts.isIdentifier(key) && (WRITES.has(key.text) || OPENS.has(key.text))) report(el, `${key.text} (taken out of the module)`);
      }
    }
    const asFunction = ts.isPropertyAccessExpression(node) || ts.isElementAccessExpression(node) || (ts.isIdentifier(node) && isReference(node)) ? fsFunction(node as ts.Expression) : undefined;
    if (asFunction) {
      const call = ts.isCallExpression(node.parent) && node.parent.expression === node ? node.parent : undefined;
      if (call && (WRITES.has(asFunction) || (OPENS.has(asFunction) && opensForWrite(call, sf)))) report(call, call.getText(sf).split('\n')[0]!.slice(0, 120));
      // Passed on uncalled (const w = fs.writeSync; promisify(fsync)): the write happens elsewhere.
      else if (!call && (WRITES.has(asFunction) || OPENS.has(asFunction))) report(node, `${node.getText(sf)} (taken as a value)`);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

const tsFiles = (dir: string): string[] => tsSourceFiles(dir, root);

describe('no raw node:fs writes outside src/storage/ and src/os/', () => {
  it('recognises every form of a raw write (planted examples)', () => {
    const planted = [
      `import { writeFile, open as openFile } from 'node:fs/promises';`,
      `import * as fs from 'node:fs';`,
      `import fsDefault, { constants, promises as fsp, mkdirSync as mk } from 'fs';`,
      `import { readFile } from 'node:fs/promises';`,
      `await writeFile('/x', 'y');`, // 5
      `fs.renameSync('/a', '/b');`, // 6
      `await fsp.unlink('/x');`, // 7
      `mk('/d', { recursive: true });`, // 8
      `const fh = await openFile('/x', 'wx', 0o600);`, // 9
      `fs.openSync('/x', constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW);`, // 10
      `fsDefault.promises.chmod('/x', 0o600);`, // 11
      `await openFile('/x', 'r');`, // read: fine
      `fs.openSync('/x', constants.O_RDONLY | constants.O_NOFOLLOW);`, // read: fine
      `await readFile('/x');`, // read: fine
      `const sync = fs.fsyncSync; [1].forEach(() => sync(1));`, // 15
      `const f = await import('node:fs');`, // 16
      `const { writeFileSync: w, readFileSync } = fs;`, // 17
      `fs['rmSync']('/x', { recursive: true });`, // 18
      `const { symlink } = fsp;`, // 19
      `fh.writeFile('x'); other.mkdir('/d'); const o = { rename: 1 };`, // not node:fs: fine
    ].join('\n');
    const lines = rawWritesIn('planted.ts', planted).map((w) => w.line);
    expect(lines).toEqual([5, 6, 7, 8, 9, 10, 11, 15, 16, 17, 18, 19]);
  });

  it('finds none in src/ and workers/', () => {
    const offenders: string[] = [];
    for (const file of [...tsFiles('src'), ...tsFiles('workers')]) {
      if (ALLOWED.some((a) => file.startsWith(a))) continue;
      for (const w of rawWritesIn(file, readFileSync(join(root, file), 'utf8'))) offenders.push(`${w.file}:${w.line}: ${w.call}`);
    }
    expect(offenders, `route these through src/storage/ (stored data) or src/os/ (the user's directories):\n${offenders.join('\n')}`).toEqual([]);
  });
});
