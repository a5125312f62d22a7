/**
 * Issue 14, acceptance 1 and 2: the release artifacts of `npm run package` (packaging/build.sh),
 * built once for this file with a throwaway RSA-4096 key, then
 *  - SHA256SUMS, its detached signature, the rpm's and the deb's signatures verify with only the
 *    exported release key; one flipped byte in an artifact makes each check fail;
 *  - rpm -K and rpm -qlvp; the .deb and the .rpm carry the same files with the same modes;
 *  - the unpacked tarball runs on its own Node.js with the native kernels and the wasm kernel, and
 *    every bundled ELF needs no newer glibc than README.md states (objdump -T);
 *  - the .deb installs on this machine: /usr/bin/pgbacula --version and demo, then a real Bacula
 *    15.0.3 job whose FD loads the INSTALLED shim, which starts the INSTALLED backend, ends T;
 *  - an upgrade keeps the edited config and the spool; removal leaves only the config; purge
 *    removes it too.
 * The package is purged in afterAll whatever happened. Nothing another test uses is touched: the
 * repository's dist/ and native/build/ are only read (the shim is built into the work dir).
 *
 * Needs scripts/setup.sh (Bacula build, dpkg-dev, rpm, debsigs, gnupg); a missing part fails with
 * its reason — never a skip.
 */
import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { BaculaSite, findBaculaInstall, pluginLine } from './bacula-site.js';
import { pgClientBin } from './dump-fixture.js';
import { processesMatching, REPO } from './real-backend.js';

const install = findBaculaInstall();
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const NODE_VERSION = /NODE_RUNTIME_VERSION=(\S+)/.exec(readFileSync(join(REPO, 'packaging/node-runtime.env'), 'utf8'))![1]!;
const TARBALL = `pgbacula-${VERSION}-linux-x86_64.tar.gz`;
const DEB = `pgbacula_${VERSION}-1_amd64.deb`;
const DEB2 = `pgbacula_${VERSION}-2_amd64.deb`;
const RPM = `pgbacula-${VERSION}-1.x86_64.rpm`;
const CONF = '/etc/pgbacula/pgbacula.conf';

/** Run a command; resolves with its exit status and output (never throws on a status). */
async function run(file: string, args: readonly string[], env: Record<string, string> = {}, input?: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: 600_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** dpkg, waiting (up to 2 min) while another dpkg or apt holds its lock. */
async function dpkg(args: readonly string[]): Promise<{ code: number; out: string }> {
  for (let i = 0; ; i++) {
    const r = await run('dpkg', args);
    if (r.code === 0 || i >= 120 || !/lock/i.test(r.out)) return r;
    await new Promise((res) => setTimeout(res, 1000));
  }
}

/** A copy of `file` in `dir` with the byte in its middle inverted. */
function flipped(file: string, dir: string): string {
  const copy = join(dir, file.split('/').pop()!);
  const b = readFileSync(file);
  b[b.length >> 1] = b[b.length >> 1]! ^ 0xff;
  writeFileSync(copy, b);
  return copy;
}

/** "mode path" of every entry the two formats list, directories of the system left out. */
function debEntries(deb: string): string[] {
  const out = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return out.trim().split('\n').map((l) => {
    const f = l.split(/\s+/);
    const path = f[5]!.replace(/^\./, '').replace(/\/$/, '');
    return `${f[0]} ${path}`;
  }).filter((e) => /^\S+ \/(opt\/pgbacula|etc\/pgbacula|usr\/bin\/pgbacula(-wal-push)?$|usr\/lib\/systemd\/system\/pgbacula)/.test(e)).sort();
}

function rpmEntries(rpm: string): string[] {
  const out = execFileSync('rpm', ['-qlvp', rpm], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return out.trim().split('\n').map((l) => {
    const f = l.split(/\s+/);
    return `${f[0]} ${f[8]}`;
  }).sort();
}

function dpkgInstalled(): string | undefined {
  try {
    const s = execFileSync('dpkg-query', ['-W', '-f', '${Status} ${Version}', 'pgbacula'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return /install ok installed (\S+)/.exec(s)?.[1];
  } catch {
    return undefined;
  }
}

function present(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Files of the staged tree (no directories) as installed paths. */
function packageFiles(deb: string): string[] {
  return debEntries(deb).filter((e) => !e.startsWith('d')).map((e) => e.split(' ')[1]!);
}

describe('release artifacts and the installed package (issue 14, acceptance 1 and 2)', () => {
  let work: string;
  let out: string;
  let gnupg: string;
  let pg: Cluster | undefined;
  let site: BaculaSite | undefined;
  let pluginDir = '';
  const signEnv = (): Record<string, string> => ({ GNUPGHOME: gnupg });

  beforeAll(async () => {
    if (!install) throw new Error('Bacula 15.0.3 is not built: run ./scripts/setup.sh (it runs scripts/bacula-build.sh)');
    for (const tool of ['dpkg-deb', 'rpmbuild', 'rpmsign', 'debsigs', 'gpg', 'objdump', 'patchelf']) {
      if ((await run('sh', ['-c', `command -v ${tool}`])).code !== 0) throw new Error(`${tool} is missing: run ./scripts/setup.sh`);
    }
    // A machine that holds a pgbacula installation of its own is no place for this test.
    if (!dpkgInstalled() && (existsSync('/opt/pgbacula') || existsSync('/etc/pgbacula'))) {
      throw new Error('/opt/pgbacula or /etc/pgbacula exists but no pgbacula package is installed: this test would overwrite them');
    }
    work = mkdtempSync(join(process.env.PGBACULA_TEST_ROOT ?? tmpdir(), 'package-'));
    chmodSync(work, 0o755);
    out = join(work, 'out');
    gnupg = join(work, 'gnupg');
    mkdirSync(gnupg, { mode: 0o700 });
    const key = await run('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', 'pgbacula test release key <release@localhost>', 'rsa4096', 'sign', 'never'], signEnv());
    expect(key.code, key.out).toBe(0);
    const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(execFileSync('gpg', ['--batch', '--with-colons', '--list-secret-keys'], { env: { ...process.env, ...signEnv() }, encoding: 'utf8' }))![1]!;
    const [built, cluster] = await Promise.all([
      run(join(REPO, 'packaging/build.sh'), ['--out', out], { ...signEnv(), PGBACULA_SIGN_KEY: fpr, PGBACULA_REQUIRE_SIGNATURE: '1' }),
      startCluster({ major: 16, name: 'package' }),
    ]);
    pg = cluster;
    if (built.code !== 0) throw new Error(`packaging/build.sh failed:\n${built.out}`);
    await pg.sql(`CREATE DATABASE shop`);
    await pg.sql(`CREATE TABLE orders AS SELECT g AS id, 'order ' || g AS v FROM generate_series(1, 500) g`, [], 'shop');
  }, 600_000);

  afterAll(async () => {
    await site?.stop();
    if (dpkgInstalled() || existsSync('/etc/pgbacula')) await dpkg(['--purge', 'pgbacula']);
    await pg?.destroy();
    if (gnupg) await run('gpgconf', ['--kill', 'all'], signEnv());
    if (work) rmSync(work, { recursive: true, force: true });
  }, 180_000);

  it('signs: SHA256SUMS, its signature, rpm -K and the deb origin signature verify with the release key alone; one flipped byte fails each', async () => {
    expect(readdirSync(out).filter((f) => !f.startsWith('work')).sort()).toEqual([
      'SHA256SUMS', 'SHA256SUMS.asc', RPM, TARBALL, 'pgbacula-release-key.asc', DEB,
    ].sort());
    // a user's keyring: only the published release key
    const user = join(work, 'user-gnupg');
    mkdirSync(user, { mode: 0o700 });
    const env = { GNUPGHOME: user };
    expect((await run('gpg', ['--batch', '--import', join(out, 'pgbacula-release-key.asc')], env)).code).toBe(0);
    const sums = readFileSync(join(out, 'SHA256SUMS'), 'utf8');
    expect(sums.trim().split('\n').map((l) => l.split(/\s+/)[1]).sort()).toEqual([DEB, RPM, TARBALL].sort());
    expect((await run('gpg', ['--batch', '--verify', join(out, 'SHA256SUMS.asc'), join(out, 'SHA256SUMS')], env)).code).toBe(0);
    const check = await run('sh', ['-c', `cd '${out}' && sha256sum -c SHA256SUMS`]);
    expect(check.code, check.out).toBe(0);

    const rpmdb = join(work, 'rpmdb');
    mkdirSync(rpmdb);
    expect((await run('rpm', ['--dbpath', rpmdb, '--import', join(out, 'pgbacula-release-key.asc')])).code).toBe(0);
    const k = await run('rpm', ['--dbpath', rpmdb, '-K', join(out, RPM)]);
    expect(k.code, k.out).toBe(0);
    expect(k.out).toMatch(/digests signatures OK/);
    const debOrigin = (deb: string) => run('sh', ['-c', `ar p '${deb}' _gpgorigin > '${deb}.sig' && ar p '${deb}' debian-binary control.tar.gz data.tar.gz | gpg --batch --verify '${deb}.sig' -`], env);
    const good = await debOrigin(join(out, DEB));
    expect(good.code, good.out).toBe(0);

    // tampering: one byte of each artifact, and one of SHA256SUMS
    const bad = join(work, 'tampered');
    mkdirSync(bad);
    for (const a of [DEB, RPM, TARBALL]) {
      copyFileSync(join(out, 'SHA256SUMS'), join(bad, 'SHA256SUMS'));
      flipped(join(out, a), bad);
      const c = await run('sh', ['-c', `cd '${bad}' && sha256sum -c --ignore-missing SHA256SUMS`]);
      expect(c.code, `${a}: ${c.out}`).not.toBe(0);
      expect(c.out).toContain(`${a}: FAILED`);
    }
    const badSums = flipped(join(out, 'SHA256SUMS'), bad);
    expect((await run('gpg', ['--batch', '--verify', join(out, 'SHA256SUMS.asc'), badSums], env)).code).not.toBe(0);
    expect((await run('rpm', ['--dbpath', rpmdb, '-K', join(bad, RPM)])).code).not.toBe(0);
    expect((await debOrigin(join(bad, DEB))).code).not.toBe(0);
  });

  it('lists: rpm -qlvp and dpkg-deb -c show the same files with the same modes', () => {
    const deb = debEntries(join(out, DEB));
    const rpm = rpmEntries(join(out, RPM));
    expect(rpm.length).toBeGreaterThan(100);
    expect(rpm).toEqual(deb);
    expect(rpm).toContain('-rw-r----- /etc/pgbacula/pgbacula.conf');
    expect(rpm).toContain('lrwxrwxrwx /usr/bin/pgbacula');
    expect(rpm).toContain('lrwxrwxrwx /usr/bin/pgbacula-wal-push');
    expect(rpm).toContain('-rw-r--r-- /usr/lib/systemd/system/pgbacula-wal-receive@.service');
    expect(rpm).toContain('-rw-r--r-- /opt/pgbacula/lib/bacula/pgbacula-fd.so');
    expect(rpm).toContain('-rwxr-xr-x /opt/pgbacula/node/bin/node');
    // production dependencies only
    expect(rpm.some((e) => e.includes('/node_modules/pg/package.json'))).toBe(true);
    expect(rpm.some((e) => /\/node_modules\/(vitest|typescript|wabt|pg1\d)\//.test(e))).toBe(false);
    const conffiles = execFileSync('sh', ['-c', `dpkg-deb --ctrl-tarfile '${join(out, DEB)}' | tar -xOf - ./conffiles`], { encoding: 'utf8' });
    expect(conffiles.trim()).toBe(CONF);
    const rpmConf = execFileSync('rpm', ['-qcp', join(out, RPM)], { encoding: 'utf8' });
    expect(rpmConf.trim()).toBe(CONF);
  });

  it('the tarball runs on its own Node.js with native kernels and the wasm kernel; every ELF within the glibc floor README.md states', async () => {
    const x = join(work, 'tarball');
    mkdirSync(x);
    execFileSync('tar', ['-xzf', join(out, TARBALL), '-C', x]);
    const root = join(x, `pgbacula-${VERSION}`);
    const v = await run(join(root, 'bin/pgbacula'), ['--version'], { PATH: '/usr/bin:/bin' });
    expect(v.code, v.out).toBe(0);
    expect(v.out.split('\n')[0]).toBe(`pgbacula ${VERSION}`);
    expect(v.out).toContain(`node: v${NODE_VERSION} (${join(root, 'node/bin/node')})`);
    expect(v.out).toContain(`kernels: native (${join(root, 'native/build/pgbacula_kernels.node')})`);
    expect(v.out).toContain(`page checksums: wasm (${join(root, 'dist/wasm/page-checksum.wasm')})`);
    expect(v.out).toMatch(/bacula shim: built for Bacula 15\.0\.3\b/);
    // the fallback kernels are bundled too
    const fb = await run(join(root, 'bin/pgbacula'), ['--version'], { PATH: '/usr/bin:/bin', PGBACULA_KERNELS: 'fallback' });
    expect(fb.out).toContain('kernels: fallback, npm lz4-napi + @node-rs/xxhash');

    const floor = /bundled ELF files need glibc (\d+\.\d+)/.exec(readFileSync(join(REPO, 'README.md'), 'utf8'))?.[1];
    expect(floor, 'README.md states the glibc floor').toBeTruthy();
    const files = execFileSync('find', [root, '-type', 'f'], { encoding: 'utf8' }).trim().split('\n');
    let elves = 0;
    let newest = '0';
    const cmp = (a: string, b: string) => a.split('.').map(Number).reduce((r, n, i) => r || n - Number(b.split('.')[i] ?? 0), 0);
    for (const f of files) {
      const head = readFileSync(f).subarray(0, 4);
      if (!head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) continue;
      elves++;
      for (const m of execFileSync('objdump', ['-T', f], { encoding: 'utf8', maxBuffer: 64 << 20 }).matchAll(/GLIBC_(\d+\.\d+(?:\.\d+)?)/g)) {
        if (cmp(m[1]!, newest) > 0) newest = m[1]!;
      }
    }
    expect(elves).toBeGreaterThanOrEqual(6);
    expect(newest).toBe(floor);
    expect(readFileSync(join(root, 'share/pgbacula/glibc-floor.txt'), 'utf8')).toContain(`the floor is ${floor}`);
    // a licence for every bundled npm package, Node.js and the C libraries
    const npm = readFileSync(join(root, 'share/licenses/npm-packages.txt'), 'utf8');
    for (const dep of ['pg@', 'piscina@', 'lz4-napi@', '@node-rs/xxhash@', 'pg-copy-streams@']) expect(npm).toContain(dep);
    for (const f of ['node.LICENSE', 'bacula.LICENSE', 'lz4.copyright', 'xxhash.copyright']) expect(existsSync(join(root, 'share/licenses', f))).toBe(true);
  });

  it('installs the .deb: /usr/bin/pgbacula --version and demo, and a Bacula 15.0.3 job through the installed shim and backend ends T', async () => {
    const inst = await dpkg(['-i', join(out, DEB)]);
    expect(inst.code, inst.out).toBe(0);
    expect(dpkgInstalled()).toBe(`${VERSION}-1`);
    const st = statSync(CONF);
    expect(st.mode & 0o777).toBe(0o640);
    expect(st.uid).toBe(0);
    // wal-push runs as postgres and reads the config too
    expect((await run('runuser', ['-u', 'postgres', '--', 'test', '-r', CONF])).code).toBe(0);
    expect(statSync('/var/lib/pgbacula/wal-spool').mode & 0o777).toBe(0o750);
    pluginDir = readFileSync('/var/lib/pgbacula/plugin-dir', 'utf8').trim();
    const shim = join(pluginDir, 'pgbacula-fd.so');
    expect(lstatSync(shim).isFile()).toBe(true);
    expect(readFileSync(shim).equals(readFileSync('/opt/pgbacula/lib/bacula/pgbacula-fd.so'))).toBe(true);

    const v = await run('/usr/bin/pgbacula', ['--version'], { PATH: '/usr/bin:/bin' });
    expect(v.code, v.out).toBe(0);
    expect(v.out).toContain(`node: v${NODE_VERSION} (/opt/pgbacula/node/bin/node)`);
    expect(v.out).toContain('kernels: native (/opt/pgbacula/native/build/pgbacula_kernels.node)');
    expect(v.out).toContain('bacula shim: built for Bacula 15.0.3');
    // The native archive_command helper is installed and runs (usage error without a file).
    const push = await run('/usr/bin/pgbacula-wal-push', [], { PATH: '/usr/bin:/bin' });
    expect(push.code, push.out).toBe(2);
    expect(push.out).toContain("archive_command = 'pgbacula-wal-push");
    const demo = await run('/usr/bin/pgbacula', ['demo', '--json'], { PATH: '/usr/bin:/bin' });
    expect(demo.code, demo.out).toBe(0);
    expect(demo.out).toMatch(/"exact": true/);

    // the site's FD loads every *-fd.so of the installed plugin directory: ours only
    expect(readdirSync(pluginDir).filter((f) => f.endsWith('-fd.so'))).toEqual(['pgbacula-fd.so']);
    site = await BaculaSite.start({
      install,
      pluginDir,
      parentDir: work,
      fdEnv: { PATH: `${pgClientBin()}:/usr/bin:/bin` },
      // the one line a user writes
      fileSets: [{ name: 'pg', plugins: [pluginLine('pgbacula', { mode: 'dump', host: pg!.socketDir, port: pg!.port, user: 'postgres', database: 'shop', cluster: 'pkg' })] }],
      jobs: [{ name: 'pg-backup', fileSet: 'pg' }],
    });
    const status = await site.bconsole(`status client=${site.layout.names.fd}`);
    expect(status).toMatch(/Plugin: .*pgbacula\(/);

    // the backend the FD starts is the installed one: its executable is the bundled node
    const seen = new Set<string>();
    let watching = true;
    const watch = (async () => {
      while (watching) {
        for (const p of processesMatching((a) => a.includes('backend') && a.some((x) => x.endsWith('pgbacula.js')))) {
          try {
            seen.add(`${readlinkSync(`/proc/${p.pid}/exe`)} ${p.argv.find((x) => x.endsWith('pgbacula.js'))}`);
          } catch {
            // gone already
          }
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const job = await site.runJob('pg-backup', 'Full').finally(() => { watching = false; });
    await watch;
    expect(job.status, job.log).toBe('T');
    expect(job.log).toContain('pgbacula: starting dump backup (Full) of 1 database: shop');
    expect([...seen]).toContain('/opt/pgbacula/node/bin/node /opt/pgbacula/libexec/../bin/pgbacula.js');

    const where = join(work, 'restored');
    const restore = await site.restore({ jobId: job.jobId, where });
    expect(restore.status, restore.log).toBe('T');
    expect(statSync(join(where, `@pgbacula/pkg/dump/${job.jobId}/shop.dump`)).size).toBeGreaterThan(1000);
    await site.stop();
    site = undefined;
  });

  it('upgrades: a newer package keeps the edited config and the spool, and replaces the shim copy', async () => {
    expect(dpkgInstalled()).toBe(`${VERSION}-1`);
    const edited = `${readFileSync(CONF, 'utf8')}# edited by the administrator\n`;
    writeFileSync(CONF, edited);
    const marker = '/var/lib/pgbacula/wal-spool/000000010000000000000042';
    writeFileSync(marker, 'wal');
    const again = await run(join(REPO, 'packaging/build.sh'), ['--out', out, '--reuse-stage', '--formats', 'deb'], { PGBACULA_PKG_RELEASE: '2' });
    expect(again.code, again.out).toBe(0);
    const up = await dpkg(['-i', join(out, DEB2)]);
    expect(up.code, up.out).toBe(0);
    expect(dpkgInstalled()).toBe(`${VERSION}-2`);
    expect(readFileSync(CONF, 'utf8')).toBe(edited);
    expect(statSync(CONF).mode & 0o777).toBe(0o640);
    expect(readFileSync(marker, 'utf8')).toBe('wal');
    expect(existsSync(join(pluginDir, 'pgbacula-fd.so'))).toBe(true);
    // a spool that still holds WAL survives a removal too (said on the terminal); this one is ours
    rmSync(marker);
  });

  it('removes: nothing but the config is left; purge removes the config too', async () => {
    const files = packageFiles(join(out, DEB));
    const rm = await dpkg(['-r', 'pgbacula']);
    expect(rm.code, rm.out).toBe(0);
    const left = files.filter(present);
    expect(left).toEqual([CONF]);
    for (const p of ['/opt/pgbacula', '/var/lib/pgbacula', join(pluginDir, 'pgbacula-fd.so')]) expect(existsSync(p), p).toBe(false);
    const purge = await dpkg(['--purge', 'pgbacula']);
    expect(purge.code, purge.out).toBe(0);
    expect(existsSync('/etc/pgbacula')).toBe(false);
    expect(dpkgInstalled()).toBeUndefined();
  });

  it('the .rpm installs into a scratch root with the same files', async () => {
    const root = join(work, 'rpm-root');
    mkdirSync(root);
    const r = await run('rpm', ['--root', root, '--dbpath', '/rpmdb', '-i', '--nodeps', '--noscripts', '--nosignature', join(out, RPM)]);
    expect(r.code, r.out).toBe(0);
    for (const f of packageFiles(join(out, DEB))) expect(lstatSync(join(root, f)).isDirectory(), f).toBe(false);
    const v = await run(join(root, 'opt/pgbacula/bin/pgbacula'), ['--version'], { PATH: '/usr/bin:/bin' });
    expect(v.out.split('\n')[0]).toBe(`pgbacula ${VERSION}`);
  });
});
