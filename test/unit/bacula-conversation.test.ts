/**
 * The conversation state machine against a scripted FD (the sequences of docs/bacula-protocol.md, as a
 * 15.0.3 FD sends them), over real streams, with the real reader/writer/sink/restore source and
 * small item producers and restore targets written for the test.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { PacketReader, PacketWriter } from '../../src/bacula/channel.js';
import { Conversation, type ItemProducer, type JobFactory, type PluginJob } from '../../src/bacula/conversation.js';
import { describePacket, PacketParser, serializePacket, type Packet } from '../../src/bacula/packet.js';
import { namespacePathOf, parseRestoreStat } from '../../src/bacula/restore-source.js';
import { PgbaculaError } from '../../src/errors.js';
import type { RestoreEntry, RestoreTarget } from '../../src/item/restore-target.js';

/** The FD side of the pipes: send packets, read the backend's packets one by one. */
class ScriptedFd {
  readonly toBackend = new PassThrough();
  readonly fromBackend = new PassThrough();
  private readonly parser = new PacketParser();
  private readonly received: Packet[] = [];
  private waiters: (() => void)[] = [];
  /** Every packet the backend sent, in order. */
  readonly transcript: Packet[] = [];
  readonly rawOut: Buffer[] = [];

  constructor() {
    this.fromBackend.on('data', (chunk: Buffer) => {
      this.rawOut.push(chunk);
      this.parser.parse(chunk, (p) => {
        this.received.push(p);
        this.transcript.push(p);
      });
      const ws = this.waiters;
      this.waiters = [];
      for (const w of ws) w();
    });
  }

  send(...ps: Packet[]): void {
    for (const p of ps) this.toBackend.write(serializePacket(p));
  }

  cmd(...texts: string[]): void {
    this.send(...texts.map((t): Packet => ({ kind: 'command', text: `${t}\n` })));
  }

  eod(): void {
    this.send({ kind: 'eod' });
  }

  close(): void {
    this.toBackend.end();
  }

  /** The next non-message packet from the backend (messages are kept in the transcript). */
  async next(timeoutMs = 2000): Promise<Packet> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.received.shift();
      if (p && p.kind !== 'message') return p;
      if (p) continue;
      if (Date.now() > deadline) throw new Error(`no packet from the backend within ${timeoutMs} ms; transcript: ${this.transcript.map(describePacket).join(' ')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async expect(want: string): Promise<void> {
    const p = await this.next();
    expect(describePacket(p)).toBe(want);
  }

  messages(): string[] {
    return this.transcript.filter((p): p is Extract<Packet, { kind: 'message' }> => p.kind === 'message').map((p) => `${p.level}:${p.text}`);
  }

  /** Prologue up to the start acknowledgement. */
  async prologue(type: 'B' | 'E' | 'R', params: string[], extraJob: string[] = []): Promise<void> {
    this.cmd('Hello pgbacula 1');
    await this.expect('C"Hello Bacula"');
    this.cmd('Job', 'Name=BackupPg.2025-03-25_10.00.00_05', 'JobID=42', `Type=${type}`, ...extraJob, 'Namespace=@pgbacula', 'WorkingDir=/var/lib/bacula', 'SysconfigPath=/etc/bacula/', 'ExePath=/usr/sbin/');
    this.eod();
    await this.expect('F');
    this.cmd('Params', ...params);
    this.eod();
  }
}

interface Harness {
  fd: ScriptedFd;
  done: Promise<string>;
  disposed: () => number;
}

function start(job: Partial<PluginJob> & { configure?: JobFactory['configure'] } = {}): Harness {
  const fd = new ScriptedFd();
  let disposed = 0;
  const pluginJob: PluginJob = {
    prepareBackup: job.prepareBackup ?? (async () => async () => undefined),
    prepareListing: job.prepareListing ?? (async () => async () => undefined),
    query: job.query ?? (async () => []),
    prepareRestore: job.prepareRestore ?? (async () => { throw new Error('no restore'); }),
    dispose: async () => {
      disposed++;
    },
  };
  const factory: JobFactory = { configure: job.configure ?? (() => pluginJob) };
  const conv = new Conversation(new PacketReader(fd.toBackend), new PacketWriter(fd.fromBackend), factory);
  return { fd, done: conv.run(), disposed: () => disposed };
}

/** The two files of the worked example in docs/bacula-protocol.md. */
const twoFiles: ItemProducer = async (sink) => {
  await sink.begin({ path: 'demo/a.txt', type: 'file', mode: 0o640, mtimeMs: 1742896800_000, size: 12, encoding: 'raw' });
  await sink.write(Buffer.from('hello world\n'));
  await sink.end({ hash: '', rawSize: 12, storedSize: 12 });
  await sink.begin({ path: 'demo/b.bin', type: 'file', mode: 0o640, mtimeMs: 1742896800_000, size: 4, encoding: 'raw' });
  await sink.write(Buffer.from([0, 1]));
  await sink.write(Buffer.from([2, 0xff]));
  await sink.end({ hash: '', rawSize: 4, storedSize: 4 });
};

describe('conversation: backup (docs/bacula-protocol.md, worked example)', () => {
  it('produces the byte sequence of the worked example and exits on T', async () => {
    const h = start({ prepareBackup: async () => twoFiles });
    await h.fd.prologue('B', ['mode=dump', 'database=app'], ['Level=F']);
    await h.fd.expect('F');
    h.fd.cmd('BackupStart');
    await h.fd.expect('F');
    const want = [
      'C"FNAME:/@pgbacula/demo/a.txt"', 'C"STAT:F 12 0 0 100640 1"', 'C"TSTAMP:1742896800 1742896800 1742896800"', 'F',
      'C"DATA"', 'D(12 bytes)', 'F',
      'C"FNAME:/@pgbacula/demo/b.bin"', 'C"STAT:F 4 0 0 100640 1"', 'C"TSTAMP:1742896800 1742896800 1742896800"', 'F',
      // the sink joins small writes into one record (64 KiB packets are the efficient size: docs/bacula-protocol.md)
      'C"DATA"', 'D(4 bytes)', 'F',
      'F',
    ];
    for (const w of want) await h.fd.expect(w);
    h.fd.cmd('END');
    await h.fd.expect('F');
    h.fd.send({ kind: 'terminate' });
    expect(await h.done).toBe('terminated');
    expect(h.disposed()).toBe(1);
    // Byte-exact framing of a few packets (headers carry byte lengths).
    const raw = Buffer.concat(h.fd.rawOut).toString('latin1');
    expect(raw).toContain('C000013\nHello Bacula\n');
    expect(raw).toContain('C000028\nFNAME:/@pgbacula/demo/a.txt\nC000023\nSTAT:F 12 0 0 100640 1\nC000040\nTSTAMP:1742896800 1742896800 1742896800\nF000000\nC000005\nDATA\nD000012\nhello world\nF000000\n');
    expect(raw).toContain('D000004\n\x00\x01\x02\xff');
  });

  it('splits large data into 64 KiB records and copies the producer\'s buffers', async () => {
    const big = Buffer.alloc(200_000, 7);
    const h = start({
      prepareBackup: async () => async (sink) => {
        await sink.begin({ path: 'c/x', type: 'file', mode: 0o600, mtimeMs: 0, size: -1, encoding: 'raw' });
        await sink.write(big);
        big.fill(9); // a producer recycling its buffer must not change what was sent
        await sink.end({ hash: '', rawSize: big.length, storedSize: big.length });
      },
    });
    await h.fd.prologue('B', ['mode=dump']);
    await h.fd.expect('F');
    h.fd.cmd('BackupStart');
    await h.fd.expect('F');
    for (const w of ['C"FNAME:/@pgbacula/c/x"', 'C"STAT:F -1 0 0 100600 1"', 'C"TSTAMP:0 0 0"', 'F', 'C"DATA"']) await h.fd.expect(w);
    const sizes: number[] = [];
    for (;;) {
      const p = await h.fd.next();
      if (p.kind !== 'data') break;
      expect(p.data.every((b) => b === 7)).toBe(true);
      sizes.push(p.data.length);
    }
    expect(sizes).toEqual([65536, 65536, 65536, 200_000 - 3 * 65536]);
    await h.fd.expect('F'); // end of stream
    h.fd.close();
    expect(await h.done).toBe('eof');
  });

  it('sends directories with a trailing slash and no data phase, symlinks with LSTAT', async () => {
    const h = start({
      prepareBackup: async () => async (sink) => {
        await sink.begin({ path: 'c/d', type: 'dir', mode: 0o755, mtimeMs: 5000, size: 0, encoding: 'raw' });
        await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
        await sink.begin({ path: 'c/d/l', type: 'symlink', mode: 0o777, mtimeMs: 5000, size: 0, encoding: 'raw', linkTarget: '../a' });
        await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
      },
    });
    await h.fd.prologue('B', ['mode=dump']);
    await h.fd.expect('F');
    h.fd.cmd('BackupStart');
    await h.fd.expect('F');
    for (const w of ['C"FNAME:/@pgbacula/c/d/"', 'C"STAT:D 0 0 0 040755 1"', 'C"TSTAMP:5 5 5"', 'F', 'F']) await h.fd.expect(w);
    for (const w of ['C"FNAME:/@pgbacula/c/d/l"', 'C"STAT:S 0 0 0 120777 1"', 'C"TSTAMP:5 5 5"', 'C"LSTAT:../a"', 'F', 'F', 'F']) await h.fd.expect(w);
    h.fd.close();
    expect(await h.done).toBe('eof');
  });

  it('estimate: headers only, no data phase', async () => {
    const h = start({ prepareBackup: async (kind) => { expect(kind).toBe('estimate'); return twoFiles; } });
    await h.fd.prologue('E', ['mode=dump'], ['Level=F']);
    await h.fd.expect('F');
    h.fd.cmd('EstimateStart');
    await h.fd.expect('F');
    const want = [
      'C"FNAME:/@pgbacula/demo/a.txt"', 'C"STAT:F 12 0 0 100640 1"', 'C"TSTAMP:1742896800 1742896800 1742896800"', 'F',
      'C"FNAME:/@pgbacula/demo/b.bin"', 'C"STAT:F 4 0 0 100640 1"', 'C"TSTAMP:1742896800 1742896800 1742896800"', 'F',
      'F',
    ];
    for (const w of want) await h.fd.expect(w);
    h.fd.cmd('END');
    await h.fd.expect('F');
    h.fd.send({ kind: 'terminate' });
    expect(await h.done).toBe('terminated');
    expect(h.fd.transcript.some((p) => p.kind === 'data')).toBe(false);
  });

  it('a failing producer aborts with one A (even mid data) and says nothing more', async () => {
    const h = start({
      prepareBackup: async () => async (sink) => {
        await sink.begin({ path: 'c/x.dump', type: 'file', mode: 0o600, mtimeMs: 0, size: -1, encoding: 'raw' });
        await sink.write(Buffer.alloc(70_000, 1));
        throw new PgbaculaError('CHILD_PROCESS', 'pg_dump of database x failed: pg_dump was killed by signal SIGKILL');
      },
    });
    await h.fd.prologue('B', ['mode=dump']);
    await h.fd.expect('F');
    h.fd.cmd('BackupStart');
    await h.fd.expect('F');
    for (const w of ['C"FNAME:/@pgbacula/c/x.dump"', 'C"STAT:F -1 0 0 100600 1"', 'C"TSTAMP:0 0 0"', 'F', 'C"DATA"', 'D(65536 bytes)']) await h.fd.expect(w);
    await h.fd.expect('A"E_CHILD_PROCESS: pg_dump of database x failed: pg_dump was killed by signal SIGKILL"');
    // The backend waits for the FD to close, and sends nothing after the A.
    await new Promise((r) => setTimeout(r, 100));
    const after = h.fd.transcript.length;
    h.fd.close();
    expect(await h.done).toBe('aborted');
    expect(h.fd.transcript.length).toBe(after);
    expect(h.disposed()).toBeGreaterThanOrEqual(1);
  });

  it('stops the producer when the FD closes the pipe mid-backup', async () => {
    let sawAbort = false;
    const h = start({
      configure: (_p, ctx) => {
        ctx.signal.addEventListener('abort', () => (sawAbort = true));
        return {
          prepareBackup: async () => async () => {
            await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
          },
          prepareListing: async () => async () => undefined,
          query: async () => [],
          prepareRestore: async () => { throw new Error('x'); },
          dispose: async () => undefined,
        };
      },
    });
    await h.fd.prologue('B', ['mode=dump']);
    await h.fd.expect('F');
    h.fd.cmd('BackupStart');
    await h.fd.expect('F');
    h.fd.close();
    expect(await h.done).toBe('eof');
    expect(sawAbort).toBe(true);
  });
});

describe('conversation: prologue errors', () => {
  it('answers a wrong handshake with A (never E), then waits for EOF', async () => {
    const h = start();
    h.fd.cmd('Hello kubernetes 3');
    const p = await h.fd.next();
    expect(p.kind).toBe('abort');
    expect(describePacket(p)).toMatch(/unexpected handshake "Hello kubernetes 3"/);
    h.fd.close();
    expect(await h.done).toBe('aborted');
    expect(h.fd.transcript.some((x) => x.kind === 'error')).toBe(false);
  });

  it('rejects parameters with one A carrying the reason, and no F', async () => {
    const h = start({
      configure: () => {
        throw new PgbaculaError('PARAM_UNKNOWN', 'unknown parameter colour=blue', { hint: 'Accepted parameters: mode, database.' });
      },
    });
    await h.fd.prologue('B', ['mode=dump', 'colour=blue']);
    await h.fd.expect('A"E_PARAM_UNKNOWN: unknown parameter colour=blue. Accepted parameters: mode, database."');
    h.fd.close();
    expect(await h.done).toBe('aborted');
    expect(h.fd.transcript.filter((p) => p.kind === 'eod')).toHaveLength(1); // only the Job block's
  });

  it('rejects at the start command when the job cannot run (connection, versions)', async () => {
    const h = start({ prepareBackup: async () => { throw new PgbaculaError('AUTHENTICATION', 'authentication failed for 127.0.0.1:5432 as postgres'); } });
    await h.fd.prologue('B', ['mode=dump']);
    await h.fd.expect('F');
    h.fd.cmd('BackupStart');
    await h.fd.expect('A"E_AUTHENTICATION: authentication failed for 127.0.0.1:5432 as postgres"');
    h.fd.close();
    expect(await h.done).toBe('aborted');
  });

  it('a malformed packet aborts with a clear A and the backend does not hang', async () => {
    const h = start();
    h.fd.cmd('Hello pgbacula 1');
    await h.fd.expect('C"Hello Bacula"');
    h.fd.toBackend.write(Buffer.from('Z000003\nabc', 'latin1'));
    const p = await h.fd.next();
    expect(describePacket(p)).toMatch(/^A"E_PROTOCOL: malformed packet from the FD at stream offset 25: unknown status letter "Z"/);
    // Garbage after it is ignored; EOF ends the conversation.
    h.fd.toBackend.write(Buffer.from('more garbage', 'latin1'));
    h.fd.close();
    expect(await h.done).toBe('aborted');
  });

  it('ends quietly on EOF at any point', async () => {
    for (const cut of ['hello', 'job', 'params', 'start']) {
      const h = start();
      h.fd.cmd('Hello pgbacula 1');
      if (cut !== 'hello') {
        await h.fd.expect('C"Hello Bacula"');
        h.fd.cmd('Job', 'JobID=1', 'Type=B');
        if (cut !== 'job') {
          h.fd.eod();
          await h.fd.expect('F');
          h.fd.cmd('Params', 'mode=dump');
          if (cut !== 'params') {
            h.fd.eod();
            await h.fd.expect('F');
          }
        }
      }
      h.fd.close();
      expect(await h.done, cut).toBe('eof');
      expect(h.fd.transcript.some((p) => p.kind === 'abort' || p.kind === 'error'), cut).toBe(false);
    }
  });
});

describe('conversation: query and listing', () => {
  it('.query answers pairs and text, then F; no END follows', async () => {
    const h = start({ query: async (q) => (q === 'databases' ? [{ pairs: 'database=a,size=1' }, { text: '{"x":1}' }] : []) });
    await h.fd.prologue('E', ['mode=dump', 'query=databases']);
    await h.fd.expect('F');
    h.fd.cmd('QueryStart');
    for (const w of ['F', 'C"database=a,size=1"', 'D(7 bytes)', 'F']) await h.fd.expect(w);
    h.fd.send({ kind: 'terminate' });
    expect(await h.done).toBe('terminated');
  });

  it('.ls lists entries without a data phase', async () => {
    const h = start({
      prepareListing: async (path) => async (sink) => {
        expect(path).toBe('/');
        await sink.begin({ path: 'c1', type: 'dir', mode: 0o755, mtimeMs: 0, size: 0, encoding: 'raw' });
        await sink.end({ hash: '', rawSize: 0, storedSize: 0 });
      },
    });
    await h.fd.prologue('E', ['listing=/']);
    await h.fd.expect('F');
    h.fd.cmd('ListingStart');
    for (const w of ['F', 'C"FNAME:/@pgbacula/c1/"', 'C"STAT:D 0 0 0 040755 1"', 'C"TSTAMP:0 0 0"', 'F', 'F']) await h.fd.expect(w);
    h.fd.cmd('END');
    await h.fd.expect('F');
    h.fd.send({ kind: 'terminate' });
    expect(await h.done).toBe('terminated');
  });
});

/** A restore target recording what it was given. */
function recordingTarget(opts: { failBegin?: (e: RestoreEntry) => boolean; failEnd?: string; failSettle?: boolean; skip?: (e: RestoreEntry) => boolean } = {}) {
  const events: string[] = [];
  const files = new Map<string, Buffer[]>();
  let current: RestoreEntry | undefined;
  const target: RestoreTarget = {
    async begin(e) {
      events.push(`begin ${e.type} ${e.namespacePath ?? '?'} size=${e.size}`);
      if (opts.failBegin?.(e)) throw new PgbaculaError('RESTORE_PRECHECK', `database of ${e.fname} already exists`);
      if (opts.skip?.(e)) return 'skip';
      current = e;
      files.set(e.fname, []);
      return 'restore';
    },
    async write(chunk) {
      files.get(current!.fname)!.push(Buffer.from(chunk));
    },
    async end(t) {
      events.push(`end ${current?.namespacePath} ${t.rawSize}`);
      if (opts.failEnd && current?.fname.endsWith(opts.failEnd)) throw new PgbaculaError('CHILD_PROCESS', 'pg_restore exited with code 1');
    },
    async settle(next) {
      events.push(`settle ${next?.namespacePath ?? 'finish'}`);
      if (opts.failSettle && !next) throw new PgbaculaError('CHILD_PROCESS', 'pg_restore -j failed');
    },
    async finish() {
      events.push('finish');
    },
  };
  return { target, events, files };
}

async function restoreEntry(fd: ScriptedFd, name: string, stat: string, data?: Buffer[]): Promise<string> {
  fd.cmd(`FNAME:${name}`, stat, 'TSTAMP:1742896800 1742896800 1742896800');
  fd.eod();
  const answer = describePacket(await fd.next());
  if (answer === 'C"OK"' && data) {
    fd.cmd('DATA');
    fd.send(...data.map((d): Packet => ({ kind: 'data', data: d })));
    fd.eod();
    return `${answer} ${describePacket(await fd.next())}`;
  }
  return answer;
}

describe('conversation: restore', () => {
  it('turns the FD records back into items, answers OK, FINISH/END/T', async () => {
    const r = recordingTarget();
    const h = start({ prepareRestore: async () => r.target });
    await h.fd.prologue('R', ['mode=dump', 'database=app'], ['Where=/srv/restore', 'Replace=a']);
    await h.fd.expect('F');
    h.fd.cmd('RestoreStart');
    await h.fd.expect('F');
    // a restore object replay first (always answered OK)
    h.fd.cmd('RESTOREOBJ:manifest.json', 'RESTOREOBJ_LEN:11');
    h.fd.send({ kind: 'data', data: Buffer.from('{"ro":true}') });
    h.fd.eod();
    await h.fd.expect('C"OK"');
    expect(await restoreEntry(h.fd, '/srv/restore/@pgbacula/demo/a.txt', 'STAT:F 12 0 0 100640 1 0', [Buffer.from('hello world\n')])).toBe('C"OK" C"OK"');
    expect(await restoreEntry(h.fd, '/srv/restore/@pgbacula/demo/dir/', 'STAT:D 0 0 0 040755 1 0')).toBe('C"OK"');
    h.fd.cmd('XATTR');
    h.fd.send({ kind: 'data', data: Buffer.from('user.k=v\n') });
    h.fd.eod();
    await h.fd.expect('C"OK"');
    expect(await restoreEntry(h.fd, '/srv/restore/@pgbacula/demo/b.bin', 'STAT:F -1 0 0 100640 1 0', [Buffer.from([0, 1]), Buffer.from([2, 0xff])])).toBe('C"OK" C"OK"');
    h.fd.cmd('FINISH');
    await h.fd.expect('F');
    h.fd.cmd('END');
    await h.fd.expect('F');
    h.fd.send({ kind: 'terminate' });
    expect(await h.done).toBe('terminated');
    expect(r.events).toEqual([
      'settle demo/a.txt',
      'begin file demo/a.txt size=12',
      'end demo/a.txt 12',
      'settle demo/dir',
      'begin dir demo/dir size=0',
      'end demo/dir 0', // a new FNAME ends an entry without data
      'settle demo/b.bin',
      'begin file demo/b.bin size=-1',
      'end demo/b.bin 4',
      'settle finish',
      'finish',
    ]);
    expect(Buffer.concat(r.files.get('/srv/restore/@pgbacula/demo/b.bin')!)).toEqual(Buffer.from([0, 1, 2, 0xff]));
  });

  it('answers E for an entry the target refuses, SKIP for one it skips, and carries on', async () => {
    const r = recordingTarget({ failBegin: (e) => e.fname.includes('beta'), skip: (e) => e.fname.includes('gamma') });
    const h = start({ prepareRestore: async () => r.target });
    await h.fd.prologue('R', ['mode=dump'], ['Where=', 'Replace=a']);
    await h.fd.expect('F');
    h.fd.cmd('RestoreStart');
    await h.fd.expect('F');
    expect(await restoreEntry(h.fd, '/@pgbacula/c/dump/1/beta.dump', 'STAT:F -1 0 0 100600 1 0')).toBe('E"database of /@pgbacula/c/dump/1/beta.dump already exists"');
    expect(await restoreEntry(h.fd, '/@pgbacula/c/dump/1/gamma.dump', 'STAT:F -1 0 0 100600 1 0')).toBe('C"SKIP"');
    expect(await restoreEntry(h.fd, '/@pgbacula/c/dump/1/alpha.dump', 'STAT:F -1 0 0 100600 1 0', [Buffer.from('x')])).toBe('C"OK" C"OK"');
    h.fd.cmd('FINISH');
    await h.fd.expect('F');
    h.fd.close(); // a restore with errors gets no END (docs/bacula-protocol.md, "Restore")
    expect(await h.done).toBe('eof');
  });

  it('answers E after the data when the target fails at the end; a failure at FINISH is answered A (the FD has settled the status by then: Q would leave it T)', async () => {
    const r = recordingTarget({ failEnd: 'alpha.dump', failSettle: true });
    const h = start({ prepareRestore: async () => r.target });
    await h.fd.prologue('R', ['mode=dump'], ['Replace=a']);
    await h.fd.expect('F');
    h.fd.cmd('RestoreStart');
    await h.fd.expect('F');
    expect(await restoreEntry(h.fd, '/@pgbacula/c/dump/1/alpha.dump', 'STAT:F -1 0 0 100600 1 0', [Buffer.from('x')])).toBe('C"OK" E"pg_restore exited with code 1"');
    h.fd.cmd('FINISH');
    await h.fd.expect('A"E_CHILD_PROCESS: pg_restore -j failed"');
    expect(r.events).not.toContain('finish');
    h.fd.close();
    expect(await h.done).toBe('aborted');
  });

  it('answers FINISH with A when the restore itself fails there, and says nothing more', async () => {
    const r = recordingTarget();
    r.target.finish = async () => {
      throw new PgbaculaError('RESTORE_PRECHECK', 'no PostgreSQL 16 server binaries found', { hint: 'Give pg_bin_dir.' });
    };
    const h = start({ prepareRestore: async () => r.target });
    await h.fd.prologue('R', ['mode=pitr'], ['Replace=a']);
    await h.fd.expect('F');
    h.fd.cmd('RestoreStart');
    await h.fd.expect('F');
    expect(await restoreEntry(h.fd, '/@pgbacula/c/pitr/x', 'STAT:F 1 0 0 100600 1 0', [Buffer.from('x')])).toBe('C"OK" C"OK"');
    h.fd.cmd('FINISH');
    await h.fd.expect('A"E_RESTORE_PRECHECK: no PostgreSQL 16 server binaries found. Give pg_bin_dir."');
    h.fd.close();
    expect(await h.done).toBe('aborted');
    expect(h.fd.messages().filter((m) => m.startsWith('Q:'))).toEqual([]);
  });
});

describe('restore-source helpers', () => {
  it('parses the FD restore STAT line (size may be -1, mode octal)', () => {
    expect(parseRestoreStat('STAT:F 12 0 0 100640 1 0')).toEqual({ type: 'file', letter: 'F', size: 12, mode: 0o640 });
    expect(parseRestoreStat('STAT:D 0 0 0 040755 1 0')).toMatchObject({ type: 'dir', mode: 0o755 });
    expect(parseRestoreStat('STAT:F -1 0 0 100600 1 0')).toMatchObject({ size: -1 });
    expect(() => parseRestoreStat('STAT:F x')).toThrow(/malformed STAT/);
  });

  it('recovers the namespace path under Where or by locating /@ns/', () => {
    expect(namespacePathOf('/srv/r/@pgbacula/c/dump/1/a.dump', '@pgbacula', '/srv/r')).toBe('c/dump/1/a.dump');
    expect(namespacePathOf('/srv/r/@pgbacula/c/dump/1/a.dir/', '@pgbacula', '/srv/r/')).toBe('c/dump/1/a.dir');
    expect(namespacePathOf('/@pgbacula/c/x', '@pgbacula', '')).toBe('c/x');
    expect(namespacePathOf('/x/@pgbacula/c/x', '@pgbacula', undefined)).toBe('c/x');
    expect(namespacePathOf('/etc/passwd', '@pgbacula', undefined)).toBeUndefined();
  });
});
