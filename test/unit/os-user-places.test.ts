/**
 * The src/os facility for writing into the user's places: nothing is written, chowned or
 * chmodded through a symbolic link, a tree is laid down below its root only through plain
 * directories, and the atomic write leaves the old content or the new one.
 */
import { closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomicSync } from '../../src/os/durable.js';
import { giveTreeToSync, setModeSync, setTimesSync } from '../../src/os/file-owner.js';
import { createFileStream, createFileStreamSync, createFileSync, NewFile, settleSync, writeAllSync } from '../../src/os/new-file.js';
import { OwnedDirs } from '../../src/os/owned-dirs.js';
import { makeDirSync, removeTreeSync } from '../../src/os/user-dirs.js';
import { appendToFileSync, replaceFileSync, replaceWithSymlinkSync } from '../../src/os/user-files.js';

const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
let dir: string;
let outside: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgbacula-os-'));
  outside = join(dir, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'victim'), 'untouched');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('files in the user places', () => {
  it('append, replace and create never write through a link', () => {
    symlinkSync(join(outside, 'victim'), join(dir, 'link'));
    expect(() => appendToFileSync(join(dir, 'link'), 'x')).toThrow(/ELOOP/);
    expect(() => replaceFileSync(join(dir, 'link'), 'x')).toThrow(/ELOOP/);
    expect(() => createFileSync(join(dir, 'link'))).toThrow(/ELOOP/);
    expect(() => createFileStreamSync(join(dir, 'link'))).toThrow(/ELOOP/);
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('untouched');
  });

  it('the background stream refuses a link too, as its error', async () => {
    symlinkSync(join(outside, 'victim'), join(dir, 'link'));
    const s = createFileStream(join(dir, 'link'));
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => s.on('error', resolve));
    expect(err.code).toBe('ELOOP');
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('untouched');
  });

  it('append creates, then appends; replace keeps an existing mode and gives a new file its own', () => {
    const p = join(dir, 'conf');
    appendToFileSync(p, 'a\n', { owner: me });
    appendToFileSync(p, 'b\n');
    appendToFileSync(p, '');
    expect(readFileSync(p, 'utf8')).toBe('a\nb\n');
    const q = join(dir, 'signal');
    replaceFileSync(q, 'one', { mode: 0o600 });
    expect(statSync(q).mode & 0o777).toBe(0o600);
    replaceFileSync(q, 'two', { mode: 0o644 });
    expect(readFileSync(q, 'utf8')).toBe('two');
    expect(statSync(q).mode & 0o777).toBe(0o600);
  });

  it('a file written at positions, then given its mode and times by descriptor', () => {
    const p = join(dir, 'f');
    const fd = createFileSync(p);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    writeAllSync(fd, Buffer.from('world'), 6);
    writeAllSync(fd, Buffer.from('hello '), 0);
    settleSync(fd, { mode: 0o640, mtimeMs: 1_000_000_000_000, ...me });
    closeSync(fd);
    expect(readFileSync(p, 'utf8')).toBe('hello world');
    expect(statSync(p).mode & 0o777).toBe(0o640);
    expect(statSync(p).mtimeMs).toBe(1_000_000_000_000);
  });

  it('NewFile: full-size first, written at positions, appended in order', async () => {
    const p = join(dir, 'seg.partial');
    const f = await NewFile.create(p);
    await f.truncate(8);
    await f.writeAt(Buffer.from('xxABCDxx'), 2, 4, 4);
    await f.sync();
    await f.close();
    expect(readFileSync(p)).toEqual(Buffer.from([0, 0, 0, 0, 0x41, 0x42, 0x43, 0x44]));
    const q = await NewFile.create(join(dir, 'part'), 0o640);
    q.appendSync(Buffer.from('ab'));
    q.appendSync(Buffer.from('cd'));
    await q.close();
    expect(readFileSync(join(dir, 'part'), 'utf8')).toBe('abcd');
  });

  it('a mode is never set through a link; times are the link\'s own', () => {
    symlinkSync(outside, join(dir, 'link'));
    expect(() => setModeSync(join(dir, 'link'), 0o777)).toThrow(/ELOOP/);
    const before = statSync(outside).mtimeMs;
    setTimesSync(join(dir, 'link'), 1000);
    expect(statSync(outside).mtimeMs).toBe(before);
    expect(lstatSync(join(dir, 'link')).mtimeMs).toBe(1_000_000);
  });

  it('a link replaces whatever was there', () => {
    writeFileSync(join(dir, 'l'), 'file');
    replaceWithSymlinkSync(outside, join(dir, 'l'));
    expect(lstatSync(join(dir, 'l')).isSymbolicLink()).toBe(true);
    replaceWithSymlinkSync(join(outside, 'victim'), join(dir, 'l'));
    expect(readFileSync(join(dir, 'l'), 'utf8')).toBe('untouched');
  });

  it('a tree given away skips the links inside, and is removed without following them', () => {
    mkdirSync(join(dir, 't', 'sub'), { recursive: true });
    symlinkSync(outside, join(dir, 't', 'sub', 'out'));
    giveTreeToSync(join(dir, 't'), me);
    removeTreeSync(join(dir, 't'));
    expect(existsSync(join(dir, 't'))).toBe(false);
    expect(readdirSync(outside)).toEqual(['victim']);
  });

  it('an exclusive mkdir fails on anything already there', () => {
    symlinkSync(outside, join(dir, 'planted'));
    expect(() => makeDirSync(join(dir, 'planted'), 0o700)).toThrow(/EEXIST/);
  });

  it('the atomic write replaces the whole file and leaves no temporary', () => {
    const p = join(dir, 'state.json');
    writeFileAtomicSync(p, '{"a":1}\n', 0o600);
    writeFileAtomicSync(p, '{"a":2}\n', 0o600);
    expect(readFileSync(p, 'utf8')).toBe('{"a":2}\n');
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).sort()).toEqual(['outside', 'state.json']);
  });
});

describe('OwnedDirs', () => {
  const refuse = (path: string, found: string) => new Error(`${path} is ${found}`);

  it('makes the directories below the root with the mode asked, once each', () => {
    const dirs = new OwnedDirs(me, refuse);
    const made = dirs.below(dir, ['a', 'b', 'c'], 0o750);
    expect(made).toBe(join(dir, 'a', 'b', 'c'));
    expect(statSync(made).mode & 0o777).toBe(0o750);
    expect(dirs.below(dir, ['a', 'b'])).toBe(join(dir, 'a', 'b'));
  });

  it('never passes through a link or a file', () => {
    symlinkSync(outside, join(dir, 'pg_tblspc'));
    writeFileSync(join(dir, 'file'), '');
    const dirs = new OwnedDirs(me, refuse);
    expect(() => dirs.below(dir, ['pg_tblspc', 'x'])).toThrow(`${join(dir, 'pg_tblspc')} is a symbolic link`);
    expect(() => dirs.below(dir, ['file', 'x'])).toThrow(`${join(dir, 'file')} is not a directory`);
    expect(readdirSync(outside)).toEqual(['victim']);
  });
});
