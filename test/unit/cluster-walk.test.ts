/**
 * The walk of a data directory: one directory listed (in C by the addon, or in JavaScript), and
 * the columnar plan built from the listings — order, exclusions, tablespaces, pg_control last.
 */
import { mkdirSync, symlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeDirWalker } from '../../src/format/kernels.js';
import { inlineWalker, planCluster } from '../../src/pipeline/cluster-walk.js';
import { walkDir, type WalkedDir } from '../../workers/walk-dir.js';
import { scratchDirs } from '../harness/scratch-dirs.js';

const { tmp, file } = scratchDirs('cluster-walk');

/** walkDir's result as plain values, in the JavaScript walker or the addon. */
function listed(dir: string, kernels: 'fallback' | 'native'): WalkedDir {
  const before = process.env.PGBACULA_KERNELS;
  process.env.PGBACULA_KERNELS = kernels;
  try {
    const moved = walkDir({ absDir: dir }) as Record<symbol, unknown>;
    const value = Object.getOwnPropertySymbols(moved).map((s) => moved[s]).find((v) => typeof v === 'object' && v !== null && 'names' in v) as WalkedDir;
    return { names: value.names, kinds: Uint8Array.from(value.kinds), sizes: Float64Array.from(value.sizes), modes: Uint16Array.from(value.modes), mtimes: Float64Array.from(value.mtimes), links: { ...value.links } };
  } finally {
    if (before === undefined) delete process.env.PGBACULA_KERNELS;
    else process.env.PGBACULA_KERNELS = before;
  }
}

describe('one directory listed', () => {
  it('the addon lists what the JavaScript walker lists: names sorted, kinds, sizes, modes, times, link targets', () => {
    expect(nativeDirWalker('auto'), 'the addon (native/kernels/build.sh) must be built for this test').toBeDefined();
    const d = tmp();
    file(d, '16384', new Uint8Array(8192));
    file(d, '16384_fsm', new Uint8Array(24_576));
    file(d, 'PG_VERSION', Buffer.from('18\n'));
    file(d, 'été', new Uint8Array(5));
    file(d, 'empty', new Uint8Array(0));
    mkdirSync(join(d, 'base'), { mode: 0o700 });
    symlinkSync('/srv/ts', join(d, '99999'));
    utimesSync(join(d, '16384'), 1_700_000_000.123, 1_700_000_000.123);
    const js = listed(d, 'fallback');
    const native = listed(d, 'native');
    expect(native).toEqual(js);
    expect(native.names.split('\0')).toEqual(['16384', '16384_fsm', '99999', 'PG_VERSION', 'base', 'empty', 'été']);
    expect(Array.from(native.kinds)).toEqual([0, 0, 2, 0, 1, 0, 0]);
    expect(native.sizes[1]).toBe(24_576);
    expect(native.links).toEqual({ 2: '/srv/ts' });
    expect(native.mtimes[0]).toBeCloseTo(1_700_000_000_123, 0);
  });

  it('a directory that does not exist lists as empty in both', () => {
    const gone = join(tmp(), 'dropped-database');
    for (const k of ['fallback', 'native'] as const) expect(listed(gone, k)).toEqual({ names: '', kinds: new Uint8Array(0), sizes: new Float64Array(0), modes: new Uint16Array(0), mtimes: new Float64Array(0), links: {} });
  });

  it('a path that is not a directory is an error carrying the errno name', () => {
    const f = file(tmp(), 'plain', new Uint8Array(1));
    for (const k of ['fallback', 'native'] as const) expect(() => listed(f, k)).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
  });
});

describe('the plan of a data directory', () => {
  /** A small data directory of PostgreSQL 15 with the cases the server's rules name. */
  function dataDirectory(): { pgdata: string; ts: string } {
    const pgdata = tmp();
    const ts = tmp();
    file(pgdata, 'PG_VERSION', Buffer.from('15\n'));
    file(pgdata, 'postmaster.pid', Buffer.from('1\n'));
    file(pgdata, 'postgresql.conf', Buffer.from('# conf\n'));
    file(join(pgdata, 'global'), 'pg_control', new Uint8Array(8192));
    file(join(pgdata, 'global'), '1262', new Uint8Array(8192));
    file(join(pgdata, 'base', '5'), '16384', new Uint8Array(16_384));
    file(join(pgdata, 'base', '5'), '16384.1', new Uint8Array(8192));
    file(join(pgdata, 'base', '5'), '16390', new Uint8Array(8192));
    file(join(pgdata, 'base', '5'), '16390_init', new Uint8Array(0));
    file(join(pgdata, 'base', '5'), 't3_16400', new Uint8Array(8192));
    file(join(pgdata, 'base', '5'), 'pgsql_tmp123', new Uint8Array(1));
    file(join(pgdata, 'pg_wal'), '000000010000000000000001', new Uint8Array(16));
    file(join(pgdata, 'pg_wal', 'archive_status'), '000000010000000000000001.done', new Uint8Array(0));
    mkdirSync(join(pgdata, 'pg_tblspc'));
    file(join(ts, 'PG_15_202209061', '5'), '16500', new Uint8Array(8192));
    file(join(ts, 'PG_14_202107181', '5'), '16500', new Uint8Array(8192));
    symlinkSync(ts, join(pgdata, 'pg_tblspc', '16499'));
    return { pgdata, ts };
  }

  for (const kernels of ['fallback', 'native'] as const) {
    it(`${kernels} walker: depth-first, sorted, the server's exclusions, tablespaces after PGDATA, pg_control last`, async () => {
      const { pgdata, ts } = dataDirectory();
      const before = process.env.PGBACULA_KERNELS;
      process.env.PGBACULA_KERNELS = kernels;
      let plan;
      try {
        plan = await planCluster(inlineWalker(), pgdata, 15);
      } finally {
        if (before === undefined) delete process.env.PGBACULA_KERNELS;
        else process.env.PGBACULA_KERNELS = before;
      }
      const entries = Array.from(plan.entries);
      expect(entries.map((e) => `${e.type[0]} ${e.path}`)).toEqual([
        'f pgdata/PG_VERSION',
        'd pgdata/base',
        'd pgdata/base/5',
        'f pgdata/base/5/16384',
        'f pgdata/base/5/16384.1',
        'f pgdata/base/5/16390_init',
        'd pgdata/global',
        'f pgdata/global/1262',
        'd pgdata/pg_tblspc',
        's pgdata/pg_tblspc/16499',
        'd pgdata/pg_wal',
        'd pgdata/pg_wal/archive_status',
        'f pgdata/postgresql.conf',
        'd tablespaces/16499/PG_15_202209061',
        'd tablespaces/16499/PG_15_202209061/5',
        'f tablespaces/16499/PG_15_202209061/5/16500',
        'f pgdata/global/pg_control',
      ]);
      expect(plan.entries.length).toBe(entries.length);
      expect(plan.entries.at(entries.length)).toBeUndefined();
      const seg1 = entries.find((e) => e.path === 'pgdata/base/5/16384.1')!;
      expect(seg1).toMatchObject({ absPath: join(pgdata, 'base', '5', '16384.1'), size: 8192, verifyPages: true, firstBlock: 131072 });
      expect(entries.find((e) => e.path === 'pgdata/PG_VERSION')).toMatchObject({ verifyPages: false, firstBlock: 0 });
      expect(entries.find((e) => e.type === 'symlink')!.linkTarget).toBe(ts);
      expect(plan.tablespaces).toEqual([{ oid: '16499', location: ts }]);
      expect(plan.fileCount).toBe(entries.filter((e) => e.type === 'file').length);
      expect(plan.totalBytes).toBe(entries.reduce((s, e) => s + e.size, 0));
      expect([...plan.excluded.keys()]).toEqual(expect.arrayContaining(['temporary files', 'temporary relation', 'unlogged relation (recreated from its init fork)']));
    });
  }
});
