import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PgbaculaError } from '../../src/errors.js';
import { exists } from '../../src/os/exists.js';
import { ioError } from '../../src/os/io-error.js';
import { hexDigits, hexLiteral } from '../../src/format/hex.js';
import { forkOf } from '../../src/format/relation-file.js';

const dir = mkdtempSync(join(tmpdir(), 'pgbacula-os-helpers-'));
afterAll(() => {
  chmodSync(join(dir, 'closed'), 0o700);
  rmSync(dir, { recursive: true, force: true });
});

describe('shared helpers', () => {
  it('exists: true, false for not found, and an error for anything else', async () => {
    writeFileSync(join(dir, 'f'), 'x');
    const fail = (e: unknown, what: string) => ioError(e, what, 'the hint');
    expect(await exists(join(dir, 'f'), fail)).toBe(true);
    expect(await exists(join(dir, 'missing'), fail)).toBe(false);
    mkdirSync(join(dir, 'closed'));
    writeFileSync(join(dir, 'closed', 'g'), 'x');
    chmodSync(join(dir, 'closed'), 0o000);
    if (process.getuid?.() !== 0) {
      const e = await exists(join(dir, 'closed', 'g'), fail).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(PgbaculaError);
      expect((e as PgbaculaError).message).toMatch(/^cannot check .*closed\/g: EACCES/);
      expect((e as PgbaculaError).hint).toBe('the hint');
    }
  });

  it('ioError: what and reason, the hint by errno code, a PgbaculaError passed through', () => {
    const err = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    const e = ioError(err, 'cannot write x', (code) => (code === 'ENOSPC' ? 'full' : 'other'));
    expect(e.code).toBe('IO');
    expect(e.message).toBe('cannot write x: ENOSPC: no space left on device');
    expect(e.hint).toBe('full');
    const typed = new PgbaculaError('WAL_CONFLICT', 'kept');
    expect(ioError(typed, 'ignored', 'h')).toBe(typed);
  });

  it('hex: width, case and prefix as each message prints them', () => {
    expect(hexDigits(0x19, 8)).toBe('00000019');
    expect(hexDigits(0xabn, 16, 'lower')).toBe('00000000000000ab');
    expect(hexLiteral(0xd116, 4)).toBe('0xD116');
    expect(hexLiteral(0x4d, 2, 'lower')).toBe('0x4d');
    expect(hexLiteral(0xab, 0)).toBe('0xAB');
  });

  it('forkOf names the fork of a relation file path', () => {
    expect(forkOf('pgdata/base/5/16384')).toBe('main');
    expect(forkOf('pgdata/base/5/16384_fsm')).toBe('fsm');
    expect(forkOf('pgdata/base/5/16384_vm.1')).toBe('vm');
    expect(forkOf('pgdata/base/5/16384_init')).toBe('init');
  });
});
