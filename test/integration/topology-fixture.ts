/**
 * The replication topology the topology suites (standalone and through Bacula) back up: a primary
 * with two physical standbys — sb_slot through the physical slot sb_slot_1, sb_sync synchronous
 * without a slot — a publication pub_main that a subscriber on another cluster consumes (the
 * logical slot sub_on_other on the primary), and a subscription sub_from_other of the primary's own
 * to that cluster, whose connection carries a password (SECRET) no output may show.
 */
import { startCluster, startStandby, type Cluster } from '../harness/cluster.js';
import type { TestMajor } from '../harness/pg-binaries.js';
import { until } from './wal-helpers.js';

export const SECRET = 'S3cret-Topo-pw';

export interface Topology {
  readonly primary: Cluster;
  readonly other: Cluster;
  readonly slotStandby: Cluster;
  readonly syncStandby: Cluster;
}

export async function startTopology(major: TestMajor, name: string, primarySettings: Readonly<Record<string, string | number | boolean>> = {}): Promise<Topology> {
  const logical = { wal_level: 'logical', max_logical_replication_workers: 4, max_worker_processes: 16 };
  const other = await startCluster({ major, name: `${name}-other`, settings: logical });
  const primary = await startCluster({ major, name: `${name}-primary`, settings: { ...logical, synchronous_standby_names: 'sb_sync', ...primarySettings } });
  await primary.sql("SELECT pg_create_physical_replication_slot('sb_slot_1', true)");
  const slotStandby = await startStandby(primary, { applicationName: 'sb_slot', slot: 'sb_slot_1' });
  const syncStandby = await startStandby(primary, { applicationName: 'sb_sync' });
  await until('both standbys stream', async () => (await primary.sql("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'")).length === 2);
  // The primary publishes a_items to the other cluster, and subscribes to its b_items.
  for (const c of [primary, other]) await c.sql('CREATE TABLE a_items (id int PRIMARY KEY, v text); CREATE TABLE b_items (id int PRIMARY KEY, v text)');
  await primary.sql('CREATE PUBLICATION pub_main FOR TABLE a_items');
  await other.sql('CREATE PUBLICATION pub_other FOR TABLE b_items');
  await other.sql(`CREATE SUBSCRIPTION sub_on_other CONNECTION 'host=${primary.socketDir} port=${primary.port} user=postgres dbname=postgres' PUBLICATION pub_main`);
  await primary.sql(`CREATE SUBSCRIPTION sub_from_other CONNECTION 'host=${other.socketDir} port=${other.port} user=postgres dbname=postgres password=${SECRET}' PUBLICATION pub_other`);
  await primary.sql("INSERT INTO a_items VALUES (1, 'one')");
  await other.sql("INSERT INTO b_items VALUES (1, 'uno')");
  await until('logical replication both ways', async () =>
    (await other.sql('SELECT 1 FROM a_items')).length === 1 && (await primary.sql('SELECT 1 FROM b_items')).length === 1);
  return { primary, other, slotStandby, syncStandby };
}

/** The restored primary's walsenders of the two rebuilt standbys: name, sync state, slot. */
export const REBUILT_STANDBYS_SQL = `SELECT r.application_name::text, r.sync_state::text, s.slot_name::text AS slot FROM pg_stat_replication r
  LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE r.application_name IN ('sb_slot', 'sb_sync') ORDER BY 1`;

/** Both rebuilt standbys stream, sb_sync synchronously (it is "sync" once it has reported a flush after catching up). */
export const BOTH_STREAMING_SQL = "SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND (application_name = 'sb_slot' OR (application_name = 'sb_sync' AND sync_state = 'sync'))";
