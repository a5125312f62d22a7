/**
 * `pgbacula backend`: the process the Bacula FD starts through the pgbacula-fd.so shim (via a
 * launcher script, since the FD cannot pass arguments). It speaks the metaplugin protocol on
 * stdin/stdout until `T` or end of input and then exits 0 — always 0: any other status is an
 * extra job error, and the FD waits for the exit without a timeout.
 *
 * Process rules: stdout carries packets only (one writer); nothing reaches
 * stderr (every byte there is a job error) — failures travel as `A` packets; SIGUSR1 is Bacula's
 * cancel (without a listener Node would open its inspector); every child process and staging
 * directory goes with us on every exit path.
 */
import { Conversation } from '../../bacula/conversation.js';
import { PacketReader, PacketWriter } from '../../bacula/channel.js';
import { abortText } from '../../bacula/conversation.js';
import { serializePacket } from '../../bacula/packet.js';
import { killAllToolsNow, stopAllTools } from '../../server/tool-process.js';
import { removeAllScratchNow } from '../../pipeline/scratch-dirs.js';
import type { CommandContext } from '../context.js';
import type { CommandResult } from '../result.js';
import { pgbaculaJobs } from './jobs.js';

/** Progress lines in the Bacula job log: every 30 s unless PGBACULA_PROGRESS_SECONDS says otherwise (0 = none). */
export function backendProgressIntervalMs(env: Readonly<Record<string, string | undefined>>): number {
  const v = env.PGBACULA_PROGRESS_SECONDS;
  if (v !== undefined && /^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  return 30_000;
}

export async function runBackend(ctx: CommandContext): Promise<CommandResult> {
  let exiting = false;
  const exitNow = (): never => {
    killAllToolsNow();
    removeAllScratchNow();
    process.exit(0);
  };
  process.on('exit', () => {
    killAllToolsNow();
    removeAllScratchNow();
  });
  // Silence: no runtime warning may reach stderr.
  process.removeAllListeners('warning');
  process.on('warning', () => undefined);

  const reader = new PacketReader(process.stdin);
  const writer = new PacketWriter(process.stdout);
  const conversation = new Conversation(reader, writer, pgbaculaJobs({ env: ctx.env, progressIntervalMs: backendProgressIntervalMs(ctx.env) }));

  const stop = (): void => {
    // Cancel (SIGUSR1 from the FD), or a termination signal: stop the work and every child,
    // write nothing more, exit 0.
    if (exiting) return;
    exiting = true;
    writer.silence();
    conversation.cancel();
    void stopAllTools(1000).finally(exitNow);
  };
  process.on('SIGUSR1', stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => undefined);

  const fatal = (e: unknown): void => {
    // A defect of ours: fail the job with the reason (A), never a stack trace on stderr.
    if (exiting) return;
    exiting = true;
    const done = (): void => void stopAllTools(500).finally(exitNow);
    if (writer.isSilenced) return done();
    const timer = setTimeout(done, 2000);
    process.stdout.write(serializePacket({ kind: 'abort', text: abortText(e) }), () => {
      clearTimeout(timer);
      done();
    });
    writer.silence();
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);

  await conversation.run();
  if (!exiting) {
    exiting = true;
    await stopAllTools(1000);
    exitNow();
  }
  // Not reached: the process ends above. (Returning would print a result on stdout.)
  return await new Promise<CommandResult>(() => undefined);
}
