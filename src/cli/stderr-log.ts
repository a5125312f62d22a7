import { scrub } from '../config/redact.js';
import { formatProgress, type JobLog, type ProgressSnapshot } from '../item/job-log.js';

/**
 * The CLI's job log: operator lines on stderr (stdout carries the command's result), a
 * one-line progress bar on a terminal, plain progress lines otherwise.
 */
export function stderrLog(write: (text: string) => void, isTty: boolean): JobLog & { finish(): void } {
  let barShown = false;
  const clearBar = () => {
    if (barShown) write('\r\x1b[K');
    barShown = false;
  };
  return {
    info(text) {
      clearBar();
      write(scrub(`pgbacula: ${text}\n`));
    },
    warning(text) {
      clearBar();
      write(scrub(`pgbacula: warning: ${text}\n`));
    },
    progress(p: ProgressSnapshot) {
      if (isTty) {
        const width = 30;
        const frac = p.totalBytes > 0 ? Math.min(1, p.doneBytes / p.totalBytes) : 0;
        const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
        write(`\r\x1b[K[${bar}] ${formatProgress(p)}`);
        barShown = true;
      } else {
        write(`pgbacula: progress: ${formatProgress(p)}\n`);
      }
    },
    finish() {
      clearBar();
    },
  };
}
