/**
 * The conversation with the FD, from the handshake to `T`, as a state
 * machine over packets. It owns the order of packets; what a job does is delegated to a
 * PluginJob (configured from the Job and Params blocks by a JobFactory), which sees items, not
 * packets: backups/estimates write to an FdItemSink, restores read from the restore source.
 *
 *   Hello → Job block → Params block → <Kind>Start → work → (FINISH) → END → T
 *
 * Rules kept here: never answer the handshake with E (that silently yields an empty
 * "OK -- with warnings" job), reject bad configuration with ONE `A` and say nothing more,
 * acknowledge blocks with `F`, no data phase in estimates and listings, exit on T or EOF.
 */
import type { RawParam } from '../config/plugin-string.js';
import { parseParamLine } from '../config/plugin-string.js';
import { scrub } from '../config/redact.js';
import { asPgbaculaError, PgbaculaError } from '../errors.js';
import type { ItemSink } from '../item/item.js';
import { unexpected, type PacketSink, type PacketSource } from './channel.js';
import { FdItemSink } from './fd-sink.js';
import { fdJobLog, truncateUtf8, type FdJobLog } from './fd-job-log.js';
import { parseJobBlock, type JobInfo } from './job-info.js';
import { command, EOD, type Packet } from './packet.js';
import type { RestoreTarget } from '../item/restore-target.js';
import { runRestoreStream } from './restore-source.js';

/** Writes every item of a backup, estimate or listing into the sink. */
export type ItemProducer = (sink: ItemSink) => Promise<void>;

/** One `.query` answer line: `k=v[,k=v]` pairs (C packet) or verbatim text (D packet). */
export type QueryAnswer = { readonly pairs: string } | { readonly text: string };

export interface JobContext {
  readonly job: JobInfo;
  readonly log: FdJobLog;
  /** Aborted when the FD goes away (EOF during work) or the job is canceled. */
  readonly signal: AbortSignal;
}

/** What a configured job can do; each `prepare*` runs before the start is acknowledged. */
export interface PluginJob {
  prepareBackup(kind: 'backup' | 'estimate'): Promise<ItemProducer>;
  prepareListing(path: string): Promise<ItemProducer>;
  query(parameter: string): Promise<QueryAnswer[]>;
  prepareRestore(): Promise<RestoreTarget>;
  /** Stop child processes, remove staging. Called on every exit path. */
  dispose(): Promise<void>;
}

export interface JobFactory {
  /** Validate the Params block for this job; throw a PgbaculaError to reject it with `A`. */
  configure(params: readonly RawParam[], ctx: JobContext): Promise<PluginJob> | PluginJob;
}

export interface ConversationOptions {
  readonly plugin: string;
  readonly api: string;
  readonly namespace: string;
}

export const PGBACULA_PLUGIN: ConversationOptions = { plugin: 'pgbacula', api: '1', namespace: '@pgbacula' };

export type ConversationEnd =
  /** T received after END (or after a query). */
  | 'terminated'
  /** stdin closed: the FD is done with us (cancel, fatal error elsewhere, restore with errors). */
  | 'eof'
  /** we sent A and waited for the FD to close. */
  | 'aborted';

/** Anything that can drain the rest of the input after an abort. */
export interface DrainableSource extends PacketSource {
  drainToEnd(): Promise<void>;
}

export interface SilenceableSink extends PacketSink {
  silence(): void;
}

/** The abort text: code, message and hint on one line, no secrets, within the FD's buffer. */
export function abortText(e: unknown): string {
  const err = asPgbaculaError(e);
  return truncateUtf8(scrub(err.toOperatorText()));
}

/** The restore target of a restore refused before its first entry: says why once, takes nothing. */
class RefusedRestoreTarget implements RestoreTarget {
  private said = false;

  constructor(private readonly reason: PgbaculaError) {}

  async begin(): Promise<'skip'> {
    if (!this.said) {
      this.said = true;
      throw this.reason;
    }
    return 'skip';
  }

  async write(): Promise<void> {}

  async end(): Promise<void> {}

  async settle(): Promise<void> {}

  async finish(): Promise<void> {
    if (!this.said) throw this.reason;
  }
}

class EndOfInput extends Error {
  constructor() {
    super('end of input');
  }
}

export class Conversation {
  private readonly controller = new AbortController();
  private readonly log: FdJobLog;
  private pluginJob: PluginJob | undefined;
  private job: JobInfo | undefined;
  /** A packet read ahead while the backend worked (EOF watch), delivered next. */
  private readAhead: Promise<Packet | undefined> | undefined;

  constructor(
    private readonly fd: DrainableSource,
    private readonly out: SilenceableSink,
    private readonly factory: JobFactory,
    private readonly opts: ConversationOptions = PGBACULA_PLUGIN,
  ) {
    this.log = fdJobLog(out);
  }

  /** Cancel from outside (SIGUSR1): the running job sees its signal aborted. */
  cancel(reason = 'canceled'): void {
    this.controller.abort(new PgbaculaError('CANCELLED', reason));
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private async next(): Promise<Packet | undefined> {
    if (this.readAhead) {
      const p = this.readAhead;
      this.readAhead = undefined;
      return await p;
    }
    return await this.fd.next();
  }

  /** The next packet that is not a message (the FD sends none, but they are harmless). */
  private async expect(): Promise<Packet> {
    for (;;) {
      const p = await this.next();
      if (!p) throw new EndOfInput();
      if (p.kind === 'message') continue;
      if (p.kind === 'terminate') throw new EndOfInput();
      return p;
    }
  }

  private async expectCommand(what: string): Promise<string> {
    const p = await this.expect();
    if (p.kind !== 'command') throw unexpected(p, what);
    return p.text;
  }

  /** `C"<name>"`, then `C` lines until `F`. */
  private async readBlock(name: string): Promise<string[]> {
    const first = await this.expectCommand(`the ${name} block`);
    if (first !== name) throw unexpected({ kind: 'command', text: first }, `C"${name}"`);
    const lines: string[] = [];
    for (;;) {
      const p = await this.expect();
      if (p.kind === 'eod') return lines;
      if (p.kind !== 'command') throw unexpected(p, `a ${name} line or F`);
      lines.push(p.text);
    }
  }

  private send(p: Packet): Promise<void> {
    return this.out.send(p);
  }

  /** Run the whole conversation. Never throws: every failure becomes `A` (when it can be said). */
  async run(): Promise<ConversationEnd> {
    try {
      return await this.converse();
    } catch (e) {
      if (e instanceof EndOfInput) return 'eof';
      if (this.signal.aborted) return 'eof';
      await this.abort(e);
      return 'aborted';
    } finally {
      await this.pluginJob?.dispose().catch(() => undefined);
    }
  }

  /** Send one `A` with the reason, then say nothing more and wait for the FD to close. */
  private async abort(e: unknown): Promise<void> {
    await this.out.send({ kind: 'abort', text: abortText(e) }).catch(() => undefined);
    this.out.silence();
    this.controller.abort(asPgbaculaError(e));
    await this.pluginJob?.dispose().catch(() => undefined);
    await this.fd.drainToEnd();
  }

  private async converse(): Promise<ConversationEnd> {
    // handshake: exactly our plugin name and API, else A (never E).
    const hello = await this.expectCommand('the handshake');
    const want = `Hello ${this.opts.plugin} ${this.opts.api}`;
    if (hello !== want) {
      throw new PgbaculaError('PROTOCOL', `unexpected handshake "${hello}" (this backend speaks "${want}")`, {
        hint: 'The FD shim and the pgbacula backend come from different versions: install matching packages.',
      });
    }
    await this.send(command('Hello Bacula\n'));

    // job information.
    const job = parseJobBlock(await this.readBlock('Job'));
    this.job = job;
    await this.send(EOD);

    // parameters: validate everything before anything is read.
    const params = (await this.readBlock('Params')).map(parseParamLine);
    this.pluginJob = await this.factory.configure(params, { job, log: this.log, signal: this.signal });
    await this.send(EOD);

    // start command.
    const start = await this.expectCommand('a start command');
    switch (start) {
      case 'BackupStart':
      case 'EstimateStart':
        return await this.backup(start === 'BackupStart' ? 'backup' : 'estimate');
      case 'ListingStart':
        return await this.listing(params);
      case 'QueryStart':
        return await this.query(params);
      case 'RestoreStart':
        return await this.restore();
      default:
        throw unexpected({ kind: 'command', text: start }, 'BackupStart, EstimateStart, ListingStart, QueryStart or RestoreStart');
    }
  }

  private get pj(): PluginJob {
    if (!this.pluginJob) throw new PgbaculaError('INTERNAL', 'no configured job');
    return this.pluginJob;
  }

  /**
   * Run a producer while watching the input: the FD sends nothing during a backup, so anything
   * arriving (EOF above all) means it gave up on us — stop the work.
   */
  private async produce(producer: ItemProducer, sink: ItemSink): Promise<void> {
    const ahead = this.fd.next();
    this.readAhead = ahead;
    let watching = true;
    void ahead.then((p) => {
      if (watching && (!p || p.kind === 'terminate')) this.controller.abort(new PgbaculaError('CANCELLED', 'the FD closed the connection'));
    }, () => undefined);
    try {
      await producer(sink);
    } finally {
      watching = false;
    }
    if (this.signal.aborted) throw new EndOfInput();
  }

  private async backup(kind: 'backup' | 'estimate'): Promise<ConversationEnd> {
    const producer = await this.pj.prepareBackup(kind);
    await this.send(EOD);
    const sink = new FdItemSink(this.out, { namespace: this.namespace, dataPhase: kind === 'backup' });
    await this.produce(producer, sink);
    await this.send(EOD); // end of the item stream
    return await this.epilogue();
  }

  private async listing(params: readonly RawParam[]): Promise<ConversationEnd> {
    const path = params.find((p) => p.key.toLowerCase() === 'listing')?.value ?? '/';
    const producer = await this.pj.prepareListing(path);
    await this.send(EOD);
    await this.produce(producer, new FdItemSink(this.out, { namespace: this.namespace, dataPhase: false }));
    await this.send(EOD);
    return await this.epilogue();
  }

  private async query(params: readonly RawParam[]): Promise<ConversationEnd> {
    const parameter = params.find((p) => p.key.toLowerCase() === 'query')?.value ?? '';
    const answers = await this.pj.query(parameter);
    await this.send(EOD);
    for (const a of answers) {
      if ('pairs' in a) await this.send(command(a.pairs));
      else if (a.text.length) await this.send({ kind: 'data', data: Buffer.from(a.text, 'utf8') });
    }
    await this.send(EOD);
    // no END after a query; T follows (or EOF).
    return await this.epilogue();
  }

  private async restore(): Promise<ConversationEnd> {
    // A refusal here (non-empty target, missing parameter) must not be an `A` to RestoreStart:
    // the FD then leaves the restore job waiting on the storage daemon. It is answered `E` to the
    // first entry instead, which ends the job "Restore Error" with the reason in its log.
    let target: RestoreTarget;
    try {
      target = await this.pj.prepareRestore();
    } catch (e) {
      const err = asPgbaculaError(e);
      if (err.code === 'CANCELLED') throw e;
      target = new RefusedRestoreTarget(err);
    }
    await this.send(EOD); // never PIPE: vestigial in 15.0.3
    const end = await runRestoreStream({ next: () => this.next() }, this.out, target, {
      namespace: this.namespace,
      where: this.job?.where,
      log: this.log,
    });
    if (end === 'eof') return 'eof';
    if (end === 'terminate') return 'terminated';
    if (end === 'end') {
      await this.send(EOD);
      return await this.awaitTerminate();
    }
    return await this.epilogue();
  }

  private get namespace(): string {
    return (this.job?.namespace || this.opts.namespace).replace(/^\/+|\/+$/g, '');
  }

  /** End of a job: END → F, then T; EOF at any point is a normal end. */
  private async epilogue(): Promise<ConversationEnd> {
    for (;;) {
      const p = await this.next();
      if (!p) return 'eof';
      if (p.kind === 'terminate') return 'terminated';
      if (p.kind === 'message') continue;
      if (p.kind === 'command' && p.text === 'END') {
        await this.send(EOD);
        return await this.awaitTerminate();
      }
      if (p.kind === 'command' && p.text === 'FINISH') {
        await this.send(EOD);
        continue;
      }
      throw unexpected(p, 'END');
    }
  }

  private async awaitTerminate(): Promise<ConversationEnd> {
    for (;;) {
      const p = await this.next();
      if (!p) return 'eof';
      if (p.kind === 'terminate') return 'terminated';
      if (p.kind === 'message') continue;
      throw unexpected(p, 'T');
    }
  }
}
