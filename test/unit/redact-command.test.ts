import { describe, expect, it } from 'vitest';
import { redactCommand } from '../../src/config/redact.js';

describe('redactCommand: a user command shown in a message carries no credential', () => {
  it.each([
    ["AWS_SECRET_ACCESS_KEY=abc123xyz wal-g wal-push %p", 'abc123xyz'],
    ["PGPASSWORD='s3 cret' pg_receivewal", 's3 cret'],
    ['sshpass -p hunter22 scp %p host:/arch/%f', 'hunter22'],
    ['mytool --password=topsecret %p', 'topsecret'],
    ['curl -T %p https://user:pa55word@store.example/wal/%f', 'pa55word'],
    ['API_TOKEN="t0k3n" push %p', 't0k3n'],
  ])('%s', (cmd, secret) => {
    const out = redactCommand(cmd);
    expect(out).not.toContain(secret);
    expect(out).toContain('********');
  });

  it('leaves an ordinary command as it is', () => {
    const cmd = "/usr/local/bin/pgbacula wal-push --wal-spool /var/lib/pgbacula/wal-spool %p";
    expect(redactCommand(cmd)).toBe(cmd);
  });
});
