/**
 * Both page-checksum kernels against a real PostgreSQL 15 cluster with data checksums, and against
 * `pg_checksums --check` as the oracle (docs/postgresql-facts.md, "Data pages and checksums").
 *
 * The server is started by the small local helper below, directly with Debian's PostgreSQL 15; it is
 * meant to be replaced by the shared harness (test/harness/cluster.ts) later.
 */

import { execFileSync, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import {
  appendFileSync,
  chownSync,
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { absoluteBlockNumber, DEFAULT_BLOCK_SIZE, readPageHeader } from '../../src/format/page.js';
import { createJsPageVerifier, type PageChecksumFailure, type PageVerifier } from '../../src/format/page-checksum.js';
import { compilePageChecksumModule, createWasmPageVerifier } from '../../src/format/page-checksum-wasm.js';
import { freePort } from '../../src/os/free-port.js';

const PG_BIN = '/usr/lib/postgresql/15/bin';
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

// --- Local cluster helper (to be swapped for test/harness/cluster.ts) ------------------------

interface LocalCluster {
  dataDir: string;
  socketDir: string;
  port: number;
  /** Runs a PostgreSQL 15 program as the cluster's OS user; throws with its output on failure. */
  run(program: string, args: string[]): string;
  /** Same, returning status and both streams instead of throwing. */
  runStatus(program: string, args: string[]): { status: number | null; stdout: string; stderr: string };
  psql(sql: string): string;
  stop(): void;
  destroy(): void;
}


/** PostgreSQL refuses to run as root: when we are root, run its programs as `postgres`. */
function postgresIdentity(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

async function startPg15Cluster(): Promise<LocalCluster> {
  const identity = postgresIdentity();
  const root = mkdtempSync(join(tmpdir(), 'pgbacula-pgchecksum-'));
  const dataDir = join(root, 'data');
  const socketDir = join(root, 'socket');
  mkdirSync(socketDir);
  if (identity) {
    chownSync(root, identity.uid, identity.gid);
    chownSync(socketDir, identity.uid, identity.gid);
  }
  const port = await freePort();
  let running = false;

  const spawnOptions: SpawnSyncOptions = {
    encoding: 'utf8',
    cwd: root,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', PGHOST: socketDir, PGPORT: String(port), PGUSER: 'postgres' },
    ...(identity ?? {}),
  };
  const runStatus = (program: string, args: string[]) => {
    const result = spawnSync(join(PG_BIN, program), args, spawnOptions);
    if (result.error) throw result.error;
    return { status: result.status, stdout: String(result.stdout), stderr: String(result.stderr) };
  };
  const run = (program: string, args: string[]) => {
    const result = runStatus(program, args);
    if (result.status !== 0) {
      throw new Error(`${program} ${args.join(' ')} exited ${result.status}\n${result.stdout}\n${result.stderr}`);
    }
    return result.stdout;
  };

  const cluster: LocalCluster = {
    dataDir,
    socketDir,
    port,
    run,
    runStatus,
    psql: (sql) => run('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres', '-c', sql]).trim(),
    stop() {
      if (!running) return;
      run('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', 'stop']);
      running = false;
    },
    destroy() {
      try {
        if (running) runStatus('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
      } finally {
        running = false;
        rmSync(root, { recursive: true, force: true });
      }
    },
  };

  try {
    run('initdb', ['-k', '-N', '-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C']);
    appendFileSync(
      join(dataDir, 'postgresql.conf'),
      `\nport = ${port}\nunix_socket_directories = '${socketDir}'\nlisten_addresses = ''\nfsync = off\n`,
    );
    run('pg_ctl', ['-D', dataDir, '-l', join(root, 'server.log'), '-w', '-t', '60', 'start']);
    running = true;
    return cluster;
  } catch (error) {
    cluster.destroy();
    throw error;
  }
}

// --- Walking relation files the way pg_checksums does (docs/postgresql-facts.md) --------------------

/** `<relfilenode>[_<fork>][.<segno>]`, or a temporary relation `t<backend>_<relfilenode>…`. */
const RELATION_FILE = /^(?:t\d+_)?\d+(?:_(?:fsm|vm|init))?(?:\.(\d+))?$/;

function relationFiles(dataDir: string): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('pgsql_tmp')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() && RELATION_FILE.test(entry.name)) files.push(path);
    }
  };
  walk(join(dataDir, 'global'));
  walk(join(dataDir, 'base'));
  return files.sort();
}

interface FileFailure extends PageChecksumFailure {
  file: string;
  /** Block within the segment file, as pg_checksums reports it. */
  blockInFile: number;
}

interface ScanTotals {
  files: number;
  checkedPages: number;
  newPages: number;
  /** Pages with pd_upper == 0 (the server's PageIsNew), counted independently of the kernel. */
  serverNewPages: number;
  failures: FileFailure[];
}

/** Reads each file straight into the verifier's input area, range by range, and verifies it. */
function verifyFiles(verifier: PageVerifier, dataDir: string, files: string[]): ScanTotals {
  const totals: ScanTotals = { files: 0, checkedPages: 0, newPages: 0, serverNewPages: 0, failures: [] };
  const blockSize = verifier.blockSize;
  for (const path of files) {
    const segno = Number(RELATION_FILE.exec(path.slice(path.lastIndexOf('/') + 1))?.[1] ?? 0);
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      expect(size % blockSize, `${path} is a whole number of pages`).toBe(0);
      totals.files++;
      for (let position = 0; position < size; position += verifier.maxBytes) {
        const length = Math.min(verifier.maxBytes, size - position);
        const input = verifier.input;
        let filled = 0;
        while (filled < length) {
          const n = readSync(fd, input, filled, length - filled, position + filled);
          if (n === 0) throw new Error(`short read in ${path}`);
          filled += n;
        }
        const firstBlockInFile = position / blockSize;
        const result = verifier.verify(length, absoluteBlockNumber(segno, firstBlockInFile));
        totals.checkedPages += result.checkedPages;
        totals.newPages += result.newPages;
        for (let offset = 0; offset < length; offset += blockSize) {
          if (readPageHeader(input, offset).pdUpper === 0) totals.serverNewPages++;
        }
        for (const failure of result.failures) {
          totals.failures.push({
            ...failure,
            file: relative(dataDir, path),
            blockInFile: firstBlockInFile + failure.pageIndex,
          });
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  return totals;
}

interface PgChecksumsReport {
  status: number | null;
  filesScanned: number;
  blocksScanned: number;
  badChecksums: number;
  failures: Array<{ file: string; block: number; calculated: number; stored: number }>;
}

function pgChecksumsCheck(cluster: LocalCluster): PgChecksumsReport {
  const { status, stdout, stderr } = cluster.runStatus('pg_checksums', ['--check', '-D', cluster.dataDir]);
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+)$`, 'm').exec(stdout);
    if (!match?.[1]) throw new Error(`pg_checksums printed no "${name}":\n${stdout}\n${stderr}`);
    return Number(match[1]);
  };
  const failures = [
    ...stderr.matchAll(
      /checksum verification failed in file "([^"]+)", block (\d+): calculated checksum ([0-9A-F]+) but block contains ([0-9A-F]+)/g,
    ),
  ].map((m) => ({
    file: relative(cluster.dataDir, m[1] ?? ''),
    block: Number(m[2]),
    calculated: parseInt(m[3] ?? '', 16),
    stored: parseInt(m[4] ?? '', 16),
  }));
  return {
    status,
    filesScanned: field('Files scanned'),
    blocksScanned: field('Blocks scanned'),
    badChecksums: field('Bad checksums'),
    failures,
  };
}

// --- The test ---------------------------------------------------------------------------------

describe.skipIf(!existsSync(join(PG_BIN, 'initdb')))('page checksums of a real PostgreSQL 15 cluster', () => {
  let cluster: LocalCluster | undefined;
  let wasmDir: string | undefined;
  let verifiers: PageVerifier[] = [];
  let accountsFile = '';
  let notesFile = '';

  beforeAll(async () => {
    wasmDir = mkdtempSync(join(tmpdir(), 'pgbacula-wasm-'));
    execFileSync(process.execPath, [join(repoRoot, 'scripts/build-wasm.mjs'), '--out-dir', wasmDir], { stdio: 'pipe' });
    const module = compilePageChecksumModule(readFileSync(join(wasmDir, 'page-checksum.wasm')));
    const maxBytes = 8 * 1024 * 1024;
    verifiers = [createJsPageVerifier({ maxBytes }), createWasmPageVerifier({ maxBytes, module })];

    cluster = await startPg15Cluster();
    expect(cluster.psql('SHOW data_checksums')).toBe('on');
    cluster.run('pgbench', ['-i', '-s', '5', '-q', 'postgres']);
    cluster.psql('CREATE TABLE notes AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 20000) g');
    cluster.psql('CREATE INDEX notes_body_idx ON notes (body)');
    cluster.psql('VACUUM ANALYZE notes');
    accountsFile = cluster.psql(`SELECT pg_relation_filepath('pgbench_accounts')`);
    notesFile = cluster.psql(`SELECT pg_relation_filepath('notes')`);
    cluster.psql('CHECKPOINT');
    cluster.stop();
  });

  afterAll(() => {
    try {
      cluster?.destroy();
    } finally {
      if (wasmDir) rmSync(wasmDir, { recursive: true, force: true });
    }
  });

  it('every page of every relation file passes with both kernels, as pg_checksums says', () => {
    const c = cluster!;
    const files = relationFiles(c.dataDir);
    const oracle = pgChecksumsCheck(c);
    expect(oracle.status).toBe(0);
    expect(oracle.badChecksums).toBe(0);

    for (const verifier of verifiers) {
      const totals = verifyFiles(verifier, c.dataDir, files);
      expect(totals.failures, `${verifier.kernel}: failures`).toEqual([]);
      expect(totals.files).toBe(oracle.filesScanned);
      // pg_checksums 15 counts every block it reads in "Blocks scanned", new pages included, then
      // skips pd_upper == 0 pages. We skip only all-zero pages. In a cleanly shut down cluster the
      // two sets coincide, so checked + new must be exactly "Blocks scanned".
      expect(totals.checkedPages + totals.newPages, `${verifier.kernel}: pages`).toBe(oracle.blocksScanned);
      expect(totals.newPages).toBe(totals.serverNewPages);
      // pgbench_accounts alone is about 8,200 pages at scale 5: the walk really covered the tables.
      expect(totals.checkedPages).toBeGreaterThan(10_000);
    }
  });

  it('one flipped bit in one page of a table is reported, by both kernels and by pg_checksums', () => {
    const c = cluster!;
    const path = join(c.dataDir, accountsFile);
    const victimBlock = 3;
    const offset = victimBlock * DEFAULT_BLOCK_SIZE + 4321;
    const fd = openSync(path, 'r+');
    try {
      const byte = Buffer.alloc(1);
      readSync(fd, byte, 0, 1, offset);
      byte[0] = byte[0]! ^ 0x04;
      writeSync(fd, byte, 0, 1, offset);
    } finally {
      closeSync(fd);
    }

    const oracle = pgChecksumsCheck(c);
    expect(oracle.status).toBe(1);
    expect(oracle.badChecksums).toBe(1);
    expect(oracle.failures).toHaveLength(1);
    const expected = oracle.failures[0]!;
    expect(expected).toMatchObject({ file: accountsFile, block: victimBlock });

    for (const verifier of verifiers) {
      const totals = verifyFiles(verifier, c.dataDir, relationFiles(c.dataDir));
      expect(totals.failures, verifier.kernel).toEqual([
        {
          file: accountsFile,
          blockInFile: victimBlock,
          pageIndex: victimBlock,
          blkno: victimBlock,
          computed: expected.calculated,
          stored: expected.stored,
        },
      ]);
    }
  });

  it('an all-zero page is new for everyone; a non-zero page with pd_upper = 0 is reported only by us', () => {
    const c = cluster!;
    // A relation extended by a writer that crashed before logging anything ends in a zeroed page.
    appendFileSync(join(c.dataDir, notesFile), new Uint8Array(DEFAULT_BLOCK_SIZE));
    // A damaged page whose pd_upper became 0: the server and pg_checksums take it for a new page.
    const victimBlock = 5;
    const accountsPath = join(c.dataDir, accountsFile);
    const fd = openSync(accountsPath, 'r+');
    try {
      writeSync(fd, new Uint8Array(2), 0, 2, victimBlock * DEFAULT_BLOCK_SIZE + 14);
    } finally {
      closeSync(fd);
    }

    const before = pgChecksumsCheck(c);
    // pg_checksums: one more block scanned, still only the flipped bit of the previous test.
    expect(before.badChecksums).toBe(1);
    expect(before.failures.map((f) => f.block)).toEqual([3]);

    for (const verifier of verifiers) {
      const totals = verifyFiles(verifier, c.dataDir, relationFiles(c.dataDir));
      expect(totals.checkedPages + totals.newPages).toBe(before.blocksScanned);
      expect(totals.newPages, verifier.kernel).toBe(1);
      expect(totals.serverNewPages).toBe(2);
      expect(totals.failures.map((f) => [f.file, f.blockInFile])).toEqual([
        [accountsFile, 3],
        [accountsFile, victimBlock],
      ]);
    }
  });
});
