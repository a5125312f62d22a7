/**
 * Restore phase 5, topology: what a restore makes of the replication topology its backup captured
 * (docs/replication-topology.md). Written into the target's restore state directory
 * (<pgdata>/pgbacula_restore/topology/, owner only):
 *
 *   recreate_slots.sql                      run on a promoted restore unless recreate_replication_slots=false
 *   recreate_subscriptions.sql.DISABLED     staged for review; run only with recreate_subscriptions=true
 *   standby-<name>/standby.conf             each captured standby's recovery settings
 *   standby-<name>/rebuild.txt              the exact restore that rebuilds it from this backup
 *
 * On a promoted restore the subscriptions the catalog brought back are disabled at once, so a
 * restored copy never consumes its publishers' slots; every one comes back disabled and the operator
 * enables it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { PgbaculaError } from '../errors.js';
import type { BackupManifest } from '../format/backup-manifest.js';
import { hashContent } from '../format/content-hash.js';
import { loadKernels } from '../format/kernels.js';
import { decodeFrame } from '../format/lz4-frame.js';
import {
  parseTopology,
  persistentSlots,
  quoteIdent,
  rebuildSettings,
  slotScript,
  slotStatements,
  standbySettingsText,
  subscriptionScript,
  subscriptionStatements,
  TOPOLOGY_ITEM,
  TopologyError,
  type StandbyRecord,
  type TopologyDocument,
} from '../format/topology.js';
import type { JobLog } from '../item/job-log.js';
import { storedFilePath } from '../repo/layout.js';
import { writeFileAtomicSync } from '../os/durable.js';
import { giveToSync } from '../os/file-owner.js';
import { makeDirsSync } from '../os/user-dirs.js';
import { scrub } from '../config/redact.js';
import { registerConninfoSecrets } from '../server/topology-capture.js';
import type { Owner } from './target.js';
import { connectRestored } from './restored-server-client.js';

/** The topology a backup of the repository captured, or undefined when it captured none. */
export function loadTopology(repo: string, m: BackupManifest): TopologyDocument | undefined {
  const f = m.files.find((x) => x.path === TOPOLOGY_ITEM && x.type === 'file');
  if (!f) return undefined;
  const damaged = (why: string) =>
    new PgbaculaError('REPOSITORY', `backup ${m.backupId} is damaged: its replication topology (${TOPOLOGY_ITEM}) ${why}`, { hint: 'Run pgbacula verify --repo; restore another backup.' });
  let bytes: Uint8Array;
  try {
    const stored = new Uint8Array(readFileSync(storedFilePath(repo, m.backupId, f.path, f.stored ?? 'raw')));
    bytes = f.stored === 'lz4' ? decodeFrame(stored, loadKernels()) : stored;
  } catch (e) {
    throw damaged(`cannot be read: ${(e as Error).message}`);
  }
  const kernels = loadKernels();
  if (f.hash && hashContent(bytes, m.rangeSize, (b) => kernels.hash(b)) !== f.hash) throw damaged('does not match its hash');
  try {
    const doc = parseTopology(Buffer.from(bytes).toString('utf8'));
    for (const s of doc.subscriptions) registerConninfoSecrets(s.conninfo);
    for (const s of doc.standbys) registerConninfoSecrets(s.settings?.primaryConninfo ?? null);
    registerConninfoSecrets(doc.standbySettings?.primaryConninfo ?? null);
    return doc;
  } catch (e) {
    if (e instanceof TopologyError) throw damaged(`is not readable: ${e.message}`);
    throw e;
  }
}

/** The recovery settings a restore as a standby takes from the capture. */
export interface CapturedStandby {
  readonly primaryConninfo: string;
  readonly primarySlotName: string | undefined;
  /** Which captured standby (undefined: the standby that was backed up). */
  readonly name: string | undefined;
}

/**
 * restore_as_standby without primary_conninfo: the standby named by standby_name, the only one
 * captured, or the standby that was backed up. primary_conninfo, when given, overrides the
 * conninfo (the slot is still the captured one).
 */
export function capturedStandby(doc: TopologyDocument | undefined, standbyName: string | undefined, given: string | undefined): CapturedStandby | undefined {
  if (!doc) {
    if (standbyName !== undefined) {
      throw new PgbaculaError('PARAM_INVALID', `standby_name=${standbyName}: this backup captured no replication topology`, {
        hint: 'Back up with track_replication_state=true to capture the standbys; give primary_conninfo for this restore.',
      });
    }
    return undefined;
  }
  const names = doc.standbys.map((s) => s.name);
  let chosen: StandbyRecord | undefined;
  if (standbyName !== undefined) {
    chosen = doc.standbys.find((s) => s.name === standbyName || s.dirName === standbyName);
    if (!chosen) {
      throw new PgbaculaError('PARAM_INVALID', `standby_name=${standbyName} is not a standby this backup captured (${names.length ? names.join(', ') : 'none'})`, {
        hint: 'pgbacula info shows the captured topology of each backup; give one of its standby names, or primary_conninfo.',
      });
    }
  } else if (doc.standbySettings?.primaryConninfo) {
    // A backup of a standby rebuilds that standby, as it was.
    const own = doc.standbySettings;
    return { primaryConninfo: given ?? own.primaryConninfo!, primarySlotName: own.primarySlotName ?? undefined, name: undefined };
  } else if (doc.standbys.length === 1) {
    chosen = doc.standbys[0];
  } else if (doc.standbys.length > 1 && given === undefined) {
    throw new PgbaculaError('PARAM_MISSING', `restore_as_standby=true: this backup captured ${names.length} standbys (${names.join(', ')}); which one is rebuilt?`, {
      hint: `Give standby_name=<one of ${names.join(', ')}> (its primary_conninfo and slot are used), or primary_conninfo.`,
    });
  }
  if (!chosen) return undefined;
  const own = rebuildSettings(chosen);
  return { primaryConninfo: given ?? own.primaryConninfo, primarySlotName: own.primarySlotName ?? undefined, name: chosen.name };
}

export interface TopologyPhaseRequest {
  readonly doc: TopologyDocument;
  /** The major of the restored server. */
  readonly major: number;
  readonly stateDir: string;
  readonly owner: Owner;
  readonly port: number | undefined;
  readonly socketDir: string | undefined;
  readonly state: 'promoted' | 'paused' | 'shut down' | 'standby';
  readonly recreateSlots: boolean;
  readonly recreateSubscriptions: boolean;
  readonly log: JobLog;
  /** The exact restore that rebuilds a captured standby from this backup. */
  readonly rebuildCommand: (s: StandbyRecord) => string;
}

/** The directory of the topology files in a target's restore state directory. */
export function topologyDir(stateDir: string): string {
  return join(stateDir, 'topology');
}

function writeOwned(path: string, text: string, owner: Owner): void {
  writeFileAtomicSync(path, text, 0o600);
  giveToSync(path, owner);
}

async function connect(r: TopologyPhaseRequest, database: string): Promise<pg.Client> {
  const client = await connectRestored({ socketDir: r.socketDir, port: r.port, owner: r.owner, database });
  // A restored primary keeps synchronous_standby_names: nothing we run may wait for a standby
  // that has not been rebuilt yet.
  await client.query('SET synchronous_commit = local');
  return client;
}

/** Run statements database by database; returns how many did something and the failures. */
async function runStatements(r: TopologyPhaseRequest, statements: ReturnType<typeof slotStatements>, done: (s: (typeof statements)[number], rows: number) => void): Promise<string[]> {
  const failures: string[] = [];
  const byDb = new Map<string, typeof statements>();
  for (const s of statements) byDb.set(s.database ?? 'postgres', [...(byDb.get(s.database ?? 'postgres') ?? []), s]);
  for (const [db, list] of byDb) {
    let client: pg.Client | undefined;
    try {
      client = await connect(r, db);
      for (const s of list) {
        try {
          const res = await client.query(s.sql);
          done(s, res.rowCount ?? 0);
        } catch (e) {
          failures.push(`${s.what}: ${scrub((e as Error).message)}`);
        }
      }
    } catch (e) {
      failures.push(`database ${db}: ${scrub((e as Error).message)}`);
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
  return failures;
}

/** Phase 5. Returns the phase line's text. */
export async function restoreTopology(r: TopologyPhaseRequest): Promise<string> {
  const { doc, log } = r;
  const dir = topologyDir(r.stateDir);
  makeDirsSync(dir, 0o700);
  giveToSync(dir, r.owner);
  writeOwned(join(dir, 'recreate_slots.sql'), slotScript(doc, r.major), r.owner);
  writeOwned(join(dir, 'recreate_subscriptions.sql.DISABLED'), subscriptionScript(doc, r.major), r.owner);
  for (const s of doc.standbys) {
    const sd = join(dir, `standby-${s.dirName}`);
    makeDirsSync(sd, 0o700);
    giveToSync(sd, r.owner);
    writeOwned(join(sd, 'standby.conf'), standbySettingsText(doc, s), r.owner);
    writeOwned(join(sd, 'rebuild.txt'), `# Rebuild standby ${s.name} from the same backup as its primary:\n${r.rebuildCommand(s)}\n`, r.owner);
  }
  const slots = persistentSlots(doc);
  const parts: string[] = [];
  if (slots.length === 0) parts.push('no slots captured');
  else if (!r.recreateSlots) parts.push(`${slots.length} slot(s) NOT recreated (recreate_replication_slots=false): recreate_slots.sql staged`);
  else if (r.state !== 'promoted') parts.push(`${slots.length} slot(s) not recreated on a ${r.state === 'standby' ? 'standby' : `server ${r.state}`}: recreate_slots.sql staged for its primary`);
  else {
    let created = 0;
    let existed = 0;
    const failures = await runStatements(r, slotStatements(doc, r.major), (s, rows) => {
      if (rows > 0) created++;
      else existed++;
      const slot = slots.find((x) => x.name === s.name);
      if (slot?.type === 'logical' && rows > 0) {
        log.warning(`logical slot ${s.name} recreated at the current WAL position, not where it was (confirmed_flush_lsn ${slot.confirmedFlushLsn ?? '-'} when captured): its consumers must resynchronise`);
      }
    });
    for (const f of failures) log.warning(`slot not recreated: ${f} (recreate_slots.sql in ${dir})`);
    parts.push(`${created + existed} slot${created + existed === 1 ? '' : 's'} recreated${existed ? ` (${existed} already there)` : ''}${failures.length ? `, ${failures.length} failed` : ''}`);
  }
  if (doc.subscriptions.length === 0) parts.push('no subscriptions captured');
  else {
    if (r.state === 'promoted') {
      // The catalog restored them as they were: a restored copy must not consume its publishers' slots.
      const disabled = await disableSubscriptions(r);
      let created = 0;
      if (r.recreateSubscriptions) {
        const failures = await runStatements(r, subscriptionStatements(doc, r.major), () => created++);
        for (const f of failures) log.warning(`subscription not created: ${f}`);
      }
      if (disabled.length) log.warning(`subscription(s) ${disabled.join(', ')} came back enabled with the catalog and were disabled: review, then ALTER SUBSCRIPTION … ENABLE`);
      parts.push(r.recreateSubscriptions
        ? `${doc.subscriptions.length} subscription(s) present, disabled (recreate_subscriptions=true: missing ones created disabled, connect = false)`
        : 'subscriptions staged as .DISABLED');
    } else {
      parts.push('subscriptions staged as .DISABLED');
    }
  }
  if (doc.standbys.length) parts.push(`${doc.standbys.length} standby director${doc.standbys.length === 1 ? 'y' : 'ies'} (${doc.standbys.map((s) => `standby-${s.dirName}`).join(', ')})`);
  if (r.state === 'promoted' && doc.synchronousStandbyNames.trim() !== '') {
    log.warning(`the restored primary keeps synchronous_standby_names '${doc.synchronousStandbyNames}': commits wait until such a standby streams again — rebuild it (${dir}/standby-*/rebuild.txt) or ALTER SYSTEM RESET synchronous_standby_names`);
  }
  for (const n of doc.notes) log.warning(`replication topology of the backup: ${n}`);
  return `${parts.join('; ')}; files in ${dir}`;
}

/** ALTER SUBSCRIPTION … DISABLE for every enabled subscription the restored catalog holds. */
async function disableSubscriptions(r: TopologyPhaseRequest): Promise<string[]> {
  const out: string[] = [];
  const dbs = [...new Set(r.doc.subscriptions.map((s) => s.database))];
  for (const db of dbs) {
    let client: pg.Client | undefined;
    try {
      client = await connect(r, db);
      const enabled = (await client.query<{ name: string }>('SELECT s.subname::text AS name FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = current_database() AND s.subenabled ORDER BY 1')).rows;
      for (const { name } of enabled) {
        await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} DISABLE`);
        out.push(name);
      }
    } catch (e) {
      r.log.warning(`could not disable the restored subscriptions of database ${db}: ${scrub((e as Error).message)}`);
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
  return out;
}
