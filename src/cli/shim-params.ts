import { PARAMETERS } from '../config/schema.js';
import type { CommandContext } from '../command/context.js';
import { ok, type CommandResult } from '../command/result.js';

/**
 * The FD refuses a restore-time key that the shim does not list ("Restore Error"), so the
 * shim's list is generated from the schema at build time: exactly the keys a plugin string
 * may carry, and the restore options bconsole offers under `mod` → Plugin Options.
 */
export function shimParameterList(): { params: string[]; restoreOptions: { name: string; type: 'string' | 'bool'; doc: string }[] } {
  const inPlugin = PARAMETERS.filter((p) => p.inPluginString);
  return {
    params: inPlugin.map((p) => p.name),
    // Only string and bool: other option types are a fatal "Unsupported parameter handler"
    // in the 15.0.3 FD, so numbers travel as strings.
    restoreOptions: PARAMETERS.filter((p) => p.restoreOption).map((p) => ({
      name: p.name,
      type: p.type === 'bool' ? 'bool' : 'string',
      doc: p.doc,
    })),
  };
}

export async function runShimParams(_ctx: CommandContext): Promise<CommandResult> {
  const list = shimParameterList();
  return ok(list, list.params.join('\n'));
}
