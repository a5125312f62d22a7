/**
 * A throwaway Bacula 15.0.3 site for end-to-end tests: Director, Storage daemon (file device),
 * File daemon (with pgbacula-fd.so) and bconsole, on free loopback ports, with a sqlite3
 * catalog, everything under one temporary directory.
 *
 *   const site = await BaculaSite.start({ plugins: ['native/build/pgbacula-fd.so'],
 *     fileSets: [{ name: 'pg', plugins: [pluginLine('pgbacula', { mode: 'dump' })] }],
 *     jobs: [{ name: 'pg-backup', fileSet: 'pg' }] });
 *   const run = await site.runJob('pg-backup', 'Full');       // run.status === 'T'
 *   const res = await site.restore({ jobId: run.jobId, where: '/tmp/x',
 *                                    pluginOptions: { overwrite_existing: true } });
 *   await site.stop();
 *
 * The daemons run in the foreground (-f) as children of this process: they are killed by
 * stop(), by a process 'exit' handler, and (where util-linux `setpriv` exists) by the kernel
 * when this process dies (parent-death signal).
 *
 * The configuration text generators are exported too (directorConfig, fileDaemonConfig, ...);
 * test/e2e/README-config-example.md shows what a user copies from them.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/os/free-port.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

// ---------------------------------------------------------------------------------------------
// The Bacula install
// ---------------------------------------------------------------------------------------------

export interface BaculaInstall {
  readonly sbindir: string;
  readonly dir: string;
  readonly sd: string;
  readonly fd: string;
  readonly bconsole: string;
  /** directory of create_sqlite3_database / make_sqlite3_tables / query.sql */
  readonly scriptdir: string;
  /** the install's own plugin dir (bpipe-fd.so lives there) */
  readonly plugindir: string;
  /** the configured source tree (for native/build.sh) */
  readonly src: string;
}

/**
 * Locate the Bacula install built by scripts/bacula-build.sh (PGBACULA_CACHE / BACULA_SRC are
 * honoured by that script). Does not build anything; returns undefined when it is missing.
 */
export function findBaculaInstall(): BaculaInstall | undefined {
  let out: string;
  try {
    out = execFileSync(join(REPO, 'scripts/bacula-build.sh'), ['--print'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return undefined;
  }
  const v = (k: string): string => out.split('\n').find((l) => l.startsWith(k + '='))?.slice(k.length + 1) ?? '';
  const inst: BaculaInstall = {
    sbindir: v('BACULA_SBINDIR'),
    dir: v('BACULA_DIR'),
    sd: v('BACULA_SD'),
    fd: v('BACULA_FD'),
    bconsole: v('BACULA_BCONSOLE'),
    scriptdir: v('BACULA_SCRIPTDIR'),
    plugindir: v('BACULA_PLUGINDIR'),
    src: v('BACULA_SRC'),
  };
  for (const f of [inst.dir, inst.sd, inst.fd, inst.bconsole, join(inst.scriptdir, 'make_sqlite3_tables')]) {
    if (!f || !existsSync(f)) return undefined;
  }
  return inst;
}

// ---------------------------------------------------------------------------------------------
// Configuration text generators
// ---------------------------------------------------------------------------------------------

/** A double-quoted Bacula configuration string (backslash escapes " and \). */
export function quoteConfig(s: string): string {
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

/**
 * A Plugin= command string: `<plugin>: key=value ...`. Values with white space, quotes or
 * backslashes are double-quoted for the FD's tokenizer (docs/bacula-protocol.md, "The Params block"); `true` renders as a bare
 * flag (the FD sends it as key=1).
 */
export function pluginLine(plugin: string, params: Record<string, string | number | boolean> = {}): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === true) {
      parts.push(k);
      continue;
    }
    const s = v === false ? 'false' : String(v);
    parts.push(/[\s"\\]/.test(s) || s === '' ? `${k}="${s.replace(/[\\"]/g, (c) => '\\' + c)}"` : `${k}=${s}`);
  }
  return parts.length ? `${plugin}: ${parts.join(' ')}` : `${plugin}:`;
}

export interface FileSetSpec {
  readonly name: string;
  /** File = entries (local paths) */
  readonly files?: readonly string[];
  /** Plugin = entries (complete plugin strings, e.g. from pluginLine()) */
  readonly plugins?: readonly string[];
  /** Options { } block; default { signature = MD5 } */
  readonly options?: Readonly<Record<string, string>>;
  /** Exclude { File = ... } entries */
  readonly exclude?: readonly string[];
}

export interface JobSpec {
  readonly name: string;
  readonly fileSet: string;
  /** the Client resource of the job (default: the site's own FD) */
  readonly client?: string;
  readonly level?: 'Full' | 'Incremental' | 'Differential';
  readonly accurate?: boolean;
  /** extra raw directives, one per entry (e.g. 'Max Run Time = 600') */
  readonly extra?: readonly string[];
}

/** A further File Daemon the Director knows (the caller runs it: fileDaemonConfig of a layout copy). */
export interface ClientSpec {
  readonly name: string;
  readonly port: number;
  readonly password: string;
}

export interface SiteLayout {
  readonly root: string;
  readonly names: { readonly dir: string; readonly fd: string; readonly sd: string };
  readonly ports: { readonly dir: number; readonly fd: number; readonly sd: number };
  readonly passwords: { readonly console: string; readonly fd: string; readonly sd: string };
  readonly paths: {
    readonly conf: string;
    readonly dirWork: string;
    readonly sdWork: string;
    readonly fdWork: string;
    readonly volumes: string;
    readonly pluginDir: string;
    readonly restore: string;
    readonly logs: string;
    readonly scriptdir: string;
  };
  readonly fileSets: readonly FileSetSpec[];
  readonly jobs: readonly JobSpec[];
  /** Name of the restore Job resource */
  readonly restoreJob: string;
  /** Client resources besides the site's own FD */
  readonly clients?: readonly ClientSpec[];
  /** jobs a Client and the Storage run at once, sharing volumes (default: one at a time) */
  readonly concurrency?: number;
}

export function fileSetResource(fs: FileSetSpec): string {
  const opts = fs.options ?? { signature: 'MD5' };
  const lines = [`FileSet {`, `  Name = ${quoteConfig(fs.name)}`, `  Include {`];
  lines.push(`    Options {`);
  for (const [k, v] of Object.entries(opts)) lines.push(`      ${k} = ${v}`);
  lines.push(`    }`);
  for (const f of fs.files ?? []) lines.push(`    File = ${quoteConfig(f)}`);
  for (const p of fs.plugins ?? []) lines.push(`    Plugin = ${quoteConfig(p)}`);
  lines.push(`  }`);
  if (fs.exclude?.length) {
    lines.push(`  Exclude {`);
    for (const f of fs.exclude) lines.push(`    File = ${quoteConfig(f)}`);
    lines.push(`  }`);
  }
  lines.push(`}`);
  return lines.join('\n') + '\n';
}

export function backupJobResource(job: JobSpec, l: Pick<SiteLayout, 'names' | 'paths'>): string {
  const lines = [
    `Job {`,
    `  Name = ${quoteConfig(job.name)}`,
    `  Type = Backup`,
    `  Level = ${job.level ?? 'Full'}`,
    `  Client = ${quoteConfig(job.client ?? l.names.fd)}`,
    `  FileSet = ${quoteConfig(job.fileSet)}`,
    `  Storage = File`,
    `  Pool = Default`,
    `  Messages = Standard`,
    `  Accurate = ${job.accurate ? 'yes' : 'no'}`,
    `  Write Bootstrap = ${quoteConfig(join(l.paths.dirWork, '%n.bsr'))}`,
  ];
  for (const e of job.extra ?? []) lines.push(`  ${e}`);
  lines.push(`}`);
  return lines.join('\n') + '\n';
}

export function directorConfig(l: SiteLayout): string {
  const fileSets = l.fileSets.length ? l.fileSets : [{ name: 'Empty', files: [] as string[] }];
  return [
    `# Director of a pgbacula e2e site (generated by test/e2e/bacula-site.ts)`,
    `Director {`,
    `  Name = ${quoteConfig(l.names.dir)}`,
    `  DIRport = ${l.ports.dir}`,
    `  DirAddress = 127.0.0.1`,
    `  QueryFile = ${quoteConfig(join(l.paths.scriptdir, 'query.sql'))}`,
    `  WorkingDirectory = ${quoteConfig(l.paths.dirWork)}`,
    `  PidDirectory = ${quoteConfig(l.paths.dirWork)}`,
    `  Maximum Concurrent Jobs = 10`,
    `  Password = ${quoteConfig(l.passwords.console)}`,
    `  Messages = Daemon`,
    `}`,
    ``,
    `Catalog {`,
    `  Name = MyCatalog`,
    `  dbname = "bacula"; dbuser = ""; dbpassword = ""`,
    `}`,
    ``,
    `Messages {`,
    `  Name = Daemon`,
    `  console = all, !skipped, !saved`,
    `  append = ${quoteConfig(join(l.paths.logs, 'director.log'))} = all, !skipped`,
    `}`,
    ``,
    `Messages {`,
    `  Name = Standard`,
    `  console = all, !skipped, !saved, !restored`,
    `  catalog = all`,
    `  append = ${quoteConfig(join(l.paths.logs, 'jobs.log'))} = all`,
    `}`,
    ``,
    ...[{ name: l.names.fd, port: l.ports.fd, password: l.passwords.fd }, ...(l.clients ?? [])].flatMap((c) => [
      `Client {`,
      `  Name = ${quoteConfig(c.name)}`,
      `  Address = 127.0.0.1`,
      `  FDPort = ${c.port}`,
      `  Catalog = MyCatalog`,
      `  Password = ${quoteConfig(c.password)}`,
      `  AutoPrune = no`,
      ...(l.concurrency ? [`  Maximum Concurrent Jobs = ${l.concurrency}`] : []),
      `}`,
      ``,
    ]),
    `Storage {`,
    `  Name = File`,
    `  Address = 127.0.0.1`,
    `  SDPort = ${l.ports.sd}`,
    `  Password = ${quoteConfig(l.passwords.sd)}`,
    `  Device = FileDev`,
    `  Media Type = File`,
    ...(l.concurrency ? [`  Maximum Concurrent Jobs = ${l.concurrency}`] : []),
    `}`,
    ``,
    `Pool {`,
    `  Name = Default`,
    `  Pool Type = Backup`,
    `  Label Format = "Vol-"`,
    // concurrent jobs share the one device, hence its mounted volume
    `  Maximum Volume Jobs = ${l.concurrency ? 0 : 1}`,
    `  AutoPrune = no`,
    `  Recycle = no`,
    `}`,
    ``,
    ...fileSets.map(fileSetResource),
    ...l.jobs.map((j) => backupJobResource(j, l)),
    `Job {`,
    `  Name = ${quoteConfig(l.restoreJob)}`,
    `  Type = Restore`,
    `  Client = ${quoteConfig(l.names.fd)}`,
    `  FileSet = ${quoteConfig(fileSets[0]!.name)}`,
    `  Storage = File`,
    `  Pool = Default`,
    `  Messages = Standard`,
    `  Where = ${quoteConfig(l.paths.restore)}`,
    `}`,
    ``,
  ].join('\n');
}

export function storageConfig(l: SiteLayout): string {
  return [
    `# Storage daemon of a pgbacula e2e site (generated by test/e2e/bacula-site.ts)`,
    `Storage {`,
    `  Name = ${quoteConfig(l.names.sd)}`,
    `  SDPort = ${l.ports.sd}`,
    `  SDAddress = 127.0.0.1`,
    `  WorkingDirectory = ${quoteConfig(l.paths.sdWork)}`,
    `  Pid Directory = ${quoteConfig(l.paths.sdWork)}`,
    `  Maximum Concurrent Jobs = 10`,
    `}`,
    ``,
    `Director {`,
    `  Name = ${quoteConfig(l.names.dir)}`,
    `  Password = ${quoteConfig(l.passwords.sd)}`,
    `}`,
    ``,
    `Device {`,
    `  Name = FileDev`,
    `  Media Type = File`,
    `  Archive Device = ${quoteConfig(l.paths.volumes)}`,
    `  LabelMedia = yes`,
    `  Random Access = yes`,
    `  AutomaticMount = yes`,
    `  RemovableMedia = no`,
    `  AlwaysOpen = no`,
    `  Maximum Concurrent Jobs = 10`,
    `}`,
    ``,
    `Messages {`,
    `  Name = Standard`,
    `  director = ${l.names.dir} = all`,
    `}`,
    ``,
  ].join('\n');
}

/**
 * File daemon configuration. Bacula 15.0.3 has no "Plugin Names" directive: the FD loads every
 * regular file named *-fd.so in Plugin Directory (symbolic links are skipped!).
 */
export function fileDaemonConfig(l: SiteLayout): string {
  return [
    `# File daemon of a pgbacula e2e site (generated by test/e2e/bacula-site.ts)`,
    `Director {`,
    `  Name = ${quoteConfig(l.names.dir)}`,
    `  Password = ${quoteConfig(l.passwords.fd)}`,
    `}`,
    ``,
    `FileDaemon {`,
    `  Name = ${quoteConfig(l.names.fd)}`,
    `  FDport = ${l.ports.fd}`,
    `  FDAddress = 127.0.0.1`,
    `  WorkingDirectory = ${quoteConfig(l.paths.fdWork)}`,
    `  Pid Directory = ${quoteConfig(l.paths.fdWork)}`,
    `  Plugin Directory = ${quoteConfig(l.paths.pluginDir)}`,
    `  Maximum Concurrent Jobs = 10`,
    `}`,
    ``,
    `Messages {`,
    `  Name = Standard`,
    `  director = ${l.names.dir} = all`,
    `}`,
    ``,
  ].join('\n');
}

export function bconsoleConfig(l: SiteLayout): string {
  return [
    `Director {`,
    `  Name = ${quoteConfig(l.names.dir)}`,
    `  DIRport = ${l.ports.dir}`,
    `  Address = 127.0.0.1`,
    `  Password = ${quoteConfig(l.passwords.console)}`,
    `}`,
    ``,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/** Bacula JobStatus letters after which a job no longer changes. */
export const TERMINAL_JOB_STATUS = new Set(['T', 'W', 'E', 'e', 'f', 'A', 'I', 'D']);

export interface JobResult {
  readonly jobId: number;
  /** JobStatus letter: T ok, W ok with warnings, E/e/f errors, A canceled ... */
  readonly status: string;
  readonly statusLong: string;
  readonly errors: number;
  readonly files: number;
  readonly bytes: number;
  /** the job log (catalog Log table), one string, lines joined with \n */
  readonly log: string;
}

export interface EstimateResult {
  readonly files: number;
  readonly bytes: number;
  /** ls -l style lines printed with `listing` */
  readonly listing: readonly string[];
  readonly raw: string;
}

export interface RestoreOptions {
  /** one backup job, or several (comma list semantics of bconsole) */
  readonly jobId?: number | readonly number[];
  /**
   * or bconsole's own selection keywords instead of jobid=, e.g. `fileset=pitr current select`
   * (the most recent Full and the later jobs of that FileSet; `current` alone only sets the date)
   */
  readonly selection?: string;
  /** restore prefix; '' or '/' = original location */
  readonly where?: string;
  readonly regexWhere?: string;
  readonly replace?: 'always' | 'ifnewer' | 'ifolder' | 'never';
  /** restore only these catalog paths (file=...); default: everything (all) */
  readonly files?: readonly string[];
  /**
   * Restore-time plugin options (bconsole: mod → Plugin Options). Booleans answer yes/no,
   * anything else is typed in as text.
   */
  readonly pluginOptions?: Readonly<Record<string, string | number | boolean>>;
  /**
   * which plugin string to pick in bconsole's "Plugins to configure" menu when the backup has
   * several (substring match). NB 15.0.3: the metaplugin keeps one option set per job, so the
   * options reach every pgbacula Plugin= string of the restore, whichever was picked.
   */
  readonly plugin?: string;
  readonly client?: string;
  readonly restoreJob?: string;
  /** wait for termination (default true) */
  readonly wait?: boolean;
  readonly timeoutMs?: number;
}

export interface RestoreResult extends JobResult {
  /** the complete bconsole dialogue that submitted the job */
  readonly dialogue: string;
}

// ---------------------------------------------------------------------------------------------
// The site
// ---------------------------------------------------------------------------------------------

export interface SiteOptions {
  readonly install?: BaculaInstall;
  /** use this Plugin Directory as is */
  readonly pluginDir?: string;
  /** or copy these *-fd.so files into a private Plugin Directory (symlinks are not loaded) */
  readonly plugins?: readonly string[];
  /** also copy the install's bpipe-fd.so into the private Plugin Directory */
  readonly bpipe?: boolean;
  /** parent of the site's temp dir (default: $PGBACULA_TEST_ROOT or the OS temp dir) */
  readonly parentDir?: string;
  readonly fileSets?: readonly FileSetSpec[];
  readonly jobs?: readonly JobSpec[];
  /** extra environment of bacula-fd (inherited by plugin backends) */
  readonly fdEnv?: Readonly<Record<string, string>>;
  /** further Client resources (File Daemons the caller runs) */
  readonly clients?: readonly ClientSpec[];
  /** jobs each Client and the Storage run at once (default 1) */
  readonly concurrency?: number;
  /** -d level for the daemons (their output goes to <root>/logs/<daemon>.out) */
  readonly debugLevel?: number;
  /** keep the temp dir after stop() (default: remove it unless PGBACULA_KEEP_SITE is set) */
  readonly keep?: boolean;
  readonly startTimeoutMs?: number;
}


function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let setprivPath: string | null | undefined;
function setpriv(): string | null {
  if (setprivPath === undefined) {
    setprivPath = null;
    for (const p of ['/usr/bin/setpriv', '/bin/setpriv']) {
      if (existsSync(p)) {
        try {
          execFileSync(p, ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' });
          setprivPath = p;
        } catch {
          /* unusable */
        }
        break;
      }
    }
  }
  return setprivPath;
}

/** Live children of every site in this process, killed on exit. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of liveChildren) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
}

interface Daemon {
  readonly name: 'dir' | 'sd' | 'fd';
  readonly child: ChildProcess;
  readonly out: string;
  exited: boolean;
}

export class BaculaSite {
  readonly install: BaculaInstall;
  private currentLayout: SiteLayout;
  private readonly daemons: Daemon[] = [];
  private readonly opts: SiteOptions;
  private stopped = false;

  private constructor(install: BaculaInstall, layout: SiteLayout, opts: SiteOptions) {
    this.install = install;
    this.currentLayout = layout;
    this.opts = opts;
  }

  /** names, ports, paths and the resources the Director currently has */
  get layout(): SiteLayout {
    return this.currentLayout;
  }

  get root(): string {
    return this.layout.root;
  }

  /** Write configs, create the catalog, start SD, FD and Director, wait until they listen. */
  static async start(opts: SiteOptions = {}): Promise<BaculaSite> {
    const install = opts.install ?? findBaculaInstall();
    if (!install) throw new Error('Bacula 15.0.3 install not found: run scripts/bacula-build.sh first');
    const parent = opts.parentDir ?? process.env.PGBACULA_TEST_ROOT ?? tmpdir();
    mkdirSync(parent, { recursive: true });
    const root = mkdtempSync(join(parent, 'bacula-site-'));
    const p = {
      conf: join(root, 'etc'),
      dirWork: join(root, 'dir'),
      sdWork: join(root, 'sd'),
      fdWork: join(root, 'fd'),
      volumes: join(root, 'volumes'),
      pluginDir: opts.pluginDir ?? join(root, 'plugins'),
      restore: join(root, 'restore'),
      logs: join(root, 'logs'),
      scriptdir: install.scriptdir,
    };
    for (const d of [p.conf, p.dirWork, p.sdWork, p.fdWork, p.volumes, p.restore, p.logs]) mkdirSync(d, { recursive: true });
    if (!opts.pluginDir) {
      mkdirSync(p.pluginDir, { recursive: true });
      const sos = [...(opts.plugins ?? [])];
      if (opts.bpipe) sos.push(join(install.plugindir, 'bpipe-fd.so'));
      for (const so of sos) {
        if (!/-fd\.so$/.test(so)) throw new Error(`plugin file must be named <name>-fd.so: ${so}`);
        copyFileSync(so, join(p.pluginDir, basename(so)));
      }
    }
    const pw = (): string => randomBytes(18).toString('base64url');
    const tag = basename(root).replace(/[^A-Za-z0-9]/g, '').slice(-6);
    const layout: SiteLayout = {
      root,
      names: { dir: `e2e-${tag}-dir`, fd: `e2e-${tag}-fd`, sd: `e2e-${tag}-sd` },
      ports: { dir: await freePort(), fd: await freePort(), sd: await freePort() },
      passwords: { console: pw(), fd: pw(), sd: pw() },
      paths: p,
      fileSets: opts.fileSets ?? [],
      jobs: opts.jobs ?? [],
      restoreJob: 'RestoreFiles',
      ...(opts.clients ? { clients: opts.clients } : {}),
      ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
    };
    const site = new BaculaSite(install, layout, opts);
    try {
      site.createCatalog(); // the Director's config test (-t) opens the catalog
      site.writeConfigs();
      await site.startDaemons();
    } catch (e) {
      await site.stop();
      throw e;
    }
    return site;
  }

  private confPath(which: 'dir' | 'sd' | 'fd' | 'bconsole'): string {
    return join(this.layout.paths.conf, `${which}.conf`);
  }

  private writeConfigs(): void {
    const l = this.layout;
    writeFileSync(this.confPath('dir'), directorConfig(l), { mode: 0o600 });
    writeFileSync(this.confPath('sd'), storageConfig(l), { mode: 0o600 });
    writeFileSync(this.confPath('fd'), fileDaemonConfig(l), { mode: 0o600 });
    writeFileSync(this.confPath('bconsole'), bconsoleConfig(l), { mode: 0o600 });
    for (const [bin, conf] of [[this.install.dir, 'dir'], [this.install.sd, 'sd'], [this.install.fd, 'fd']] as const) {
      try {
        execFileSync(bin, ['-t', '-c', this.confPath(conf)], { stdio: 'pipe', encoding: 'utf8' });
      } catch (e) {
        const err = e as { stdout?: string; stderr?: string };
        throw new Error(`${conf}.conf rejected by ${basename(bin)} -t: ${err.stdout ?? ''}${err.stderr ?? ''}`);
      }
    }
  }

  /** sqlite3 catalog <dirWork>/bacula.db from the install's own scripts. */
  private createCatalog(): void {
    const env = { ...process.env, db_name: join(this.layout.paths.dirWork, 'bacula') };
    for (const s of ['create_sqlite3_database', 'make_sqlite3_tables']) {
      execFileSync(join(this.install.scriptdir, s), [], { env, stdio: 'pipe', cwd: this.layout.paths.dirWork });
    }
    if (!existsSync(join(this.layout.paths.dirWork, 'bacula.db'))) throw new Error('catalog creation produced no bacula.db');
  }

  private spawnDaemon(name: 'dir' | 'sd' | 'fd', bin: string, env: NodeJS.ProcessEnv): Daemon {
    const out = join(this.layout.paths.logs, `${name}.out`);
    const fd = openSync(out, 'a');
    const args = ['-f', '-c', this.confPath(name)];
    if (this.opts.debugLevel) args.push('-d', String(this.opts.debugLevel), '-dt');
    const sp = setpriv();
    const [cmd, argv] = sp ? [sp, ['--pdeathsig', 'KILL', '--', bin, ...args]] : [bin, args];
    const child = spawn(cmd, argv, { stdio: ['ignore', fd, fd], env, cwd: this.layout.root });
    closeSync(fd);
    const d: Daemon = { name, child, out, exited: false };
    liveChildren.add(child);
    installExitHook();
    child.once('exit', () => {
      d.exited = true;
      liveChildren.delete(child);
    });
    child.once('error', () => {
      d.exited = true;
      liveChildren.delete(child);
    });
    this.daemons.push(d);
    return d;
  }

  private async startDaemons(): Promise<void> {
    const timeout = this.opts.startTimeoutMs ?? 20_000;
    const { install, layout } = this;
    const plan: Array<['dir' | 'sd' | 'fd', string, number, NodeJS.ProcessEnv]> = [
      ['sd', install.sd, layout.ports.sd, process.env],
      ['fd', install.fd, layout.ports.fd, { ...process.env, ...(this.opts.fdEnv ?? {}) }],
      ['dir', install.dir, layout.ports.dir, process.env],
    ];
    for (const [name, bin, port, env] of plan) {
      const d = this.spawnDaemon(name, bin, env);
      const deadline = Date.now() + timeout;
      for (;;) {
        if (d.exited) throw new Error(`bacula-${name} exited during start-up:\n${this.tail(d.out)}`);
        if (await canConnect(port)) break;
        if (Date.now() > deadline) throw new Error(`bacula-${name} did not listen on ${port} within ${timeout} ms:\n${this.tail(d.out)}`);
        await sleep(100);
      }
    }
  }

  private tail(file: string, lines = 40): string {
    try {
      return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** The process id of a running daemon (e.g. to freeze the FD with SIGSTOP). */
  daemonPid(name: 'dir' | 'sd' | 'fd'): number {
    const d = this.daemons.find((x) => x.name === name && !x.exited);
    if (!d?.child.pid) throw new Error(`bacula-${name} is not running`);
    return d.child.pid;
  }

  /**
   * Stop a daemon (SIGTERM, as `systemctl restart` does; SIGKILL for a crash) and start it again
   * on the same port and configuration.
   */
  async restartDaemon(name: 'dir' | 'sd' | 'fd', signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const d = this.daemons.find((x) => x.name === name && !x.exited);
    if (d) {
      d.child.kill(signal);
      const deadline = Date.now() + 10_000;
      while (!d.exited && Date.now() < deadline) await sleep(20);
      if (!d.exited) d.child.kill('SIGKILL');
      while (!d.exited) await sleep(20);
      this.daemons.splice(this.daemons.indexOf(d), 1);
    }
    const bin = { dir: this.install.dir, sd: this.install.sd, fd: this.install.fd }[name];
    const env = name === 'fd' ? { ...process.env, ...(this.opts.fdEnv ?? {}) } : process.env;
    const port = this.layout.ports[name];
    // The old socket may linger in TIME_WAIT; the daemons set SO_REUSEADDR, so only wait for listen.
    const nd = this.spawnDaemon(name, bin, env);
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 20_000);
    for (;;) {
      if (nd.exited) throw new Error(`bacula-${name} exited during restart:\n${this.tail(nd.out)}`);
      if (await canConnect(port)) return;
      if (Date.now() > deadline) throw new Error(`bacula-${name} did not listen on ${port} after a restart:\n${this.tail(nd.out)}`);
      await sleep(100);
    }
  }

  /** Daemon output (debug lines when debugLevel is set), e.g. for failure messages. */
  daemonOutput(name: 'dir' | 'sd' | 'fd'): string {
    return this.tail(join(this.layout.paths.logs, `${name}.out`), 400);
  }

  // ---- bconsole ---------------------------------------------------------------------------

  /**
   * Run bconsole with these command lines on stdin (answers to prompts are just further
   * lines). Returns everything bconsole printed. bconsole ends at end of input.
   */
  async bconsole(commands: string, timeoutMs = 120_000): Promise<string> {
    if (this.stopped) throw new Error('site stopped');
    const input = commands.endsWith('\n') ? commands : commands + '\n';
    return await new Promise<string>((res, rej) => {
      const child = spawn(this.install.bconsole, ['-n', '-c', this.confPath('bconsole')], {
        stdio: ['pipe', 'pipe', 'pipe'],
        cwd: this.layout.root,
      });
      const chunks: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => chunks.push(b));
      child.stderr.on('data', (b: Buffer) => chunks.push(b));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        rej(new Error(`bconsole timed out after ${timeoutMs} ms; input:\n${input}\noutput:\n${Buffer.concat(chunks).toString('utf8')}`));
      }, timeoutMs);
      child.once('error', (e) => {
        clearTimeout(timer);
        rej(e);
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        if (code !== 0 && !text.includes('1000 OK')) rej(new Error(`bconsole failed (exit ${code}):\n${text}`));
        else res(text);
      });
      child.stdin.on('error', () => undefined); // bconsole may exit before reading everything
      child.stdin.end(input);
    });
  }

  /** Parse the JSON line of a `.jlist` command. */
  private static jlist(text: string): Array<Record<string, string>> {
    const line = text.split('\n').find((l) => l.startsWith('{"type"'));
    if (!line) return [];
    const obj = JSON.parse(line) as { data?: Array<Record<string, string>> };
    return obj.data ?? [];
  }

  /** The catalog row of a job (`.jlist jobid=N`), or undefined before it exists. */
  async jobRecord(jobId: number): Promise<Record<string, string> | undefined> {
    const rows = BaculaSite.jlist(await this.bconsole(`.jlist jobid=${jobId}`));
    return rows.find((r) => r.jobid === String(jobId));
  }

  /** The job log from the catalog (`.jlist joblog jobid=N`, i.e. `list joblog`). */
  async jobLog(jobId: number): Promise<string> {
    const rows = BaculaSite.jlist(await this.bconsole(`.jlist joblog jobid=${jobId}`));
    // 15.0.3 stores each entry with a trailing "\n" and prints a "\" continuation mark after it
    return rows.map((r) => (r.logtext ?? '').replace(/\n?\\?$/, '').replace(/\n$/, '')).join('\n');
  }

  /** Poll the catalog until the job reaches a terminal status; return its summary and log. */
  async waitJob(jobId: number, timeoutMs = 600_000): Promise<JobResult> {
    const deadline = Date.now() + timeoutMs;
    let rec: Record<string, string> | undefined;
    for (;;) {
      rec = await this.jobRecord(jobId);
      if (rec && TERMINAL_JOB_STATUS.has(rec.jobstatus ?? '')) break;
      if (Date.now() > deadline) {
        // Where it stood: a hang is otherwise undiagnosable after the site is torn down.
        const said = async (what: string, p: Promise<string>): Promise<string> => `--- ${what}:\n${await p.catch((e: unknown) => `(${(e as Error).message})`)}`;
        const context = [
          await said('job log so far', this.jobLog(jobId)),
          await said('status dir', this.bconsole('status dir', 20_000)),
          await said('status client', this.bconsole('status client', 20_000)),
          ...this.daemons.map((d) => `--- bacula-${d.name} output:\n${this.tail(d.out)}`),
        ].join('\n');
        throw new Error(`job ${jobId} not finished after ${timeoutMs} ms (status ${rec?.jobstatus ?? '?'})\n${context}`);
      }
      for (const d of this.daemons) {
        if (d.exited) throw new Error(`bacula-${d.name} died while job ${jobId} was running:\n${this.tail(d.out)}`);
      }
      await sleep(300);
    }
    return {
      jobId,
      status: rec.jobstatus ?? '?',
      statusLong: rec.jobstatuslong ?? '',
      errors: Number(rec.joberrors ?? 0),
      files: Number(rec.jobfiles ?? 0),
      bytes: Number(rec.jobbytes ?? 0),
      log: await this.jobLog(jobId),
    };
  }

  private static queuedJobId(text: string): number {
    const m = /Job queued\. JobId=(\d+)/.exec(text);
    if (!m) throw new Error(`job was not queued:\n${text}`);
    return Number(m[1]);
  }

  /** `run job=<name> level=<level> yes` and wait for the job to terminate. */
  async runJob(name: string, level: 'Full' | 'Incremental' | 'Differential' = 'Full', timeoutMs = 600_000): Promise<JobResult> {
    const out = await this.bconsole(`run job=${quoteArg(name)} level=${level} yes`);
    return await this.waitJob(BaculaSite.queuedJobId(out), timeoutMs);
  }

  /**
   * Queue several jobs from one bconsole session, so the Director has them all before it starts
   * any (separate bconsole processes reach it seconds apart on a loaded machine), and wait for all.
   */
  async runJobsTogether(jobs: readonly { name: string; level?: 'Full' | 'Incremental' | 'Differential' }[], timeoutMs = 600_000): Promise<JobResult[]> {
    const out = await this.bconsole(jobs.map((j) => `run job=${quoteArg(j.name)} level=${j.level ?? 'Full'} yes`).join('\n'));
    const ids = [...out.matchAll(/Job queued\. JobId=(\d+)/g)].map((m) => Number(m[1]));
    if (ids.length !== jobs.length) throw new Error(`${jobs.length} jobs asked for, ${ids.length} queued:\n${out}`);
    return await Promise.all(ids.map((id) => this.waitJob(id, timeoutMs)));
  }

  /** `estimate job=<name> level=<level> listing`. */
  async estimate(job: string, level: 'Full' | 'Incremental' | 'Differential' = 'Full', listing = true): Promise<EstimateResult> {
    const raw = await this.bconsole(`estimate job=${quoteArg(job)} level=${level}${listing ? ' listing' : ''}`);
    const m = /2000 OK estimate files=([\d,]+) bytes=([\d,]+)/.exec(raw);
    if (!m) throw new Error(`estimate failed:\n${raw}`);
    const num = (s: string): number => Number(s.replace(/,/g, ''));
    const lines = raw.split('\n').filter((l) => /^[-dlcbps][rwxsStT-]{9}\s/.test(l));
    return { files: num(m[1]!), bytes: num(m[2]!), listing: lines, raw };
  }

  /** Catalog file names of a job (`list files jobid=N`). */
  async listFiles(jobId: number): Promise<string[]> {
    const out = await this.bconsole(`list files jobid=${jobId}`);
    const files: string[] = [];
    let inTable = false;
    for (const line of out.split('\n')) {
      if (/^\|\s*Filename\s*\|$/.test(line)) {
        inTable = true;
        continue;
      }
      if (!inTable) continue;
      if (line.startsWith('+')) {
        if (files.length) break;
        continue;
      }
      const m = /^\| (.*?)\s*\|$/.exec(line);
      if (m) files.push(m[1]!);
      else break;
    }
    return files;
  }

  /**
   * Restore (all files, or `files`) from one or more backup jobs.
   *
   * Without plugin options: `restore jobid=.. client=.. where=.. [file=..]|all done yes`.
   * With plugin options (15.0.3 Community has no command-line keyword for them —
   * `pluginrestoreconf=` is Enterprise-only and makes the command fail): the interactive
   * dialogue is scripted: `mod` → `13` (Plugin Options) → [plugin number] → for each option
   * `mod` → <option number> → <value> → `yes` (use configuration) → `yes` (run). The option
   * and plugin numbers are read from a first dialogue that is abandoned before the job runs.
   */
  async restore(opts: RestoreOptions): Promise<RestoreResult> {
    const jobIds = Array.isArray(opts.jobId) ? (opts.jobId as readonly number[]) : opts.jobId === undefined ? [] : [opts.jobId as number];
    if (!jobIds.length && !opts.selection) throw new Error('restore needs jobId or selection');
    const parts = [
      'restore',
      opts.selection ?? `jobid=${jobIds.join(',')}`,
      `client=${quoteArg(opts.client ?? this.layout.names.fd)}`,
      `restorejob=${quoteArg(opts.restoreJob ?? this.layout.restoreJob)}`,
    ];
    if (opts.regexWhere !== undefined) parts.push(`regexwhere=${quoteArg(opts.regexWhere)}`);
    else parts.push(`where=${quoteArg(opts.where ?? this.layout.paths.restore)}`);
    if (opts.replace) parts.push(`replace=${opts.replace}`);
    if (opts.files?.length) for (const f of opts.files) parts.push(`file=${quoteArg(f)}`);
    else parts.push('all', 'done');
    const cmd = parts.join(' ');

    let dialogue: string;
    const pluginOptions = opts.pluginOptions ?? {};
    if (Object.keys(pluginOptions).length === 0) {
      dialogue = await this.bconsole(`${cmd} yes`);
    } else {
      // 1st dialogue: learn the menus, then leave without running anything.
      let probe = await this.bconsole(`${cmd}\nmod\n${RESTORE_MOD_PLUGIN_OPTIONS}\n`);
      let pluginAnswer: string[] = [];
      const pluginMenu = menuAfter(probe, 'Plugins to configure:');
      if (pluginMenu.length) {
        const want = opts.plugin;
        const idx = pluginMenu.findIndex((m) => (want ? m.text.includes(want) : true));
        if (idx < 0 || (!want && pluginMenu.length > 1)) {
          throw new Error(`several plugins to configure, pass restore({plugin}) to pick one of: ${pluginMenu.map((m) => m.text).join(' | ')}`);
        }
        pluginAnswer = [String(pluginMenu[idx]!.n)];
        probe = await this.bconsole(`${cmd}\nmod\n${RESTORE_MOD_PLUGIN_OPTIONS}\n${pluginAnswer[0]}\nmod\n`);
      } else if (!/Automatically selected/.test(probe)) {
        throw new Error(`no plugin options offered for this restore:\n${probe}`);
      } else {
        probe = await this.bconsole(`${cmd}\nmod\n${RESTORE_MOD_PLUGIN_OPTIONS}\nmod\n`);
      }
      const optionMenu = menuAfter(probe, 'You have the following choices:');
      if (!optionMenu.length) throw new Error(`could not read the Plugin Options menu:\n${probe}`);
      const answers = [cmd, 'mod', String(RESTORE_MOD_PLUGIN_OPTIONS), ...pluginAnswer];
      for (const [k, v] of Object.entries(pluginOptions)) {
        const item = optionMenu.find((m) => m.text === k || m.text.startsWith(k + ' '));
        if (!item) throw new Error(`plugin option ${k} is not offered; menu: ${optionMenu.map((m) => m.text).join(' | ')}`);
        answers.push('mod', String(item.n), typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v));
      }
      answers.push('yes', 'yes');
      dialogue = await this.bconsole(answers.join('\n'));
      if (!/Plugin Options:\s+User specified/.test(dialogue)) {
        throw new Error(`plugin options were not accepted:\n${dialogue}`);
      }
    }
    const jobId = BaculaSite.queuedJobId(dialogue);
    if (opts.wait === false) {
      return { jobId, status: '?', statusLong: '', errors: 0, files: 0, bytes: 0, log: '', dialogue };
    }
    return { ...(await this.waitJob(jobId, opts.timeoutMs)), dialogue };
  }

  /** `reload` after replacing the FileSets/Jobs of the Director. */
  async redefine(fileSets: readonly FileSetSpec[], jobs: readonly JobSpec[]): Promise<void> {
    this.currentLayout = { ...this.currentLayout, fileSets, jobs };
    writeFileSync(this.confPath('dir'), directorConfig(this.layout), { mode: 0o600 });
    const out = await this.bconsole('reload');
    if (/error/i.test(out)) throw new Error(`reload failed:\n${out}`);
  }

  /** Kill the daemons (SIGTERM, then SIGKILL after 5 s) and remove the temp dir. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(
      this.daemons.map(async (d) => {
        if (d.exited) return;
        d.child.kill('SIGTERM');
        const deadline = Date.now() + 5_000;
        while (!d.exited && Date.now() < deadline) await sleep(50);
        if (!d.exited) {
          d.child.kill('SIGKILL');
          while (!d.exited) await sleep(20);
        }
      }),
    );
    const keep = this.opts.keep ?? Boolean(process.env.PGBACULA_KEEP_SITE);
    if (!keep) rmSync(this.layout.root, { recursive: true, force: true });
  }
}

/** In the restore "Parameters to modify" menu of 15.0.3, entry 13 is "Plugin Options". */
const RESTORE_MOD_PLUGIN_OPTIONS = 13;

/** Quote a bconsole command-line value when needed. */
function quoteArg(s: string): string {
  return /[\s"]/.test(s) || s === '' ? `"${s.replace(/"/g, '\\"')}"` : s;
}

/** The numbered menu printed after `title` (lines "   N: text"), last occurrence. */
function menuAfter(text: string, title: string): Array<{ n: number; text: string }> {
  const at = text.lastIndexOf(title);
  if (at < 0) return [];
  const items: Array<{ n: number; text: string }> = [];
  for (const line of text.slice(at + title.length).split('\n').slice(1)) {
    const m = /^\s+(\d+): (.*?)\s*$/.exec(line);
    if (!m) {
      if (items.length) break;
      continue;
    }
    items.push({ n: Number(m[1]), text: m[2]! });
  }
  return items;
}
