/**
 * Relation file names: `<relfilenode>[_<fork>][.<segno>]`
 * in a relation directory; temporary relations are `t<backendid>_<relfilenode>[_<fork>][.<segno>]`.
 * Pure: names in, values out.
 */
export type Fork = 'main' | 'fsm' | 'vm' | 'init';

export interface RelationFileName {
  readonly relfilenode: number;
  readonly fork: Fork;
  readonly segment: number;
  readonly temporary: boolean;
}

const RELATION = /^(t\d+_)?(\d+)(?:_(fsm|vm|init))?(?:\.(\d+))?$/;

export function parseRelationFileName(name: string): RelationFileName | undefined {
  const m = RELATION.exec(name);
  if (!m) return undefined;
  // ".0" is not a valid segment suffix (segment 0 has none); pg_checksums treats it as an error.
  if (m[4] !== undefined && (m[4] === '0' || m[4].startsWith('0'))) return undefined;
  return {
    relfilenode: Number(m[2]),
    fork: (m[3] as Fork | undefined) ?? 'main',
    segment: m[4] === undefined ? 0 : Number(m[4]),
    temporary: m[1] !== undefined,
  };
}

/** The fork a relation file belongs to, for messages: `base/5/16384_fsm.2` → `fsm`, otherwise `main`. */
export function forkOf(path: string): Fork {
  const m = /_(fsm|vm|init)(?:\.\d+)?$/.exec(path);
  return m ? (m[1] as Fork) : 'main';
}

/**
 * Is this directory (path relative to PGDATA, '/'-separated) one that holds relation files?
 * `global`, `base/<db>`, and `pg_tblspc/<oid>/PG_<major>_<catver>/<db>`.
 */
export function isRelationDirectory(relDir: string): boolean {
  return relDir === 'global' || /^base\/\d+$/.test(relDir) || /^pg_tblspc\/\d+\/PG_[^/]+\/\d+$/.test(relDir);
}

/** Files in relation directories that are not relation data and carry no page checksums. */
const NOT_CHECKSUMMED = new Set(['pg_control', 'pg_filenode.map', 'PG_VERSION']);

/** Should pages of this file be checksum-verified? Only real relation files of relation dirs. */
export function carriesPageChecksums(relDir: string, name: string): boolean {
  if (!isRelationDirectory(relDir)) return false;
  if (NOT_CHECKSUMMED.has(name) || name.startsWith('pg_internal.init') || name.startsWith('config_exec_params')) return false;
  const r = parseRelationFileName(name);
  return r !== undefined && !r.temporary;
}
