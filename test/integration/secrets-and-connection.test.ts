import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startCluster, type Cluster } from '../harness/cluster.js';
import { repoRoot } from '../harness/pg-binaries.js';
import { runCli } from '../harness/run-cli.js';

const execFileAsync = promisify(execFile);
const PASSWORD = 'Zq7-unique-Secret-9931';

/** Run the real launcher as a child process, as an operator would. */
async function runBin(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  try {
    const r = await execFileAsync(process.execPath, [join(repoRoot(), 'bin', 'pgbacula.js'), ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ...env },
      timeout: 60_000,
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

describe('a password in pgbacula.conf stays secret', () => {
  let cluster: Cluster;
  let dir: string;
  const conf = (password: string, mode = 0o640) => {
    const path = join(dir, `pgbacula-${Math.random().toString(36).slice(2)}.conf`);
    writeFileSync(path, `[connection]\nhost = 127.0.0.1\nport = ${cluster.port}\nuser = backup_op\npassword = ${password}\ndbname = postgres\n`);
    chmodSync(path, mode);
    return path;
  };

  beforeAll(async () => {
    cluster = await startCluster({ major: 16, name: 'secrets' });
    await cluster.sql(`CREATE ROLE backup_op LOGIN REPLICATION PASSWORD '${PASSWORD}'`);
    dir = mkdtempSync(join(tmpdir(), 'pgbacula-conf-'));
  });
  afterAll(async () => {
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('connects with it and never prints it (text and --json)', async () => {
    const path = conf(PASSWORD);
    for (const extra of [[], ['--json']]) {
      const r = await runBin(['check', '--config', path, ...extra]);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(extra.length ? /"major": 16/ : /PostgreSQL 16\./);
      expect(r.out).not.toContain(PASSWORD);
    }
  });

  it('a wrong password fails with exit 3 and is printed nowhere, not even in the server log', async () => {
    const wrong = 'Wrong-Pass-Value-4471';
    const r = await runBin(['check', '--config', conf(wrong)]);
    expect(r.code).toBe(3);
    expect(r.out).toContain('authentication failed');
    expect(r.out).toContain('The password from config was used');
    expect(r.out).not.toContain(wrong);
    const j = await runBin(['check', '--json', '--config', conf(wrong)]);
    expect(j.code).toBe(3);
    expect(JSON.parse(j.out).error.code).toBe('E_AUTHENTICATION');
    expect(j.out).not.toContain(wrong);
    expect(cluster.log()).not.toContain(wrong);
    expect(cluster.log()).not.toContain(PASSWORD);
  });

  it('a password on the command line is refused without echoing it', async () => {
    const r = await runBin(['check', `--password=${PASSWORD}`, '--host', '127.0.0.1', '--port', String(cluster.port)]);
    expect(r.code).toBe(2);
    expect(r.out).not.toContain(PASSWORD);
  });

  it.each([0o644, 0o660, 0o604, 0o666])('a config file with mode %s is refused with the chmod fix', async (mode) => {
    const path = conf(PASSWORD, mode);
    const r = await runBin(['check', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.out).toContain(`chmod 0640 ${path}`);
    expect(r.out).not.toContain(PASSWORD);
  });

  it('PGPASSWORD from the environment works and is not printed', async () => {
    const r = await runBin(['check', '--host', '127.0.0.1', '--port', String(cluster.port), '--user', 'backup_op'], { PGPASSWORD: PASSWORD });
    expect(r.code, r.out).toBe(0);
    expect(r.out).not.toContain(PASSWORD);
  });

  it('a pgpass file (mode 0600) is honoured, as libpq does', async () => {
    const pass = join(dir, 'pgpass');
    writeFileSync(pass, `127.0.0.1:${cluster.port}:*:backup_op:${PASSWORD}\n`, { mode: 0o600 });
    const r = await runBin(['check', '--host', '127.0.0.1', '--port', String(cluster.port), '--user', 'backup_op'], { PGPASSFILE: pass });
    expect(r.code, r.out).toBe(0);
    expect(r.out).not.toContain(PASSWORD);
  });

  it('libpq environment variables name the server when no flag does', async () => {
    const r = await runCli(['check', '--json'], { PGHOST: cluster.socketDir, PGPORT: String(cluster.port), PGUSER: 'postgres' });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).server.major).toBe(16);
  });
});

describe('an unreachable server fails within connection_timeout', () => {
  let silent: Server;
  let port: number;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    // Accepts TCP and never answers: the startup packet waits forever unless we time out.
    silent = createServer((s) => sockets.push(s));
    port = await freePort();
    await new Promise<void>((res) => silent.listen(port, '127.0.0.1', res));
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((res) => silent.close(res));
  });

  it('a host that accepts and stalls: timeout with a clear message', async () => {
    const t0 = Date.now();
    const r = await runCli(['check', '--host', '127.0.0.1', '--port', String(port), '--user', 'x', '--connection-timeout', '2']);
    const elapsed = Date.now() - t0;
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`connection to 127.0.0.1:${port} as x timed out after 2 s`);
    expect(r.stderr).toContain('hint:');
    expect(elapsed).toBeGreaterThanOrEqual(1900);
    expect(elapsed).toBeLessThan(6000);
  });

  it('a port where nothing listens: refused at once', async () => {
    const closed = await freePort();
    const r = await runCli(['check', '--host', '127.0.0.1', '--port', String(closed), '--user', 'x', '--connection-timeout', '5']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('nothing listens there');
  });

  it('an address that does not answer at all: bounded by the timeout', async () => {
    const t0 = Date.now();
    // TEST-NET-1 (RFC 5737): never routed, so the SYN goes unanswered or the route is refused.
    const r = await runCli(['check', '--host', '192.0.2.1', '--port', '5432', '--user', 'x', '--connection-timeout', '2']);
    expect(r.code).toBe(3);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(r.stderr).toMatch(/192\.0\.2\.1:5432/);
  });
});
