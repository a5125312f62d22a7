/**
 * The replication topology document (src/format/topology.ts) and what a restore makes of it:
 * the slot and subscription SQL per major, the standbys among the walsenders, the checks on a
 * document read back, the choice of a captured standby, and that no password is printed.
 */
import { describe, expect, it } from 'vitest';
import {
  captureSummary,
  describeTopology,
  parseTopology,
  serializeTopology,
  slotScript,
  slotStatements,
  standbysOf,
  subscriptionScript,
  subscriptionStatements,
  TOPOLOGY_FORMAT,
  TOPOLOGY_VERSION,
  type ReplicationRow,
  type SlotRecord,
  type TopologyDocument,
} from '../../src/format/topology.js';
import { capturedStandby, loadTopology } from '../../src/restore/topology-restore.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashContent } from '../../src/format/content-hash.js';
import { loadKernels } from '../../src/format/kernels.js';
import type { BackupManifest } from '../../src/format/backup-manifest.js';
import { applicationNameOf, parseRecoveryConf, registerConninfoSecrets } from '../../src/server/topology-capture.js';
import { recoveryFiles } from '../../src/restore/recovery-settings.js';
import { redactConninfo, scrub } from '../../src/config/redact.js';
import { PgbaculaError } from '../../src/errors.js';

function walsender(name: string, over: Partial<ReplicationRow> = {}): ReplicationRow {
  return {
    applicationName: name, user: 'replicator', clientAddr: '10.0.0.2', clientHostname: null, state: 'streaming', syncState: 'async', syncPriority: 0,
    sentLsn: '0/3000000', writeLsn: '0/3000000', flushLsn: '0/3000000', replayLsn: '0/3000000', writeLag: null, flushLag: null, replayLag: null, slot: null, ...over,
  };
}

const SLOTS: SlotRecord[] = [
  { name: 'sb1', type: 'physical', plugin: null, database: null, temporary: false, active: true, restartLsn: '0/3000000', confirmedFlushLsn: null },
  { name: 'sub_x', type: 'logical', plugin: 'pgoutput', database: 'app', temporary: false, twoPhase: true, failover: true, active: true, restartLsn: '0/2000000', confirmedFlushLsn: '0/2800000' },
  { name: 'tmp', type: 'physical', plugin: null, database: null, temporary: true, active: true, restartLsn: null, confirmedFlushLsn: null },
];

function doc(over: Partial<TopologyDocument> = {}): TopologyDocument {
  const replication = [walsender('sb_slot', { slot: 'sb1' }), walsender('sb_sync', { syncState: 'sync' }), walsender('sub_x', { slot: 'sub_x' }), walsender('pg_basebackup', { state: 'backup' }), walsender('pgbacula wal-receive')];
  return {
    format: TOPOLOGY_FORMAT,
    version: TOPOLOGY_VERSION,
    capturedAt: '2026-12-01T10:00:00.000Z',
    role: 'primary',
    major: 18,
    pgVersion: '18.1',
    timeline: 1,
    lsn: '0/3000060',
    walLevel: 'logical',
    synchronousStandbyNames: 'sb_sync',
    replication,
    slots: SLOTS,
    subscriptions: [{
      name: 'sub_in', database: 'app', owner: 'alice', enabled: true, conninfo: "host=pub.example user=rep password='s3cret value'", slotName: 'sub_in', synchronousCommit: 'off', publications: ['p1', 'p2'],
      options: { binary: true, streaming: 'parallel', two_phase: false, disable_on_error: false, password_required: true, run_as_owner: false, origin: 'any', failover: false },
    }],
    publications: [{ name: 'pub_main', database: 'app', owner: 'alice', allTables: false, actions: ['insert', 'update'], tables: ['public.a'] }],
    standbys: standbysOf(replication, SLOTS, '/var/run/postgresql', 5432),
    standbySettings: null,
    notes: [],
    ...over,
  };
}

describe('the standbys among the walsenders', () => {
  it('leaves out base backups, WAL tools and logical decoding sessions, and names each one uniquely', () => {
    const d = doc();
    expect(d.standbys.map((s) => [s.name, s.slot, s.syncState])).toEqual([['sb_slot', 'sb1', 'async'], ['sb_sync', null, 'sync']]);
    expect(d.standbys[0]!.primaryConninfo).toBe('host=/var/run/postgresql port=5432 user=replicator application_name=sb_slot');
    const twice = standbysOf([walsender('walreceiver'), walsender('walreceiver'), walsender('../evil name')], [], 'db1', 5432);
    expect(twice.map((s) => s.dirName)).toEqual(['walreceiver', 'walreceiver-2', '__evil_name']);
    expect(twice[2]!.primaryConninfo).toContain("application_name='../evil name'");
  });

  it('says what was captured in one line', () => {
    expect(captureSummary(doc())).toBe('captured 2 replication slots (and 1 temporary, not recreated), 1 subscription, 2 standbys, 1 publication');
    expect(captureSummary(doc({ slots: SLOTS.slice(0, 2), publications: [] }))).toBe('captured 2 replication slots, 1 subscription, 2 standbys');
    expect(captureSummary(doc({ slots: [], subscriptions: [], publications: [], standbys: [] }))).toBe('captured 0 replication slots, 0 subscriptions, 0 standbys');
  });
});

describe('recreate_slots.sql', () => {
  it('recreates persistent slots only, each where none of its name exists, with the arguments of the major', () => {
    const at18 = slotStatements(doc(), 18);
    expect(at18.map((s) => s.name)).toEqual(['sb1', 'sub_x']);
    expect(at18[0]!.sql).toBe("SELECT slot_name FROM pg_create_physical_replication_slot('sb1', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'sb1');");
    expect(at18[1]!.database).toBe('app');
    expect(at18[1]!.sql).toContain("pg_create_logical_replication_slot('sub_x', 'pgoutput', false, true, true)");
    expect(slotStatements(doc(), 14)[1]!.sql).toContain("pg_create_logical_replication_slot('sub_x', 'pgoutput', false, true)");
    expect(slotStatements(doc(), 10)[1]!.sql).toContain("pg_create_logical_replication_slot('sub_x', 'pgoutput', false)");
  });

  it('connects to each logical slot\'s database and warns that consumers resynchronise', () => {
    const text = slotScript(doc(), 18);
    expect(text).toContain('\\connect "app"');
    expect(text).toMatch(/consumers must resynchronise/);
    expect(slotScript(doc({ slots: [SLOTS[0]!] }), 18)).not.toMatch(/resynchronise/);
  });
});

describe('recreate_subscriptions.sql.DISABLED', () => {
  it('creates each subscription disabled without connecting, only where it is missing, with the options the major knows', () => {
    const [at18] = subscriptionStatements(doc(), 18);
    expect(at18!.database).toBe('app');
    expect(at18!.sql).toContain('IF NOT EXISTS (SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = current_database() AND s.subname = \'sub_in\')');
    expect(at18!.sql).toContain('connect = false');
    expect(at18!.sql).toContain("streaming = ''parallel''");
    expect(at18!.sql).toContain('failover = false');
    expect(at18!.sql).toContain('OWNER TO "alice"');
    // The conninfo literal quoted twice: once in CREATE, once as the EXECUTE string.
    expect(at18!.sql).toContain("password=''''s3cret value''''");
    const [at14] = subscriptionStatements(doc(), 14);
    expect(at14!.sql).toContain("streaming = ''on''");
    expect(at14!.sql).not.toContain('origin');
    expect(at14!.sql).not.toContain('failover');
    const [at10] = subscriptionStatements(doc(), 10);
    expect(at10!.sql).not.toMatch(/binary|streaming|two_phase|origin/);
    expect(at10!.sql).toContain("slot_name = ''sub_in''");
  });

  it('slot_name = NONE for a subscription without a slot; one whose connection was unreadable is left out and named', () => {
    const d = doc();
    const none = { ...d, subscriptions: [{ ...d.subscriptions[0]!, slotName: null }, { ...d.subscriptions[0]!, name: 'hidden', conninfo: null }] };
    const statements = subscriptionStatements(none, 18);
    expect(statements).toHaveLength(1);
    expect(statements[0]!.sql).toContain('slot_name = NONE');
    const text = subscriptionScript(none, 18);
    expect(text).toContain('Left out (the role that took the backup could not read their connection): hidden.');
    expect(text).toContain('ALTER SUBSCRIPTION "sub_in" ENABLE;');
  });
});

describe('a topology document read back', () => {
  it('round-trips', () => {
    const d = doc();
    expect(parseTopology(serializeTopology(d))).toEqual(d);
  });

  it('is refused when it is not one, or names a standby directory that is not a plain name', () => {
    expect(() => parseTopology('{')).toThrow(/not JSON/);
    expect(() => parseTopology(JSON.stringify({ format: 'x' }))).toThrow(/not a pgbacula topology/);
    expect(() => parseTopology(JSON.stringify({ ...doc(), version: 99 }))).toThrow(/version 99/);
    const d = doc();
    expect(() => parseTopology(JSON.stringify({ ...d, standbys: [{ ...d.standbys[0]!, dirName: '../../etc' }] }))).toThrow(/plain directory name/);
    expect(() => parseTopology(JSON.stringify({ ...d, slots: [{ ...SLOTS[1]!, plugin: null }] }))).toThrow(/lacks its plugin/);
  });
});

describe('info and the job log never show a password', () => {
  it('describes the topology with every conninfo password masked', () => {
    const own = { primaryConninfo: 'host=up password=hunter22', primarySlotName: 'sb1', restoreCommand: null, standbySignal: true, source: 'settings' as const, upstream: { host: 'up', port: 5432, slot: 'sb1', status: 'streaming' } };
    const lines = describeTopology(doc({ standbySettings: own }), redactConninfo).join('\n');
    expect(lines).not.toContain('s3cret');
    expect(lines).not.toContain('hunter22');
    expect(lines).toContain("password=********");
    expect(lines).toContain('standby sb_sync: sync, no slot');
    expect(lines).toContain('this standby: primary_conninfo');
  });

  it('registers the passwords of a captured conninfo as secrets', () => {
    registerConninfoSecrets("host=a password='quoted pass w0rd' user=x");
    registerConninfoSecrets('postgresql://rep:uri%40pw@host/db');
    expect(scrub('a message quoting quoted pass w0rd and uri@pw')).toBe('a message quoting ******** and ********');
  });

  it('keeps a JSON document intact when it masks a conninfo inside it', () => {
    const json = JSON.stringify({ conninfo: 'host=a password=abc', next: 1 });
    expect(JSON.parse(redactConninfo(json))).toEqual({ conninfo: 'host=a password=********', next: 1 });
  });
});

describe('restore as a standby from the capture', () => {
  it('takes the named standby, or the only one, or the standby backed up', () => {
    const d = doc();
    expect(capturedStandby(d, 'sb_slot', undefined)).toEqual({ primaryConninfo: d.standbys[0]!.primaryConninfo, primarySlotName: 'sb1', name: 'sb_slot' });
    expect(capturedStandby(d, 'sb_sync', 'host=new-primary')).toEqual({ primaryConninfo: 'host=new-primary', primarySlotName: undefined, name: 'sb_sync' });
    expect(capturedStandby({ ...d, standbys: [d.standbys[1]!] }, undefined, undefined)?.name).toBe('sb_sync');
    const own = { primaryConninfo: 'host=up user=rep', primarySlotName: 'sb1', restoreCommand: null, standbySignal: true, source: 'settings' as const, upstream: null };
    expect(capturedStandby({ ...d, role: 'standby', standbys: [], standbySettings: own }, undefined, undefined)).toEqual({ primaryConninfo: 'host=up user=rep', primarySlotName: 'sb1', name: undefined });
    expect(capturedStandby(undefined, undefined, 'host=x')).toBeUndefined();
  });

  it('prefers a standby\'s own settings, read over standby_hosts, to the conninfo made at capture', () => {
    const d = doc();
    const own = { primaryConninfo: "host=db1.example user=rep application_name='sb slot'", primarySlotName: null, restoreCommand: null, standbySignal: true, source: 'settings' as const, upstream: null };
    const withOwn = { ...d, standbys: [{ ...d.standbys[0]!, settings: own, reachedAt: 'db2:5432' }, d.standbys[1]!] };
    expect(parseTopology(serializeTopology(withOwn))).toEqual(withOwn);
    // Its conninfo; the slot it streamed through when its own settings name none.
    expect(capturedStandby(withOwn, 'sb_slot', undefined)).toEqual({ primaryConninfo: own.primaryConninfo, primarySlotName: 'sb1', name: 'sb_slot' });
    expect(captureSummary(withOwn)).toContain('2 standbys (own settings read from 1)');
    expect(applicationNameOf(own.primaryConninfo)).toBe('sb slot');
    expect(applicationNameOf('host=a application_name=x2 user=b')).toBe('x2');
    expect(applicationNameOf('host=a')).toBeUndefined();
    // Read before 12: only its WAL receiver's slot; the conninfo made at capture stays.
    const slotOnly = { ...withOwn.standbys[0]!, settings: { ...own, primaryConninfo: null, primarySlotName: 'other_slot', source: 'wal-receiver' as const } };
    expect(capturedStandby({ ...d, standbys: [slotOnly] }, undefined, undefined)).toEqual({ primaryConninfo: d.standbys[0]!.primaryConninfo, primarySlotName: 'other_slot', name: 'sb_slot' });
  });

  it('refuses an unknown name, and several standbys without one', () => {
    const d = doc();
    expect(() => capturedStandby(d, 'nope', undefined)).toThrow(/not a standby this backup captured \(sb_slot, sb_sync\)/);
    let e: unknown;
    try {
      capturedStandby(d, undefined, undefined);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(PgbaculaError);
    expect((e as PgbaculaError).code).toBe('PARAM_MISSING');
    expect((e as PgbaculaError).hint).toContain('standby_name=');
    expect(() => capturedStandby(undefined, 'sb_slot', undefined)).toThrow(/captured no replication topology/);
  });

  it('writes primary_slot_name with primary_conninfo', () => {
    const plan = { restoreCommand: 'x', target: { kind: 'end-of-wal' } as const, action: 'promote' as const, timeline: 'latest' as const, standby: { primaryConninfo: 'host=p', primarySlotName: 'sb1' } };
    expect(recoveryFiles(18, plan)[0]!.content).toContain("primary_slot_name = 'sb1'");
    expect(recoveryFiles(10, plan)[0]!.content).toContain("primary_slot_name = 'sb1'");
  });
});

describe('recovery.conf of a standby before 12', () => {
  it('reads its settings, the last occurrence winning', () => {
    const conf = parseRecoveryConf("standby_mode = 'on'\n# primary_conninfo = 'old'\nprimary_conninfo = 'host=a user=b application_name=''x'''\nprimary_slot_name = 's1'\nprimary_slot_name = 's2'\n");
    expect(conf.get('standby_mode')).toBe('on');
    expect(conf.get('primary_conninfo')).toBe("host=a user=b application_name='x'");
    expect(conf.get('primary_slot_name')).toBe('s2');
  });
});

describe('the topology stored in a backup', () => {
  it('is read back when its hash matches, and named as damage when it does not', () => {
    const repo = mkdtempSync(join(tmpdir(), 'topo-unit-'));
    try {
      const text = Buffer.from(serializeTopology(doc()));
      const k = loadKernels();
      const dir = join(repo, 'backups', '20261201-100000F', 'files', 'topology');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'topology.json'), text);
      const entry = { path: 'topology/topology.json', type: 'file', size: text.length, mode: 0o600, mtime: '2026-12-01T10:00:00Z', hash: hashContent(text, 8 << 20, (b) => k.hash(b)), stored: 'raw', storedSize: text.length };
      const m = { backupId: '20261201-100000F', rangeSize: 8 << 20, files: [entry] } as unknown as BackupManifest;
      expect(loadTopology(repo, m)?.standbys.map((s) => s.name)).toEqual(['sb_slot', 'sb_sync']);
      expect(loadTopology(repo, { ...m, files: [] })).toBeUndefined();
      writeFileSync(join(dir, 'topology.json'), Buffer.from(text.toString().replace('sb_sync', 'sb_sunk')));
      expect(() => loadTopology(repo, m)).toThrow(/backup 20261201-100000F is damaged: its replication topology \(topology\/topology.json\) does not match its hash/);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });
});
