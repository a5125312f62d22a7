/**
 * Run tasks concurrently and yield their results strictly in plan order, with a window of
 * bytes in flight as the only throttle. A task's bytes count
 * from dispatch until the consumer asks for the result after it — so memory is bounded by the
 * window whatever the cluster size, and a slow sink (the consumer awaiting its write) stops
 * dispatch instead of letting results pile up.
 */
export interface PlannedTask<R> {
  /** Bytes this task's result will hold in memory (e.g. the range length). */
  readonly bytes: number;
  start(): Promise<R>;
}

export interface MergeOptions {
  readonly windowBytes: number;
  /** Upper bound on tasks in flight regardless of size (many tiny files). */
  readonly maxTasks: number;
}

export interface MergeStats {
  peakBytesInFlight: number;
  peakTasksInFlight: number;
}

export async function* orderedMerge<R>(
  tasks: Iterable<PlannedTask<R>> | AsyncIterable<PlannedTask<R>>,
  options: MergeOptions,
  stats: MergeStats = { peakBytesInFlight: 0, peakTasksInFlight: 0 },
): AsyncGenerator<R> {
  const iterator: AsyncIterator<PlannedTask<R>> | Iterator<PlannedTask<R>> =
    Symbol.asyncIterator in tasks ? (tasks as AsyncIterable<PlannedTask<R>>)[Symbol.asyncIterator]() : (tasks as Iterable<PlannedTask<R>>)[Symbol.iterator]();
  const inFlight: { bytes: number; result: Promise<R> }[] = [];
  let bytesInFlight = 0;
  let held: PlannedTask<R> | undefined;
  let exhausted = false;

  const dispatch = (t: PlannedTask<R>) => {
    const result = t.start();
    // Rejections surface in order, when the consumer reaches this result; until then, mark handled.
    result.catch(() => undefined);
    inFlight.push({ bytes: t.bytes, result });
    bytesInFlight += t.bytes;
    stats.peakBytesInFlight = Math.max(stats.peakBytesInFlight, bytesInFlight);
    stats.peakTasksInFlight = Math.max(stats.peakTasksInFlight, inFlight.length);
  };

  const fill = async () => {
    while (!exhausted && inFlight.length < options.maxTasks) {
      if (!held) {
        const n = await iterator.next();
        if (n.done) {
          exhausted = true;
          break;
        }
        held = n.value;
      }
      // Always let one task run, even one larger than the window, or nothing would progress.
      if (inFlight.length > 0 && bytesInFlight + held.bytes > options.windowBytes) break;
      dispatch(held);
      held = undefined;
    }
  };

  try {
    await fill();
    while (inFlight.length > 0) {
      const head = inFlight[0]!;
      const value = await head.result;
      yield value;
      // The consumer has finished with `value` (it asked for the next one): release its bytes.
      inFlight.shift();
      bytesInFlight -= head.bytes;
      await fill();
    }
  } finally {
    // On early exit, let running tasks finish quietly; their results are dropped.
    await Promise.allSettled(inFlight.map((t) => t.result));
    await (iterator as AsyncIterator<PlannedTask<R>>).return?.();
  }
}
