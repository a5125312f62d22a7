/**
 * What capturing the replication topology (track_replication_state=true) needs from the role
 * pgbacula connects as, for `pgbacula check`: what it cannot read is captured without it (the job
 * says so), never a failed backup. docs/replication-topology.md lists the privileges.
 */
import type pg from 'pg';
import type { Finding } from './prerequisites.js';
import { describeEndpoint } from '../config/connection.js';
import { applicationNameOf, type StandbyEndpoint } from './topology-capture.js';
import { openSession } from './session.js';

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

export async function assessTopologyCapture(client: pg.Client, role: 'primary' | 'standby'): Promise<Finding[]> {
  const r = (await client.query<{ who: string; su: boolean; conninfo: boolean; stats: boolean; settings: boolean; shut: string[] | null; senders: number }>(
    `SELECT current_user::text AS who, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su,
       has_column_privilege('pg_subscription', 'subconninfo', 'SELECT') AS conninfo,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS stats,
       pg_has_role(current_user, 'pg_read_all_settings', 'USAGE') AS settings,
       ARRAY(SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate AND NOT has_database_privilege(datname, 'CONNECT') ORDER BY 1) AS shut,
       (SELECT count(*)::int FROM pg_stat_replication) AS senders`,
  )).rows[0]!;
  const role_ = quoteIdent(r.who);
  const out: Finding[] = [];
  if (r.su) {
    out.push({ problem: `role ${r.who} is a superuser: slots, walsenders, subscriptions with their connections, publications and standby settings are all readable`, fix: 'nothing to do', severity: 'note' });
  } else {
    if (!r.conninfo) {
      out.push({ problem: `role ${r.who} may not read pg_subscription.subconninfo: subscriptions are captured without their connection and left out of the staged SQL`, fix: `GRANT SELECT (subconninfo) ON pg_subscription TO ${role_};`, severity: 'warning' });
    }
    if (!r.stats) {
      out.push({ problem: `role ${r.who} is not a member of pg_read_all_stats: pg_stat_replication hides the walsenders of other roles (their standbys would be missed)`, fix: `GRANT pg_read_all_stats TO ${role_};`, severity: 'warning' });
    }
    if (role === 'standby' && !r.settings) {
      out.push({ problem: `role ${r.who} may not read primary_conninfo on this standby (PostgreSQL 12+ keeps it in the settings)`, fix: `GRANT pg_read_all_settings TO ${role_};`, severity: 'warning' });
    }
  }
  if (r.shut && r.shut.length) {
    out.push({ problem: `role ${r.who} may not connect to ${r.shut.join(', ')}: their publications are not captured`, fix: r.shut.map((d) => `GRANT CONNECT ON DATABASE ${quoteIdent(d)} TO ${role_};`).join(' '), severity: 'warning' });
  }
  out.push({
    problem: `${r.senders} walsender(s) now: standbys are recorded from pg_stat_replication (name, slot, sync state); a standby's own settings are captured when that standby is backed up (backup_from_standby=true)`,
    fix: 'nothing to do',
    severity: 'note',
  });
  return out;
}

/**
 * standby_hosts: can each standby be reached with the connection's user and its password (config
 * file or pgpass), is it a standby, does it stream from the server checked?
 */
export async function assessStandbyReach(primary: pg.Client, endpoints: readonly StandbyEndpoint[]): Promise<Finding[]> {
  const senders = new Set((await primary.query<{ name: string }>('SELECT application_name AS name FROM pg_stat_replication')).rows.map((r) => r.name));
  const out: Finding[] = [];
  for (const ep of endpoints) {
    let client: pg.Client | undefined;
    try {
      client = await openSession(ep.connection, { applicationName: 'pgbacula check' });
      const x = (await client.query<{ rec: boolean; conninfo: string | null; cluster: string }>(
        "SELECT pg_is_in_recovery() AS rec, (SELECT conninfo FROM pg_stat_wal_receiver) AS conninfo, current_setting('cluster_name') AS cluster",
      )).rows[0]!;
      const name = applicationNameOf(x.conninfo) ?? (x.cluster || undefined);
      if (!x.rec) out.push({ problem: `standby_hosts: ${ep.label} is not a standby (not in recovery)`, fix: 'remove it from standby_hosts', severity: 'warning' });
      else if (name === undefined || !senders.has(name)) out.push({ problem: `standby_hosts: ${ep.label}${name ? ` (${name})` : ''} does not stream from this server`, fix: 'list the standbys of this server only (pg_stat_replication names them)', severity: 'warning' });
      else out.push({ problem: `standby_hosts: ${ep.label} reached: standby ${name}, its own settings are captured`, fix: 'nothing to do', severity: 'note' });
    } catch (e) {
      out.push({
        problem: `standby_hosts: ${ep.label} cannot be reached as ${ep.connection.user}: ${(e as Error).message.split('\n')[0]}`,
        fix: `allow ${ep.connection.user} in that standby's pg_hba.conf, and give its password in pgbacula.conf [connection] or a pgpass entry for ${describeEndpoint(ep.connection)}`,
        severity: 'warning',
      });
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
  return out;
}
