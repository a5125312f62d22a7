/**
 * The block-level backup scenario of one PostgreSQL major, standalone: a full backup, then
 * incremental and differential ones, each after a round of every kind of change and taken while
 * another round runs (drops, truncations, new relfilenodes, databases and tablespaces coming and
 * going during the backup) and a light workload commits; then restores of a chain at its end and
 * at a point between two incrementals, each compared with the source as it was then (schema, every
 * permanent table's rows, no file of a dropped relation, amcheck with heapallindexed, page
 * checksums), and verify --repo against the chains.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster, stopServerIn } from '../harness/cluster.js';
import { embeddedPgDir, type TestMajor } from '../harness/pg-binaries.js';
import { registerForCleanup, testRoot } from '../harness/registry.js';
import { runCliProcess as runCli } from '../harness/run-bin.js';
import { seededRandom } from '../harness/seeded-random.js';
import { startWorkload } from '../harness/workload.js';
import { queryAt, type Endpoint } from '../harness/verify-cluster.js';
import { amcheckEverything, fingerprint, setUpBlockWorkload, type BlockWorkload, type Fingerprint } from '../harness/block-workload.js';
import { archiveCommandLine } from '../../src/archive/archive-command.js';
import type { BackupManifest } from '../../src/format/backup-manifest.js';
import { parseIncrementalHeader } from '../../src/format/incremental-file.js';
import { loadKernels } from '../../src/format/kernels.js';
import { decodeFrame } from '../../src/format/lz4-frame.js';
import { storedFilePath } from '../../src/repo/layout.js';
import { formatLsn, parseLsn } from '../../src/wal/lsn.js';
import { walSegmentNumber, walSegmentStart } from '../../src/wal/segment.js';
import { ownedDir, until } from './wal-helpers.js';

const quiet = { PGBACULA_PROGRESS_SECONDS: '0' };

/**
 * Files of the restored data directory no relation or database owns: what a restore that
 * brought back a dropped table or database would leave.
 */
async function orphanFiles(e: Endpoint, pgdata: string): Promise<string[]> {
  const out: string[] = [];
  const dbs = await queryAt<{ oid: string; name: string; conn: boolean }>(e, 'SELECT oid::text, datname AS name, datallowconn AS conn FROM pg_database');
  for (const dir of readdirSync(join(pgdata, 'base'))) if (/^\d+$/.test(dir) && !dbs.some((d) => d.oid === dir)) out.push(`base/${dir}`);
  for (const d of dbs.filter((x) => x.conn)) {
    const nodes = new Set((await queryAt<{ f: string }>(e, "SELECT pg_relation_filenode(oid)::text AS f FROM pg_class WHERE pg_relation_filenode(oid) IS NOT NULL AND reltablespace = 0", d.name)).map((r) => r.f));
    const dir = join(pgdata, 'base', d.oid);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) {
      const m = /^(\d+)(?:_(?:fsm|vm|init))?(?:\.\d+)?$/.exec(f);
      if (m && !nodes.has(m[1]!)) out.push(`base/${d.oid}/${f}`);
    }
  }
  return out;
}

interface Taken {
  readonly id: string;
  readonly stdout: string;
  readonly stderr: string;
}

export function blockChainScenario(major: TestMajor): void {
  describe(`block-level backups of PostgreSQL ${major}`, () => {
    let c: Cluster;
    let repo: string;
    let wl: BlockWorkload;
    const taken = new Map<string, Taken>();
    const points = new Map<string, { lsn: string; fp: Fingerprint }>();
    const targets: string[] = [];
    const conn = () => ['--host', c.socketDir, '--port', String(c.port), '--user', 'postgres'];

    /** A backup while a light workload commits and a whole round of changes runs (round `during`). */
    const backup = async (name: string, type: 'full' | 'incr' | 'diff', during: number): Promise<Taken> => {
      const light = startWorkload(c, 15);
      const changes = wl.round(during);
      const r = await runCli(['backup', '--repo', repo, '--mode', 'pitr_block', '--type', type, ...conn()], quiet).finally(() => light.stop());
      await changes;
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      const id = /backup (\S+) complete/.exec(r.stdout)?.[1];
      expect(id, r.stdout).toBeDefined();
      const t = { id: id!, stdout: r.stdout, stderr: r.stderr };
      taken.set(name, t);
      return t;
    };
    const mark = async (name: string) => {
      const [row] = await c.sql<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
      points.set(name, { lsn: row!.l, fp: await fingerprint({ host: c.socketDir, port: c.port }) });
    };
    const manifestOf = (id: string) => JSON.parse(readFileSync(join(repo, 'backups', id, 'manifest.json'), 'utf8')) as BackupManifest;
    const restoreAt = async (name: string, point: string, backupName: string) => {
      const target = join(testRoot(), `block-${major}-${name}`);
      targets.push(target);
      registerForCleanup({ pgdata: target, dir: target });
      // One target exists already, empty and open to all (made by hand): it becomes a data directory all the same.
      if (name === 'differential') mkdirSync(target, { mode: 0o755 });
      const remaps = manifestOf(taken.get(backupName)!.id).tablespaces.map((t) => `${t.oid}=${join(target + '-ts', t.oid)}`);
      const port = await freePort();
      const r = await runCli(['restore', '--repo', repo, '--pgdata-dir', target, '--restore-port', String(port), '--pg-bin-dir', join(embeddedPgDir(major), 'bin'), '--target-lsn', points.get(point)!.lsn, ...(remaps.length ? ['--remap-tablespace', remaps.join(',')] : [])], quiet);
      return { ...r, at: { host: c.socketDir, port } };
    };

    beforeAll(async () => {
      repo = ownedDir(`block-repo-${major}`);
      c = await startCluster({ major, name: `blk${major}`, ...(major >= 17 ? { summarizeWal: true } : {}), settings: { archive_mode: 'on', archive_command: archiveCommandLine({ repo }) } });
      wl = await setUpBlockWorkload(c, seededRandom(major * 7919));
    });
    afterAll(async () => {
      for (const t of targets) stopServerIn(major, t);
      await c?.destroy();
    });

    it('takes a full backup, three incrementals and a differential, storing only changed blocks', async () => {
      const full = await backup('F', 'full', 10);
      await mark('F');
      for (const [round, name, type] of [[1, 'I1', 'incr'], [2, 'I2', 'incr'], [4, 'I3', 'incr'], [5, 'D', 'diff']] as const) {
        if (round === 4) {
          // A point between I2 and I3.
          await wl.round(3);
          await mark('mid');
        }
        await wl.round(round);
        const t = await backup(name, type, round + 10);
        await mark(name);
        const m = manifestOf(t.id);
        expect(m.level, t.stderr).toBe(type === 'incr' ? 'incremental' : 'differential');
        expect(m.reference?.backupId).toBe(type === 'diff' ? full.id : taken.get(name === 'I1' ? 'F' : name === 'I2' ? 'I1' : 'I2')!.id);
        expect(t.stderr).toMatch(/changed blocks found from (server|pgbacula) summaries/);
        expect(t.stderr).toMatch(/relation files: [\d,]+ incremental .* read\), [\d,]+ unchanged, [\d,]+ whole; .* of relation files not read/);
        expect(m.changedBlocks!.changedBlocks).toBeGreaterThan(0);
      }
      // WAL up to the last mark reaches the archive.
      const [{ name }] = (await c.sql<{ name: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
      await c.sql('SELECT pg_switch_wal()');
      await until(`segment ${name} is archived`, () => execFileSync('find', [join(repo, 'wal'), '-name', name], { encoding: 'utf8' }).trim() !== '', 60_000);
      // Incrementals read a fraction of the relation files, and store only changed blocks: every
      // block an incremental file holds of a relation's main fork carries a page LSN at or after
      // the start of the WAL segment the reference backup started in (a block unchanged since
      // would carry an older one; pgbacula's summary of that first segment counts its records
      // before the reference's start too: more blocks than needed, never fewer). How
      // much a round changes depends on the workload and on what ran while each backup was
      // taken (a file changed almost whole is stored whole); which blocks are stored does not.
      const kernels = loadKernels();
      for (const name of ['I1', 'I2', 'I3', 'D']) {
        const id = taken.get(name)!.id;
        const m = manifestOf(id);
        const cb = m.changedBlocks as unknown as { bytesRead: number; bytesSkipped: number };
        expect(cb.bytesSkipped, `${name}: ${JSON.stringify(cb)}`).toBeGreaterThan(cb.bytesRead);
        const refStart = walSegmentStart(walSegmentNumber(parseLsn(manifestOf(m.reference!.backupId).startLsn), m.walSegmentSize), m.walSegmentSize);
        const mainForks = m.files.filter((f) => f.incremental !== undefined && f.incremental.blocks > 0 && /\/INCREMENTAL\.\d+(\.\d+)?$/.test(f.path));
        expect(mainForks.length, `${name}: incremental files of main forks holding blocks`).toBeGreaterThan(0);
        let blocks = 0;
        const older: string[] = [];
        for (const f of mainForks) {
          const stored = readFileSync(storedFilePath(repo, id, f.path, f.stored ?? 'raw'));
          const bytes = f.stored === 'lz4' ? decodeFrame(stored, kernels) : new Uint8Array(stored);
          const header = parseIncrementalHeader(bytes, { blockSize: 8192, blocksPerSegment: 131072 });
          blocks += header.blocks.length;
          for (let i = 0; i < header.blocks.length; i++) {
            const page = new DataView(bytes.buffer, bytes.byteOffset + header.headerLength + i * 8192, 8);
            const lsn = (BigInt(page.getUint32(0, true)) << 32n) | BigInt(page.getUint32(4, true));
            if (lsn < refStart) older.push(`${f.path} block ${header.blocks[i]} at ${formatLsn(lsn)}`);
          }
        }
        expect(blocks).toBe(mainForks.reduce((n, f) => n + f.incremental!.blocks, 0));
        expect(older.slice(0, 10), `${name}: blocks older than the reference's first segment ${formatLsn(refStart)}`).toEqual([]);
      }
    });

    for (const [name, point, backupName] of [['chain-end', 'I3', 'I3'], ['differential', 'D', 'D'], ['between', 'mid', 'I2']] as const) {
      it(`restores ${name === 'chain-end' ? 'full + 3 incrementals' : name === 'differential' ? 'full + differential' : 'to a point between two incrementals'} equal to the source then`, async () => {
        const r = await restoreAt(name, point, backupName);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toMatch(/RESTORE PHASE 2\/6 lay-down: .* rebuilt block by block from a chain of \d backups, every hash checked, synced to disk/);
        expect(r.stderr).toMatch(/RESTORE PHASE 6\/6 verify: SELECT 1 answered; page checksums [\d,]+ pages, 0 failures/);
        expect(await fingerprint(r.at)).toEqual(points.get(point)!.fp);
        expect(await orphanFiles(r.at, join(testRoot(), `block-${major}-${name}`))).toEqual([]);
        expect(await amcheckEverything(r.at)).toBeGreaterThan(3);
      });
    }

    it('verify --repo checks each incremental against its chain, and names damage in an older backup', async () => {
      const ok = await runCli(['verify', '--repo', repo], quiet);
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      for (const t of taken.values()) expect(ok.stdout).toContain(`${t.id}: OK`);
      // One stored block of the full backup that later incrementals rebuild from.
      const full = taken.get('F')!.id;
      const m = JSON.parse(readFileSync(join(repo, 'backups', full, 'manifest.json'), 'utf8')) as { files: { path: string; size: number; stored?: string }[] };
      const victim = m.files.find((f) => /^pgdata\/base\/\d+\/\d+$/.test(f.path) && f.size >= 8 * 8192 && f.stored !== 'lz4')!;
      const stored = join(repo, 'backups', full, 'files', victim.path);
      const bytes = readFileSync(stored);
      bytes[8192 * 3 + 100]! ^= 0xff;
      writeFileSync(stored, bytes);
      const bad = await runCli(['verify', '--repo', repo], quiet);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(new RegExp(`${full}: DAMAGED[\\s\\S]*${victim.path}: content hash`));
      const later = [...taken.entries()].filter(([n]) => n !== 'F').map(([, t]) => t.id);
      const rebuiltFromIt = later.filter((id) => new RegExp(`${id}: DAMAGED[\\s\\S]*${full}:${victim.path}`).test(bad.stdout));
      expect(rebuiltFromIt.length, bad.stdout).toBeGreaterThan(0);
      bytes[8192 * 3 + 100]! ^= 0xff;
      writeFileSync(stored, bytes);
    });
  });
}
