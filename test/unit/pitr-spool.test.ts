/**
 * Issue 9, item 9: the spool check of mode pitr judges the spool for the archiver (the OS user
 * that runs PostgreSQL), not for the process running the job, and never creates anything.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkSpool, type Archiver } from '../../src/modes/pitr/spool-check.js';

const SYS = '7300000000000000001';

describe('pitr spool check (issue 9, item 9)', () => {
  const root = mkdtempSync(join(tmpdir(), 'pitr-spool-'));
  chmodSync(root, 0o755);
  const me = { uid: process.getuid!(), gid: process.getgid!() };
  // An archiver that is not us: another uid, in a group of its own.
  const other: Archiver = { uid: me.uid + 4242, gid: me.gid + 4242, name: 'pgarch', groupName: 'pgarch', groups: [me.gid + 4242] };
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const dir = (name: string, mode: number): string => {
    const d = join(root, name);
    mkdirSync(d, { recursive: true });
    chmodSync(d, mode);
    return d;
  };

  it('a missing spool is refused with the install command for the archiver, and not created', async () => {
    const spool = join(root, 'missing', 'wal-spool');
    const err = await checkSpool(spool, other, SYS, 1).catch((e: Error & { hint?: string }) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(`the WAL spool ${spool} does not exist`);
    expect((err as { hint?: string }).hint).toContain(`install -d -o pgarch -g pgarch -m 0750 ${spool}`);
    expect(existsSync(join(root, 'missing'))).toBe(false);
  });

  it('a spool the archiver cannot write is refused with the chown that fixes it', async () => {
    const spool = dir('theirs-not', 0o755);
    const err = await checkSpool(spool, other, SYS, 1).catch((e: Error & { hint?: string }) => e);
    expect((err as Error).message).toContain(`the WAL spool ${spool} is not writable by pgarch`);
    expect((err as { hint?: string }).hint).toContain(`chown -R pgarch:pgarch ${spool} && chmod 0750 ${spool}`);
  });

  it('owner or group write access is enough; an existing system directory must be writable too', async () => {
    const owned = dir('owned', 0o750);
    await expect(checkSpool(owned, { ...other, uid: statSync(owned).uid }, SYS, 1)).resolves.toBeUndefined();
    const grouped = dir('grouped', 0o770);
    await expect(checkSpool(grouped, { ...other, groups: [statSync(grouped).gid] }, SYS, 1)).resolves.toBeUndefined();
    const sysDir = join(grouped, SYS);
    mkdirSync(sysDir);
    chmodSync(sysDir, 0o750);
    if (me.uid === 0) chownSync(sysDir, 0, other.gid + 1);
    const err = await checkSpool(grouped, { ...other, groups: [statSync(grouped).gid] }, SYS, 1).catch((e: Error) => e);
    expect((err as Error).message).toContain(`${sysDir} in the WAL spool is not writable by pgarch`);
  });

  it('a parent the archiver cannot enter is refused', async () => {
    const parent = dir('closed', 0o700);
    const spool = join(parent, 'wal-spool');
    mkdirSync(spool);
    chmodSync(spool, 0o777);
    const err = await checkSpool(spool, other, SYS, 1).catch((e: Error) => e);
    expect((err as Error).message).toContain(`pgarch (who runs PostgreSQL and its archive_command) cannot enter ${parent}`);
  });

  it('without a known archiver (data directory not visible) only existence is checked', async () => {
    await expect(checkSpool(dir('unknown', 0o700), undefined, SYS, 1)).resolves.toBeUndefined();
  });
});
