import { createHash } from 'node:crypto';
import type { ItemEncoding, ItemType, PageCheckResult } from '../pipeline/item.js';

/**
 * pgbacula's backup manifest: every file with its size, mtime, mode, content hash, storage
 * encoding and page-checksum result, plus what restore needs (LSNs, timelines, system
 * identifier, version). It is written LAST: a backup without a complete manifest is not a
 * backup. Serialised with one file per line (readable, diffable) and sealed with a SHA-256
 * of everything before the seal, as PostgreSQL's own backup_manifest is.
 */
export const MANIFEST_FORMAT = 'pgbacula-backup-manifest';
export const MANIFEST_VERSION = 1;

export interface ManifestFile {
  readonly path: string;
  readonly type: ItemType;
  readonly size: number;
  readonly mode: number;
  readonly mtime: string;
  readonly linkTarget?: string;
  readonly hash?: string;
  readonly stored?: ItemEncoding;
  readonly storedSize?: number;
  readonly pages?: PageCheckResult;
}

export interface ManifestTablespace {
  readonly oid: string;
  readonly location: string;
}

export interface BackupManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: number;
  readonly backupId: string;
  readonly mode: string;
  readonly level: 'full' | 'incremental' | 'differential';
  readonly label: string;
  readonly systemIdentifier: string;
  readonly pgVersion: string;
  readonly pgVersionNum: number;
  readonly walSegmentSize: number;
  readonly blockSize: number;
  readonly fromStandby: boolean;
  /** The data directory the backup was taken from (the default restore target). */
  readonly dataDirectory: string;
  readonly startLsn: string;
  readonly stopLsn: string;
  readonly startTimeline: number;
  readonly stopTimeline: number;
  readonly startTime: string;
  readonly stopTime: string;
  readonly hashAlgorithm: string;
  readonly rangeSize: number;
  /** passed | failed (count > 0) | unavailable (cluster without checksums) | disabled (verify_checksum=false) */
  readonly pageVerification: 'passed' | 'failed' | 'unavailable' | 'disabled';
  readonly checksumFailures: number;
  readonly tablespaces: readonly ManifestTablespace[];
  /** WAL segment file names stored with the backup (start to stop; the last may be partial). */
  readonly walSegments: readonly string[];
  readonly files: readonly ManifestFile[];
}

const SEAL_KEY = '"manifestSha256"';

/** Everything but the file list. */
export type ManifestHead = Omit<BackupManifest, 'files'>;

/**
 * The manifest is written in three pieces so it can be streamed (a backup of 100,000 files must
 * not hold 100,000 manifest entries in memory): the head, one line per file, and the seal — a
 * SHA-256 of everything before it.
 */
export function manifestHeadText(head: ManifestHead): string {
  const headJson = JSON.stringify(head, null, 1).replace(/\n\s*/g, ' ').replace(/\s*}$/, '');
  return `${headJson},\n"files": [\n`;
}

export function manifestFileLine(f: ManifestFile, first: boolean): string {
  return `${first ? '' : ',\n'}${JSON.stringify(f)}`;
}

export const MANIFEST_FILES_END = '\n],\n';

export function manifestSealText(sha256Hex: string): string {
  return `${SEAL_KEY}: "${sha256Hex}"}\n`;
}

export function serializeManifest(m: BackupManifest): string {
  const { files, ...head } = m;
  const body = manifestHeadText(head) + files.map((f, i) => manifestFileLine(f, i === 0)).join('') + MANIFEST_FILES_END;
  return body + manifestSealText(createHash('sha256').update(body).digest('hex'));
}

export class ManifestError extends Error {}

/** Parse and check the seal; a truncated or edited manifest is refused. */
export function parseManifest(text: string): BackupManifest {
  const at = text.lastIndexOf(SEAL_KEY);
  if (at < 0) throw new ManifestError('manifest has no seal (truncated?)');
  const body = text.slice(0, at);
  const m = /^"manifestSha256": "([0-9a-f]{64})"}\n?$/.exec(text.slice(at));
  if (!m) throw new ManifestError('manifest seal is malformed (truncated?)');
  const actual = createHash('sha256').update(body).digest('hex');
  if (actual !== m[1]) throw new ManifestError(`manifest seal mismatch: content hashes to ${actual}, seal says ${m[1]}`);
  const parsed = JSON.parse(text) as BackupManifest & { manifestSha256?: string };
  if (parsed.format !== MANIFEST_FORMAT) throw new ManifestError(`not a pgbacula manifest (format ${String(parsed.format)})`);
  if (parsed.version !== MANIFEST_VERSION) throw new ManifestError(`manifest version ${parsed.version} is not supported by this pgbacula`);
  delete parsed.manifestSha256;
  return parsed;
}
