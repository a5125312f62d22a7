/**
 * Names in a Bacula restore stream are untrusted: a restore to files (where=) and the staging of
 * a pitr restore write only under their root and through no symbolic link. Real files, no FD:
 * the targets are driven with crafted entries, as the FD would announce them.
 */
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileRestoreTarget, type RestoreLog } from '../../src/restore/file-target.js';
import { placeItem } from '../../src/modes/pitr/restore.js';
import type { RestoreEntry } from '../../src/item/restore-target.js';

const log: RestoreLog = { info: () => undefined, warning: () => undefined, error: () => undefined } as unknown as RestoreLog;

function entry(fname: string, type: RestoreEntry['type'], linkTarget?: string): RestoreEntry {
  return { fname, namespacePath: undefined, path: fname, type, mode: type === 'dir' ? 0o700 : 0o600, mtimeMs: Date.now(), size: 0, encoding: 'raw', ...(linkTarget ? { linkTarget } : {}) };
}

describe('restore to files (where=) with crafted names', () => {
  let root: string;
  let where: string;
  let outside: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'pgbacula-stream-'));
    where = join(root, 'where');
    outside = join(root, 'outside');
    mkdirSync(where);
    mkdirSync(outside);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  async function write(t: FileRestoreTarget, e: RestoreEntry, bytes = 'data'): Promise<void> {
    await t.begin(e);
    if (e.type === 'file') await t.write(new TextEncoder().encode(bytes));
    await t.end({ hash: '', rawSize: bytes.length, storedSize: bytes.length });
  }

  it('writes a normal tree under where=', async () => {
    const t = new FileRestoreTarget({ where, replace: 'a' }, log);
    await write(t, entry(`${where}/@pgbacula/c/pitr`, 'dir'));
    await write(t, entry(`${where}/@pgbacula/c/pitr/f`, 'file'));
    expect(existsSync(join(where, '@pgbacula/c/pitr/f'))).toBe(true);
  });

  it('refuses "..", "." and names outside where=', async () => {
    const t = new FileRestoreTarget({ where, replace: 'a' }, log);
    for (const name of [`${where}/../outside/x`, `${where}/./x`, `${outside}/x`, 'relative/x']) {
      await expect(t.begin(entry(name, 'file')), name).rejects.toThrow(/refusing to write/);
    }
    expect(readdirSync(outside)).toEqual([]);
  });

  it('never writes through a link it restored, nor through one already under where=', async () => {
    const t = new FileRestoreTarget({ where, replace: 'a' }, log);
    await write(t, entry(`${where}/a`, 'dir'));
    await write(t, entry(`${where}/a/link`, 'symlink', outside));
    expect(lstatSync(join(where, 'a/link')).isSymbolicLink()).toBe(true);
    await expect(t.begin(entry(`${where}/a/link/owned`, 'file'))).rejects.toThrow(/symbolic link/);
    symlinkSync(outside, join(where, 'planted'));
    const t2 = new FileRestoreTarget({ where, replace: 'a' }, log);
    await expect(t2.begin(entry(`${where}/planted/owned`, 'file'))).rejects.toThrow(/symbolic link/);
    expect(readdirSync(outside)).toEqual([]);
  });

  it('a link planted where the file goes is replaced, not written through', async () => {
    writeFileSync(join(outside, 'victim'), 'keep');
    symlinkSync(join(outside, 'victim'), join(where, 'f'));
    const t = new FileRestoreTarget({ where, replace: 'a' }, log);
    await write(t, entry(`${where}/f`, 'file'), 'new');
    expect(lstatSync(join(where, 'f')).isSymbolicLink()).toBe(false);
    expect(readdirSync(outside)).toEqual(['victim']);
  });
});

describe('pitr staging placement of crafted names', () => {
  it('places only plain names of the pitr and wal areas', () => {
    const staging = '/srv/x.pgbacula-restore-1';
    expect(placeItem(staging, 'c/pitr/20261203-101010F/pgdata/base/1/1259', 'file')).toEqual({ kind: 'file', path: `${staging}/backups/20261203-101010F/files/pgdata/base/1/1259` });
    for (const bad of ['c/pitr/20261203-101010F/pgdata/../../../../etc/passwd', 'c/pitr/../x/y', 'c/pitr/20261203-101010F/./x', 'c/wal/00000001/../../x', 'c/pitr/notanid/x', 'c/wal/00000001/passwd']) {
      expect(placeItem(staging, bad, 'file'), bad).toBeUndefined();
    }
  });
});
