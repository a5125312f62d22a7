/**
 * What a job tells its operator. The CLI writes it to stderr; the Bacula sink turns it into job
 * messages (info / warning). Secrets never reach it: callers pass operator text, and every
 * writer scrubs it again.
 */
export interface JobLog {
  info(text: string): void;
  warning(text: string): void;
  progress(p: ProgressSnapshot): void;
}

export interface ProgressSnapshot {
  readonly what: string;
  readonly doneBytes: number;
  readonly totalBytes: number;
  readonly bytesPerSecond: number;
  /** Seconds left at the current rate, or undefined when not yet known. */
  readonly etaSeconds: number | undefined;
}

export const silentLog: JobLog = { info: () => undefined, warning: () => undefined, progress: () => undefined };

const MiB = 1024 * 1024;

export function formatBytes(n: number): string {
  if (n >= 1024 * MiB) return `${(n / (1024 * MiB)).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/** 1234567 → "1,234,567" (as toLocaleString('en-US') gives, without loading the locale data at a job's start). */
export function formatCount(n: number): string {
  if (!Number.isInteger(n)) return n.toLocaleString('en-US');
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

export function formatProgress(p: ProgressSnapshot): string {
  const pct = p.totalBytes > 0 ? ` (${((100 * p.doneBytes) / p.totalBytes).toFixed(1)} %)` : '';
  const eta = p.etaSeconds === undefined ? '' : `, ETA ${Math.ceil(p.etaSeconds)} s`;
  return `${p.what}: ${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}${pct}, ${(p.bytesPerSecond / 1e6).toFixed(1)} MB/s${eta}`;
}

/** Calls log.progress on a steady interval while work goes on; stop() ends it. */
export class ProgressTracker {
  private done = 0;
  private readonly t0 = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: JobLog,
    private readonly what: string,
    private readonly totalBytes: number,
    intervalMs: number,
  ) {
    if (intervalMs > 0) {
      this.timer = setInterval(() => this.log.progress(this.snapshot()), intervalMs);
      this.timer.unref();
    }
  }

  add(bytes: number): void {
    this.done += bytes;
  }

  get doneBytes(): number {
    return this.done;
  }

  snapshot(): ProgressSnapshot {
    const seconds = Math.max(0.001, (Date.now() - this.t0) / 1000);
    const rate = this.done / seconds;
    return {
      what: this.what,
      doneBytes: this.done,
      totalBytes: this.totalBytes,
      bytesPerSecond: rate,
      etaSeconds: rate > 0 && this.totalBytes >= this.done ? (this.totalBytes - this.done) / rate : undefined,
    };
  }

  elapsedSeconds(): number {
    return (Date.now() - this.t0) / 1000;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
