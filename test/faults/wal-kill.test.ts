/**
 * kill -9 of wal-push (and of the native helper pgbacula-wal-push) and of wal-receive at random points (seeded, so a failure replays):
 * the archive never holds a partial or wrong segment under a final name, a retried wal-push
 * stores the segment, a restarted wal-receive continues and nothing is lost.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, chownSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listWalArchive } from '../../src/archive/listing.js';
import { parseWalSegmentName } from '../../src/wal/segment.js';
import { windowReport } from '../../src/archive/window-report.js';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { serverUser } from '../harness/os-user.js';
import { seededRandom } from '../harness/seeded-random.js';
import { NATIVE_WAL_PUSH, runNativeWalPush } from '../harness/wal-pushers.js';
import { CLI, CliProcess, connFlags, killReceivers, ownedDir, runAsServerUser, SEG, switchedSegment, until } from '../integration/wal-helpers.js';

const FINAL_SEGMENT = /^[0-9A-F]{24}$/;

/** Every file under dir with a final WAL segment name, by path. */
function finalSegments(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((p) => FINAL_SEGMENT.test(p.split('/').pop()!)).map((p) => join(dir, p));
}

/** The two archive_command implementations: program and the arguments before wal-push's own. */
const PUSH_PROGRAMS = [
  { name: 'pgbacula wal-push', file: process.execPath, prefix: [CLI, 'wal-push'] },
  { name: 'pgbacula-wal-push (native)', file: NATIVE_WAL_PUSH, prefix: [] },
] as const;
type PushProgram = (typeof PUSH_PROGRAMS)[number];

/** A push as the archiver runs it (server user, cwd = data directory), SIGKILLed after delayMs. */
function pushKilledAfter(program: PushProgram, args: readonly string[], cwd: string, delayMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const u = serverUser();
  return new Promise((resolve, reject) => {
    const child = spawn(program.file, [...program.prefix, ...args], { uid: u.uid, gid: u.gid, cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' }, stdio: 'ignore' });
    const t = setTimeout(() => child.kill('SIGKILL'), delayMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

describe.each([12, 18] as const)('kill -9 of wal-push and wal-receive, PostgreSQL %i', (major) => {
  let primary: Cluster;
  let systemId: string;
  const dirs: string[] = [];
  const dir = (name: string) => {
    const d = ownedDir(`faults-${major}-${name}`);
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    primary = await startCluster({ major, name: `kill${major}`, settings: { autovacuum: false } });
    await primary.sql("SELECT pg_create_physical_replication_slot('keep_all', true)");
    systemId = (await primary.sql<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
  });
  afterAll(async () => {
    await killReceivers();
    await primary?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it.each(PUSH_PROGRAMS)('$name killed at random points: never a partial or wrong segment under a final name, and the retry stores it', async (program) => {
    const push = (args: readonly string[]) =>
      program.prefix.length === 0 ? runNativeWalPush(args, primary.pgdata, { uid: serverUser().uid, gid: serverUser().gid }) : runAsServerUser(['wal-push', ...args], primary.pgdata);
    const repo = dir('push-repo');
    const src = dir('push-src');
    const u = serverUser();
    // The repository exists first (its creation under kill -9 is another fault, tested with it).
    const first = await switchedSegment(primary);
    const firstCopy = join(src, first);
    copyFileSync(join(primary.pgdata, 'pg_wal', first), firstCopy);
    chownSync(firstCopy, u.uid, u.gid);
    const init = await push(['--repo', repo, firstCopy]);
    expect(init.code, init.stderr).toBe(0);

    // How long one push takes here: kills are spread over that span, start-up included.
    const segs: string[] = [];
    for (let i = 0; i < 6; i++) segs.push(await switchedSegment(primary, 500));
    const t0 = Date.now();
    const timed = await push(['--repo', repo, join(primary.pgdata, 'pg_wal', segs[0]!)]);
    // A native push may take only milliseconds: the kills must fall inside it.
    const span = Math.max(program.prefix.length === 0 ? 3 : 50, Date.now() - t0);
    expect(timed.code, timed.stderr).toBe(0);

    const random = seededRandom(major * 7919);
    let killed = 0;
    for (const name of segs.slice(1)) {
      for (let round = 0; round < 3; round++) {
        const delay = Math.floor(((random() % 1000) / 1000) * span * 1.2);
        const r = await pushKilledAfter(program, ['--repo', repo, `pg_wal/${name}`], primary.pgdata, delay);
        if (r.signal === 'SIGKILL') killed++;
        // Whatever the kill point: a file under a final name is the whole segment, byte for byte.
        for (const p of finalSegments(join(repo, 'wal'))) {
          const base = p.split('/').pop()!;
          expect(readFileSync(p).equals(readFileSync(join(primary.pgdata, 'pg_wal', base))), `${p} after a kill at ${delay} ms`).toBe(true);
        }
      }
      const retry = await push(['--repo', repo, `pg_wal/${name}`]);
      expect(retry.code, retry.stderr).toBe(0);
    }
    expect(killed).toBeGreaterThan(0);
    const listing = await listWalArchive(join(repo, 'wal'), systemId);
    for (const name of segs) {
      const s = listing.segments.find((x) => x.name === name);
      expect(s, name).toBeDefined();
      expect(readFileSync(s!.path).equals(readFileSync(join(primary.pgdata, 'pg_wal', name)))).toBe(true);
    }
  });

  it('wal-receive killed at random points and restarted: it continues, and nothing is lost', async () => {
    const repo = dir('receive-repo');
    const wal = join(repo, 'wal');
    const args = ['wal-receive', '--repo', repo, ...connFlags(primary), '--status-interval', '1'];
    const random = seededRandom(major * 104729);
    const made: string[] = [];
    let rcv = new CliProcess([...args, '--create-slot']);
    await rcv.waitFor(/streaming WAL of system \d+/);
    for (let round = 0; round < 6; round++) {
      // WAL keeps coming while the receiver is killed at a random moment of its work.
      const writing = (async () => {
        for (let i = 0; i < 2; i++) made.push(await switchedSegment(primary, 1500));
      })();
      await new Promise((r) => setTimeout(r, random() % 1200));
      const k = await rcv.kill();
      expect(k.signal).toBe('SIGKILL');
      await writing;
      for (const p of finalSegments(wal)) {
        const base = p.split('/').pop()!;
        expect(readFileSync(p).equals(readFileSync(join(primary.pgdata, 'pg_wal', base))), `${p} after kill ${round + 1}`).toBe(true);
      }
      rcv = new CliProcess(args);
      await rcv.waitFor(/streaming WAL of system \d+/);
    }
    const last = made.at(-1)!;
    await rcv.waitFor(new RegExp(`archived ${last}\\b`), 90_000);
    const end = await rcv.stop();
    expect(end.code, end.stderr).toBe(0);

    const listing = await listWalArchive(wal, systemId);
    const names = listing.segments.map((s) => s.name);
    for (const name of made) expect(names, name).toContain(name);
    const segnos = listing.segments.map((s) => s.segno);
    const lastSeg = parseWalSegmentName(last, SEG).segno;
    expect(segnos.filter((n) => n <= lastSeg)).toEqual(Array.from({ length: Number(lastSeg - segnos[0]!) + 1 }, (_, i) => segnos[0]! + BigInt(i)));
    for (const s of listing.segments) expect(readFileSync(s.path).equals(readFileSync(join(primary.pgdata, 'pg_wal', s.name))), s.name).toBe(true);
    expect((await windowReport({ root: wal, systemId })).window.gaps).toEqual([]);
    await until('no temporary file is left in the archive', () => (readdirSync(join(wal, systemId), { recursive: true }) as string[]).every((n) => !String(n).includes('.tmp-')));
  });
});
