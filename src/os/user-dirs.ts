/**
 * Directories in places pgbacula does not own — a restore target, a where= directory, staging
 * and scratch space under tmpdir: made, made exclusively, and removed with their contents. A
 * tree is removed without following the links inside it (rm unlinks a link, never its target).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';

/** mkdir -p: every missing directory down to `path` is made with `mode`; an existing one is fine. */
export function makeDirsSync(path: string, mode = 0o777): void {
  mkdirSync(path, { recursive: true, mode });
}

export async function makeDirs(path: string, mode = 0o777): Promise<void> {
  await mkdir(path, { recursive: true, mode });
}

/**
 * Exactly one new directory: EEXIST when anything is there already — a name planted in between
 * (a link) fails instead of being written through.
 */
export function makeDirSync(path: string, mode: number): void {
  mkdirSync(path, { mode });
}

export async function makeDir(path: string, mode: number): Promise<void> {
  await mkdir(path, { mode });
}

/** A new private (0700) directory `<prefix>XXXXXX` with a name nobody could have guessed. */
export function makePrivateDirSync(prefix: string): string {
  return mkdtempSync(prefix);
}

/** rm -rf: the path and everything below it; nothing there is not an error. */
export function removeTreeSync(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}
