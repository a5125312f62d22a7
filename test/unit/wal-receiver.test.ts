import { describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { isRetryable } from '../../src/archive/receiver.js';
import { receiveDir } from '../../src/archive/layout.js';
import { receiverLock } from '../../src/archive/receiver-lock.js';
import { MemoryStorage } from '../../src/storage/memory.js';
import { runCli } from '../harness/run-cli.js';

describe('wal-receive: what is retried with backoff and what stops it', () => {
  it('retries lost connections, server restarts, a slot still held by a killed predecessor, a standby behind the archive', () => {
    const retried = [
      new PgbaculaError('CONNECTION', 'START_REPLICATION … failed: Connection terminated unexpectedly'),
      new PgbaculaError('CONNECTION_TIMEOUT', 'connection to db1:5432 as backup timed out after 30 s'),
      new PgbaculaError('PREREQUISITE', 'START_REPLICATION SLOT "pgbacula" PHYSICAL 0/3000000 TIMELINE 1 on db1:5432 failed: replication slot "pgbacula" is active for PID 4242'),
      new PgbaculaError('PARAM_INVALID', 'START_REPLICATION … failed: requested starting point 0/9000000 is ahead of the WAL flush position of this server 0/8F00000'),
    ];
    for (const e of retried) expect(isRetryable(e), e.message).toBe(true);
  });

  it('stops on what waiting cannot fix', () => {
    const fatal = [
      new PgbaculaError('WAL_GAP', 'START_REPLICATION … failed: requested WAL segment 000000010000000000000003 has already been removed'),
      new PgbaculaError('WAL_CONFLICT', '000000010000000000000009 is already archived with different content'),
      new PgbaculaError('PREREQUISITE', 'replication slot "pgbacula" does not exist on db1:5432'),
      new PgbaculaError('AUTHENTICATION', 'authentication failed for db1:5432 as backup'),
      new PgbaculaError('IO', 'cannot store 000000010000000000000009: ENOSPC'),
      new Error('a bug'),
    ];
    for (const e of fatal) expect(isRetryable(e), e.message).toBe(false);
  });

  it('refuses an invalid slot name before connecting (exit 2)', async () => {
    const r = await runCli(['wal-receive', '--wal-spool', '/nonexistent/spool', '--slot-name', 'Bad-Name']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid replication slot name "Bad-Name"');
  });
});

describe("the receiver's lock as cdp jobs and info read it (untrusted: a crash or a hand may leave anything)", () => {
  const lockOf = async (content: string | undefined) => {
    const s = new MemoryStorage();
    const dir = receiveDir('/a', '7311887020705307463');
    await s.makeDirs(dir);
    if (content !== undefined) await s.writeFileDurable(`${dir}/lock`, content);
    return receiverLock('/a', '7311887020705307463', s);
  };

  it('no lock, an empty one, a torn or crafted one: no receiver (the job then fails with the fix), never a guess', async () => {
    for (const c of [undefined, '', '\n', '12ab', '-5', '0', '1.5', '99999999999999999999']) expect(await lockOf(c), JSON.stringify(c)).toBeUndefined();
  });

  it("a live pid is alive, a dead one is not", async () => {
    expect(await lockOf(`${process.pid}\n`)).toMatchObject({ pid: process.pid, alive: true });
    const dead = await lockOf('2147483646');
    expect(dead).toMatchObject({ pid: 2147483646, alive: false });
  });
});
