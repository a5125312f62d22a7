/** Which system a data directory is: the system identifier in its pg_control. */
import { join } from 'node:path';
import { PgbaculaError } from '../errors.js';
import { pgControlIdentity, PG_CONTROL_IDENTITY_BYTES } from '../format/pg-control.js';
import { posixStorage } from '../storage/posix.js';
import { errorCode, type Storage } from '../storage/storage.js';
import { ioError, isNotFound } from './archive-io.js';

/**
 * The system identifier in `<pgdata>/global/pg_control`, or undefined when there is no such
 * file (not a data directory). Only the first 12 bytes are read: the identifier (offset 0) is
 * written once by initdb and never changes, so a read concurrent with a pg_control update
 * cannot tear it.
 */
export async function dataDirectorySystemId(pgdata: string, storage: Storage = posixStorage): Promise<string | undefined> {
  const path = join(pgdata, 'global', 'pg_control');
  let bytes: Buffer;
  try {
    bytes = await storage.readRange(path, 0, PG_CONTROL_IDENTITY_BYTES);
  } catch (e) {
    if (isNotFound(e) || errorCode(e) === 'ENOTDIR') return undefined;
    throw ioError(e, `cannot read ${path}`);
  }
  const control = pgControlIdentity(bytes);
  if (!control.supported) {
    throw new PgbaculaError('PARAM_INVALID', `${path} is not the pg_control file of PostgreSQL 10 to 18 (pg_control_version ${control.version})`, {
      hint: 'Run wal-push/wal-fetch from the data directory of the server (archive_command and restore_command do), or name it with --pgdata.',
    });
  }
  return control.systemId;
}
