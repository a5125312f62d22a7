import type { Cluster } from './cluster.js';

export interface CommittedRow {
  readonly id: number;
  readonly xid: string;
  /** The server's own commit timestamp (track_commit_timestamp), microsecond precision. */
  readonly commitTime: Date;
  readonly commitTimeText: string;
  /** WAL insert position right after the commit returned. */
  readonly lsnAfter: string;
}

export const WORKLOAD_TABLE = 'workload_rows';

export async function createWorkloadTable(c: Cluster, database = 'postgres'): Promise<void> {
  await c.sql(`CREATE TABLE IF NOT EXISTS ${WORKLOAD_TABLE} (id bigserial PRIMARY KEY, payload text NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())`, [], database);
}

/**
 * Commit `count` rows, one transaction each, `gapMs` apart, and return each row's commit
 * timestamp as the server recorded it — what PITR tests choose targets between.
 */
export async function commitRows(c: Cluster, count: number, gapMs = 0, database = 'postgres'): Promise<CommittedRow[]> {
  await createWorkloadTable(c, database);
  const client = await c.client(database);
  const rows: CommittedRow[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const ins = await client.query<{ id: string; xid: string }>(
        `INSERT INTO ${WORKLOAD_TABLE} (payload) VALUES (md5(random()::text)) RETURNING id, xmin::text AS xid`,
      );
      const { id, xid } = ins.rows[0]!;
      const info = await client.query<{ ts: Date; ts_text: string; lsn: string }>(
        `SELECT pg_xact_commit_timestamp($1::xid) AS ts, pg_xact_commit_timestamp($1::xid)::text AS ts_text, ${c.major >= 10 ? 'pg_current_wal_lsn()' : 'pg_current_xlog_location()'}::text AS lsn`,
        [xid],
      );
      const r = info.rows[0]!;
      rows.push({ id: Number(id), xid, commitTime: r.ts, commitTimeText: r.ts_text, lsnAfter: r.lsn });
      if (gapMs > 0 && i < count - 1) await new Promise((res) => setTimeout(res, gapMs));
    }
  } finally {
    await client.end();
  }
  return rows;
}

/** A background writer: commits a row every `intervalMs` until stopped. */
export function startWorkload(c: Cluster, intervalMs = 20, database = 'postgres'): { stop(): Promise<CommittedRow[]> } {
  let stopped = false;
  const rows: CommittedRow[] = [];
  const loop = (async () => {
    while (!stopped) {
      rows.push(...(await commitRows(c, 1, 0, database)));
      await new Promise((res) => setTimeout(res, intervalMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return rows;
    },
  };
}

/** md5 over a table's rows in a stable order: equal digests = equal contents. */
export async function tableDigest(c: Cluster, table: string, database = 'postgres'): Promise<string> {
  const r = await c.sql<{ d: string | null }>(`SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS d FROM ${table} t`, [], database);
  return r[0]!.d ?? '';
}
