/**
 * The start of `global/pg_control` (ControlFileData): the system identifier (uint64 at offset 0,
 * written once by initdb) and pg_control_version (uint32 at offset 8), little-endian. Pure:
 * bytes in, values out.
 */

/** pg_control_version of PostgreSQL 10 to 18 (several majors share one). */
export const PG_CONTROL_VERSIONS: ReadonlySet<number> = new Set([1002, 1100, 1201, 1300, 1700, 1800]);

/** Bytes needed for pgControlIdentity. */
export const PG_CONTROL_IDENTITY_BYTES = 12;

export interface PgControlIdentity {
  /** pg_control_version (0 when the bytes are too few to hold it). */
  readonly version: number;
  /** Whether the version is one of PostgreSQL 10 to 18. */
  readonly supported: boolean;
  /** The system identifier in decimal, undefined when zero (or the bytes are too few). */
  readonly systemId: string | undefined;
}

export function pgControlIdentity(bytes: Uint8Array): PgControlIdentity {
  if (bytes.length < PG_CONTROL_IDENTITY_BYTES) return { version: 0, supported: false, systemId: undefined };
  const view = new DataView(bytes.buffer, bytes.byteOffset, PG_CONTROL_IDENTITY_BYTES);
  const version = view.getUint32(8, true);
  const id = view.getBigUint64(0, true);
  return { version, supported: PG_CONTROL_VERSIONS.has(version), systemId: id === 0n ? undefined : id.toString() };
}
