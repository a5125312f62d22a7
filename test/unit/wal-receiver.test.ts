import { describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { isRetryable } from '../../src/archive/receiver.js';
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
