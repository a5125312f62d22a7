/**
 * The job log under Bacula: operator lines become message packets (`I` info, `W` warning, `Q`
 * error without protocol effect), which the FD prints as `pgbacula: <text>` in the job log.
 * Every text is scrubbed of secrets and cut below the FD's ~2000-byte message
 * buffer.
 */
import { scrub } from '../config/redact.js';
import { formatBytes, formatProgress, type JobLog, type ProgressSnapshot } from '../item/job-log.js';
import type { MessageLevel } from './packet.js';
import type { PacketSink } from './channel.js';

/** The FD truncates a formatted message at about 2000 bytes (prefixes included). */
export const MAX_MESSAGE_BYTES = 1800;

/** Cut a text to at most `max` UTF-8 bytes without splitting a character. */
export function truncateUtf8(text: string, max = MAX_MESSAGE_BYTES): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return text;
  let end = max - 3;
  // Back up over continuation bytes (10xxxxxx) so a multi-byte character is not cut.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8') + '...';
}

/** A progress line: with a known total as the CLI prints it, otherwise bytes and rate only. */
export function progressText(p: ProgressSnapshot): string {
  if (p.totalBytes > 0) return formatProgress(p);
  return `${p.what}: ${formatBytes(p.doneBytes)}, ${(p.bytesPerSecond / 1e6).toFixed(1)} MB/s`;
}

export interface FdJobLog extends JobLog {
  /** An error the job continues after (`Q`): the job ends with errors ("Restore Error" in restores). */
  error(text: string): void;
}

export function fdJobLog(sink: PacketSink): FdJobLog {
  const say = (level: MessageLevel, text: string): void => {
    // Fire and forget: message packets are small and ordered by the one writer.
    void sink.send({ kind: 'message', level, text: truncateUtf8(scrub(text)) }).catch(() => undefined);
  };
  return {
    info: (text) => say('I', text),
    warning: (text) => say('W', text),
    error: (text) => say('Q', text),
    progress: (p) => say('I', `progress: ${progressText(p)}`),
  };
}
