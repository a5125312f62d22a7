import { stat } from 'node:fs/promises';
import { isNotFound } from './io-error.js';

/**
 * Whether `path` exists. Only "not found" is an answer of no: any other failure (EACCES, EIO)
 * is thrown as `failure` words it, never taken for absence.
 */
export async function exists(path: string, failure: (e: unknown, what: string) => Error): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw failure(e, `cannot check ${path}`);
  }
}
