import { getBool, getInt, getString } from '../config/params.js';
import { assertSlotName } from '../server/replication.js';
import { runWalReceiver } from '../archive/receiver.js';
import type { CommandContext } from './context.js';
import { ok, type CommandResult } from './result.js';
import { walTarget } from './wal-target.js';

/**
 * `pgbacula wal-receive [--repo DIR] [--slot-name S] [--create-slot] [--synchronous-receive]` —
 * streams WAL into the archive until SIGTERM/SIGINT (then exit 0 after a clean stop).
 */
export async function runWalReceiveCommand(ctx: CommandContext): Promise<CommandResult> {
  const target = await walTarget(ctx, true);
  const slotName = getString(ctx.params, 'slot_name') ?? '';
  if (slotName !== '') assertSlotName(slotName);
  else ctx.log.warning('no replication slot (slot_name is empty): WAL written while the receiver is down or behind can be removed by the server before it is archived');
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    ctx.log.info(`wal-receive: archiving into ${target.root} (${target.describe})`);
    const s = await runWalReceiver({
      connection: ctx.connection(),
      root: target.root,
      singleSystem: target.singleSystem,
      slot: slotName === '' ? undefined : slotName,
      createSlot: getBool(ctx.params, 'create_slot'),
      synchronous: getBool(ctx.params, 'synchronous_receive'),
      applicationName: getString(ctx.params, 'application_name')!,
      statusIntervalMs: getInt(ctx.params, 'status_interval') * 1000,
      signal: controller.signal,
      log: ctx.log,
    });
    const text = `wal-receive stopped: ${s.segments} segment(s) archived${s.historyFiles.length ? `, ${s.historyFiles.join(', ')}` : ''}${s.timelineSwitches ? `, ${s.timelineSwitches} timeline switch(es)` : ''}${s.reconnects ? `, ${s.reconnects} reconnect(s)` : ''}`;
    return ok({ ...s, archive: target.root }, text);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
