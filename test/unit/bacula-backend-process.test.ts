/**
 * `pgbacula backend` as the FD runs it — a real process on pipes (node --no-warnings
 * bin/pgbacula.js backend, from dist/: run npm run build first) — for what only a process can
 * show: it never writes to stderr, always exits 0, does not hang on malformed input or EOF, and
 * takes SIGUSR1 as a cancel instead of opening Node's inspector.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describePacket, PacketParser, serializePacket, type Packet } from '../../src/bacula/packet.js';
import { repoRoot } from '../harness/pg-binaries.js';

interface Run {
  send(...ps: Packet[]): void;
  raw(bytes: string): void;
  cmd(...texts: string[]): void;
  next(timeoutMs?: number): Promise<Packet>;
  close(): void;
  signal(sig: NodeJS.Signals): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; ms: number }>;
}

function backend(env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, ['--no-warnings', join(repoRoot(), 'bin', 'pgbacula.js'), 'backend'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...env },
  });
  const parser = new PacketParser();
  const got: Packet[] = [];
  let wake: (() => void) | undefined;
  let stderr = '';
  const t0 = Date.now();
  child.stdout.on('data', (b: Buffer) => {
    parser.parse(b, (p) => got.push(p));
    wake?.();
  });
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  child.stdin.on('error', () => undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; ms: number }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stderr, ms: Date.now() - t0 })),
  );
  return {
    send: (...ps) => ps.forEach((p) => child.stdin.write(serializePacket(p))),
    raw: (bytes) => child.stdin.write(Buffer.from(bytes, 'latin1')),
    cmd: (...texts) => texts.forEach((t) => child.stdin.write(serializePacket({ kind: 'command', text: `${t}\n` }))),
    async next(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const p = got.shift();
        if (p && p.kind !== 'message') return p;
        if (p) continue;
        if (Date.now() > deadline) throw new Error(`no packet within ${timeoutMs} ms (stderr: ${stderr})`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
    },
    close: () => child.stdin.end(),
    signal: (sig) => child.kill(sig),
    exited,
  };
}

async function prologue(b: Run, params: string[], type = 'B'): Promise<void> {
  b.cmd('Hello pgbacula 1');
  expect(describePacket(await b.next())).toBe('C"Hello Bacula"');
  b.cmd('Job', 'Name=t.1', 'JobID=7', `Type=${type}`, 'Level=F', 'Namespace=@pgbacula');
  b.send({ kind: 'eod' });
  expect(describePacket(await b.next())).toBe('F');
  b.cmd('Params', ...params);
  b.send({ kind: 'eod' });
}

describe('pgbacula backend (process)', () => {
  it('exits 0 at once on end of input, silently', async () => {
    const b = backend();
    b.close();
    const e = await b.exited;
    expect(e).toMatchObject({ code: 0, signal: null, stderr: '' });
  });

  it('answers a malformed packet with A, does not hang, exits 0 on EOF, nothing on stderr', async () => {
    const b = backend();
    b.cmd('Hello pgbacula 1');
    expect(describePacket(await b.next())).toBe('C"Hello Bacula"');
    b.raw('C00x004\nJob\n');
    expect(describePacket(await b.next())).toMatch(/^A"E_PROTOCOL: malformed packet from the FD at stream offset 25: the length is not six decimal digits/);
    b.raw('anything after it is ignored');
    b.close();
    const e = await b.exited;
    expect(e).toMatchObject({ code: 0, stderr: '' });
    expect(e.ms).toBeLessThan(10_000);
  });

  it('rejects an unknown parameter with A naming it and the accepted parameters', async () => {
    const b = backend();
    await prologue(b, ['mode=dump', 'colour=blue']);
    const a = describePacket(await b.next());
    expect(a).toMatch(/^A"E_PARAM_UNKNOWN: unknown parameter colour=blue\. Accepted parameters: mode, database, exclude_database, /);
    expect(a).not.toMatch(/target_database/); // restore options are not backup parameters
    b.close();
    expect(await b.exited).toMatchObject({ code: 0, stderr: '' });
  });

  it('rejects a bad value with the accepted values, and a password in the plugin string', async () => {
    const b = backend();
    await prologue(b, ['mode=dump', 'dump_format=zip']);
    expect(describePacket(await b.next())).toBe('A"E_PARAM_INVALID: invalid value "zip" for parameter dump_format. Accepted: custom, directory, tar, plain."');
    b.close();
    expect(await b.exited).toMatchObject({ code: 0, stderr: '' });
    const c = backend();
    await prologue(c, ['mode=dump', 'password=hunter2-secret']);
    const text = describePacket(await c.next());
    expect(text).toMatch(/^A"E_PARAM_INVALID: parameter password is not accepted in a plugin string/);
    expect(text).not.toContain('hunter2-secret');
    c.close();
    expect(await c.exited).toMatchObject({ code: 0, stderr: '' });
  });

  it.each(['pitr', 'pitr_block', 'cdp'])('mode %s fails the start command with A when the server cannot be reached', async (mode) => {
    const b = backend();
    await prologue(b, [`mode=${mode}`, 'host=127.0.0.1', 'port=1', 'connection_timeout=3']);
    expect(describePacket(await b.next())).toBe('F');
    b.cmd('BackupStart');
    expect(describePacket(await b.next())).toMatch(/^A"E_CONNECTION: cannot connect to 127\.0\.0\.1:1 as \S+: nothing listens there \(ECONNREFUSED\)/);
    b.close();
    expect(await b.exited).toMatchObject({ code: 0, stderr: '' });
  });

  it('fails the start command with A when the server cannot be reached', async () => {
    const b = backend();
    await prologue(b, ['mode=dump', 'host=127.0.0.1', 'port=1', 'connection_timeout=3']);
    expect(describePacket(await b.next())).toBe('F');
    b.cmd('BackupStart');
    expect(describePacket(await b.next())).toMatch(/^A"E_CONNECTION: cannot connect to 127\.0\.0\.1:1 as \S+: nothing listens there \(ECONNREFUSED\)/);
    b.close();
    expect(await b.exited).toMatchObject({ code: 0, stderr: '' });
  });

  it('takes SIGUSR1 as cancel: exits 0 quickly, no inspector, nothing on stderr', async () => {
    const b = backend();
    b.cmd('Hello pgbacula 1');
    expect(describePacket(await b.next())).toBe('C"Hello Bacula"');
    b.signal('SIGUSR1');
    const e = await b.exited;
    expect(e).toMatchObject({ code: 0, signal: null, stderr: '' });
  });

  it('exits 0 on SIGTERM too', async () => {
    const b = backend();
    b.cmd('Hello pgbacula 1');
    await b.next();
    b.signal('SIGTERM');
    expect(await b.exited).toMatchObject({ code: 0, signal: null, stderr: '' });
  });
});
