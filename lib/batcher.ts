// Dynamic batching: concurrent submissions coalesce into batches that run one at a time (the model's
// threads already use every core), grouped by length so little compute goes to padding, among the oldest
// waiting so that tail latency stays bounded.

/** Rejects a submission when the queue is at its bound; servers answer it with 429. */
export class QueueFullError extends Error {
  readonly code = 'QUEUE_FULL';
  constructor(limit: number) {
    super(`the batch queue is full (${limit} waiting); retry later`);
    this.name = 'QueueFullError';
  }
}

/** Rejects submissions after close(). */
export class BatcherClosedError extends Error {
  readonly code = 'BATCHER_CLOSED';
  constructor() {
    super('the batcher is closed');
    this.name = 'BatcherClosedError';
  }
}

export interface BatcherOptions {
  /** most items in one batch (default 32) */
  maxBatchSize?: number;
  /** most padded tokens in one batch: items x longest item (default 16384) */
  maxBatchTokens?: number;
  /**
   * how long the first waiting item may wait for others before its batch runs (default 5 ms). After
   * three waits in a row in which no other item came, an idle batcher runs items at once (a lone
   * caller pays no wait), until items arrive while a batch runs.
   */
  maxWaitMs?: number;
  /** most items waiting; beyond it submit() rejects with QueueFullError (default 4096) */
  maxQueue?: number;
}

export interface BatchInfo {
  size: number;
  /** longest item x size: what the model computes */
  paddedTokens: number;
  /** the items' own lengths summed */
  tokens: number;
  ms: number;
  failed: boolean;
}

interface Pending<I, O> {
  item: I;
  length: number;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
  seq: number;
}

/**
 * Coalesces submit() calls into calls of `run(items)`, which returns one result per item in order.
 * A batch that throws is retried item by item, so an error fails only the items that cause it.
 * @example const b = new Batcher((xs) => model(xs), (x) => x.ids.length, { maxBatchSize: 16 }); await b.submit(x)
 */
export class Batcher<I, O> {
  readonly options: Required<BatcherOptions>;
  /** called after every batch (metrics) */
  onBatch?: (info: BatchInfo) => void;
  #queue: Pending<I, O>[] = [];
  #running = false;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  #seq = 0;
  #idle: (() => void)[] = [];
  /** Consecutive waits for companions that found none. */
  #lonelyWaits = 0;
  /** Whether items came while the last batch ran (before its results were handed out). */
  #arrivedDuringRun = false;
  static readonly #LONELY_WAITS = 3;

  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly lengthOf: (item: I) => number,
    opts: BatcherOptions = {},
  ) {
    const o = { maxBatchSize: 32, maxBatchTokens: 16384, maxWaitMs: 5, maxQueue: 4096, ...opts };
    for (const k of ['maxBatchSize', 'maxBatchTokens', 'maxQueue'] as const) {
      if (!Number.isInteger(o[k]) || o[k] < 1) throw new RangeError(`${k} must be a positive integer, got ${o[k]}`);
    }
    if (!(o.maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must be >= 0, got ${o.maxWaitMs}`);
    this.options = o;
  }

  /** Items waiting (not counting the batch that runs). */
  get queueDepth(): number {
    return this.#queue.length;
  }
  get running(): boolean {
    return this.#running;
  }
  /** Whether an item submitted to an idle batcher now waits up to maxWaitMs for companions. */
  get waitsForCompanions(): boolean {
    return this.options.maxWaitMs > 0 && this.#lonelyWaits < Batcher.#LONELY_WAITS;
  }

  submit(item: I): Promise<O> {
    if (this.#closed) return Promise.reject(new BatcherClosedError());
    if (this.#queue.length >= this.options.maxQueue) return Promise.reject(new QueueFullError(this.options.maxQueue));
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ item, length: this.lengthOf(item), resolve, reject, seq: this.#seq++ });
      this.#schedule();
    });
  }

  /** Resolves once nothing waits or runs. */
  drain(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  /** Runs what waits now instead of after maxWaitMs (when no batch is running). */
  flush(): void {
    this.#flush();
  }

  /** Refuses new items; what was submitted runs at once (no more waiting for companions). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#flush();
    await this.drain();
  }

  #schedule(): void {
    if (this.#running || this.#queue.length === 0) return;
    if (this.#queue.length >= this.options.maxBatchSize || !this.waitsForCompanions) {
      this.#flush();
      return;
    }
    if (!this.#timer) this.#timer = setTimeout(() => this.#flush(true), this.options.maxWaitMs);
  }

  /**
   * The oldest item anchors the batch; the items closest to it in length join it, chosen among the oldest
   * 2 x maxBatchSize waiting so that none is passed over for long (tail latency stays near the median).
   */
  #take(): Pending<I, O>[] {
    const q = this.#queue;
    const anchor = q[0];
    const window = 2 * this.options.maxBatchSize;
    const rest = q.slice(1, window).sort((a, b) => Math.abs(a.length - anchor.length) - Math.abs(b.length - anchor.length) || a.seq - b.seq);
    const batch = [anchor];
    let longest = anchor.length;
    for (const p of rest) {
      if (batch.length >= this.options.maxBatchSize) break;
      const l = Math.max(longest, p.length);
      if (l * (batch.length + 1) > this.options.maxBatchTokens) continue;
      batch.push(p);
      longest = l;
    }
    const taken = new Set(batch);
    this.#queue = q.filter((p) => !taken.has(p));
    return batch;
  }

  #flush(afterWait = false): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#running || this.#queue.length === 0) return;
    if (afterWait) this.#lonelyWaits = this.#queue.length > 1 ? 0 : this.#lonelyWaits + 1;
    this.#running = true;
    const batch = this.#take();
    void this.#execute(batch).finally(() => {
      this.#running = false;
      // Whatever arrived while the model ran has already waited: run it at once. Such arrivals are load,
      // under which waiting for companions pays again (a caller's next item, submitted as its result
      // came, is not).
      if (this.#arrivedDuringRun) this.#lonelyWaits = 0;
      if (this.#queue.length) this.#flush();
      else for (const r of this.#idle.splice(0)) r();
    });
  }

  async #execute(batch: Pending<I, O>[]): Promise<void> {
    const t0 = performance.now();
    const tokens = batch.reduce((s, p) => s + p.length, 0);
    const padded = Math.max(...batch.map((p) => p.length)) * batch.length;
    try {
      const out = await this.run(batch.map((p) => p.item));
      this.#arrivedDuringRun = this.#queue.length > 0;
      if (!Array.isArray(out) || out.length !== batch.length) throw new Error(`batch function returned ${Array.isArray(out) ? out.length : typeof out} results for ${batch.length} items`);
      this.onBatch?.({ size: batch.length, paddedTokens: padded, tokens, ms: performance.now() - t0, failed: false });
      batch.forEach((p, i) => p.resolve(out[i]));
    } catch (e) {
      this.onBatch?.({ size: batch.length, paddedTokens: padded, tokens, ms: performance.now() - t0, failed: true });
      if (batch.length === 1) {
        batch[0].reject(e);
        return;
      }
      // Isolate the failing items: each alone, so the others still get their results.
      for (const p of batch) await this.#execute([p]);
    }
  }
}
