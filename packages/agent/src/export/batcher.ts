import { randomUUID } from 'node:crypto';
import { outsideRequests } from '../context/request-context';
import { channels, publish } from '../diagnostics';
import { ErgometerError } from '../errors';
import type { Exporter, WireBatch, WireCount, WireSample, WireUsers } from './wire';

/** What every batch of this process carries besides its samples. */
export type BatchHeader = Omit<WireBatch, 'batchId' | 'samples' | 'counts' | 'users' | 'agent'> & {
  agent: Omit<WireBatch['agent'], 'dropped'>;
};

/** Limits of a {@link Batcher}; the byte limits are estimates of the samples' JSON size. */
export interface BatchLimits {
  flushIntervalMs: number;
  maxBatchSamples: number;
  maxQueuedSamples: number;
  /** Default: no byte limit per batch. */
  maxBatchBytes?: number;
  /** Bound on the bytes of waiting samples plus the batch on its way. Default: none. */
  maxQueuedBytes?: number;
}

/** Where the per-minute totals of every request come from (RequestTotals). */
export interface TotalsSource {
  readonly pending: boolean;
  drain(): { counts: WireCount[]; users: WireUsers[] };
}

/**
 * Estimated bytes of `sample` in JSON, counted from its strings' lengths and a fixed allowance per
 * number: no serialization in the request path. An upper bound for ASCII strings (test/unit/batcher).
 */
export function estimateSampleBytes(sample: WireSample): number {
  // {"ts":…,"endpoint":"…","status":…,"cost":…,"wallMs":…,"weight":…}: 60 bytes of names and
  // punctuation, 6 numbers of at most 24 characters each (what JSON prints for a double).
  let bytes = 60 + 6 * 24 + sample.endpoint.length;
  if (sample.backend !== undefined) bytes += 32 + 3 * 24;
  if (sample.flags !== undefined) {
    bytes += 12;
    for (const key in sample.flags) bytes += 6 + key.length + (sample.flags[key]?.length ?? 0);
  }
  if (sample.user !== undefined) bytes += 10 + sample.user.length;
  if (sample.aborted !== undefined) bytes += 15;
  if (sample.flagsDropped !== undefined) bytes += 40;
  return bytes;
}

/**
 * Collects finished samples and hands them to the exporter in batches: when `maxBatchSamples` or
 * `maxBatchBytes` are waiting, or `flushIntervalMs` after the first sample (or the first count) waiting.
 * One batch is on its way at a time; memory is bounded by `maxQueuedSamples` and `maxQueuedBytes`
 * (waiting samples plus the batch on its way): beyond them the oldest waiting samples are dropped,
 * counted, reported in the next batch and on diagnostics_channel.
 * Never throws into the caller and never keeps the process alive.
 */
export class Batcher {
  private queue: WireSample[] = [];
  private queueBytes: number[] = [];
  private waitingBytes = 0;
  private inFlightBytes = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushScheduled = false;
  private autoFlushing = false;
  /** Samples ever added, and ever taken from the front of the queue (into a batch, or dropped). */
  private added = 0;
  private removed = 0;
  private sending: Promise<void> = Promise.resolve();
  /** Aborted by {@link flushWithin} at its deadline: the batch on its way gives up. */
  private abort = new AbortController();
  private readonly maxBatchBytes: number;
  private readonly maxQueuedBytes: number;

  constructor(
    private readonly header: BatchHeader,
    private readonly exporter: Pick<Exporter, 'send' | 'close'>,
    private readonly limits: BatchLimits,
    private readonly totals?: TotalsSource,
  ) {
    this.maxBatchBytes = limits.maxBatchBytes ?? Number.POSITIVE_INFINITY;
    this.maxQueuedBytes = limits.maxQueuedBytes ?? Number.POSITIVE_INFINITY;
  }

  add(sample: WireSample): void {
    const bytes = estimateSampleBytes(sample);
    if (this.queue.length >= this.limits.maxQueuedSamples) {
      // Drop the oldest: under a long collector outage the freshest data is the
      // most useful. A tenth at a time, so that a full queue costs one memmove
      // per 10% of its size rather than one per sample.
      this.dropOldest(Math.max(1, Math.ceil(this.limits.maxQueuedSamples / 10)));
    }
    if (this.waitingBytes + this.inFlightBytes + bytes > this.maxQueuedBytes) {
      // Same by bytes: down to 90% of what waiting samples may hold, oldest first.
      const target = 0.9 * (this.maxQueuedBytes - this.inFlightBytes) - bytes;
      let count = 0;
      let freed = 0;
      while (count < this.queue.length && this.waitingBytes - freed > target) freed += this.queueBytes[count++]!;
      if (count > 0) this.dropOldest(count);
    }
    this.queue.push(sample);
    this.added++;
    this.queueBytes.push(bytes);
    this.waitingBytes += bytes;
    if (this.queue.length >= this.limits.maxBatchSamples || this.waitingBytes >= this.maxBatchBytes) {
      this.scheduleFlush();
    } else this.armTimer();
  }

  /** Per-minute totals are waiting: make sure a batch goes within `flushIntervalMs`, samples or not. */
  notePending(): void {
    this.armTimer();
  }

  /** Samples waiting to be sent. */
  get queued(): number {
    return this.queue.length;
  }

  /** Estimated bytes held: waiting samples plus the batch on its way (retries included). */
  get queuedBytes(): number {
    return this.waitingBytes + this.inFlightBytes;
  }

  /** Sends everything queued now; resolves when every batch has been handed over (or failed). */
  async flush(): Promise<void> {
    this.clearTimer();
    while (this.queue.length > 0) await this.send(this.takeBatch());
    if (this.totals?.pending) await this.send([]);
    await this.sending;
  }

  /**
   * Sends the samples waiting now (and the totals), and resolves when every batch holding one of them
   * has been handed over (or failed). Unlike {@link flush} it ends while traffic goes on: the samples
   * added meanwhile wait for their own batch, where flush() would keep sending as long as new ones
   * arrive faster than a batch takes.
   */
  async flushQueued(): Promise<void> {
    const through = this.added;
    this.clearTimer();
    while (this.removed < through) await this.send(this.takeBatch(through - this.removed));
    if (this.totals?.pending) await this.send([]);
    await this.sending;
    // What arrived meanwhile still leaves within flushIntervalMs.
    if (this.queue.length > 0) this.armTimer();
  }

  /**
   * {@link flush}, but after `timeoutMs` whatever is still on its way or waiting gives up and is
   * counted as dropped. Resolves by then (plus the exporter's reaction time), whatever the collector does.
   */
  async flushWithin(timeoutMs: number): Promise<void> {
    const abort = this.abort;
    const deadline = setTimeout(() => {
      abort.abort(new ErgometerError('ERGOMETER_EXPORT_ABORTED', `ergometer: flush deadline of ${timeoutMs} ms`));
    }, timeoutMs);
    // Ref'd on purpose: the exporter's sockets are unref'd so that background sends never keep
    // the process alive, which means an explicit flush (shutdown(), the exit flush) must: without
    // this timer an app that closed its server and awaits shutdown() would exit while the answer
    // to the last batch is on its way, and lose it. Cleared as soon as the flush is done.
    // (Regression: the integration test agent → collector lost every sample this way.)
    try {
      await this.flush();
    } finally {
      clearTimeout(deadline);
      // Every batch of this flush saw the aborted signal; sends after it get a fresh one.
      if (abort.signal.aborted && this.abort === abort) this.abort = new AbortController();
    }
  }

  /** The oldest waiting samples, at most a batch's worth (and at most `limit`). */
  private takeBatch(limit = Number.POSITIVE_INFINITY): WireSample[] {
    let count = 0;
    let bytes = 0;
    // At least one sample, even one larger than maxBatchBytes.
    while (
      count < this.queue.length &&
      count < this.limits.maxBatchSamples &&
      count < limit &&
      (count === 0 || bytes + this.queueBytes[count]! <= this.maxBatchBytes)
    ) {
      bytes += this.queueBytes[count++]!;
    }
    const samples = this.queue.splice(0, count);
    this.removed += count;
    this.queueBytes.splice(0, count);
    this.waitingBytes -= bytes;
    return samples;
  }

  private dropOldest(count: number): void {
    this.queue.splice(0, count);
    this.removed += count;
    for (const bytes of this.queueBytes.splice(0, count)) this.waitingBytes -= bytes;
    this.noteDropped(count, 'queue-full');
  }

  private armTimer(): void {
    if (this.timer !== undefined || this.flushScheduled) return;
    // Outside any request's context: the export is nobody's work (CPU, backend time).
    this.timer = outsideRequests(() => setTimeout(() => this.flushSoon(), this.limits.flushIntervalMs));
    this.timer.unref();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Not in the request's own callback: the response goes out first.
    outsideRequests(() => setImmediate(() => this.flushSoon())).unref();
  }

  private flushSoon(): void {
    this.flushScheduled = false;
    this.timer = undefined;
    // One automatic flush at a time: its loop takes what arrives while a batch
    // is on its way, and meanwhile the rest waits in the queue, where
    // maxQueuedSamples bounds it. A flush per trigger would chain batch after
    // batch behind a hung collector, without limit and without counting them.
    if (this.autoFlushing) return;
    this.autoFlushing = true;
    this.flush().then(
      () => {
        this.autoFlushing = false;
      },
      (error: unknown) => {
        this.autoFlushing = false;
        publish(channels.internalError, { error });
      },
    );
  }

  private send(samples: WireSample[]): Promise<void> {
    const dropped = this.dropped;
    this.dropped = 0;
    const totals = this.totals?.drain() ?? { counts: [], users: [] };
    let bytes = 0;
    for (const sample of samples) bytes += estimateSampleBytes(sample);
    const batch: WireBatch = {
      batchId: randomUUID(),
      ...this.header,
      agent: { ...this.header.agent, dropped },
      samples,
      counts: totals.counts,
      users: totals.users,
    };
    // Counted from now: a batch chained behind another one is held in memory too.
    this.inFlightBytes += bytes;
    const sent = this.sending
      .then(() => this.exporter.send(batch, this.abort.signal))
      .then(
        () => {
          this.inFlightBytes -= bytes;
          publish(channels.batchSent, { batchId: batch.batchId, samples: samples.length });
        },
        (error: unknown) => {
          this.inFlightBytes -= bytes;
          publish(channels.batchDropped, { batchId: batch.batchId, samples: samples.length, error });
          // The failed batch also carried the count of earlier drops: carry it on.
          this.dropped += dropped;
          if (samples.length > 0) this.noteDropped(samples.length, dropReason(error));
        },
      );
    this.sending = sent;
    return sent;
  }

  private noteDropped(count: number, reason: string): void {
    this.dropped += count;
    publish(channels.samplesDropped, { count, reason });
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function dropReason(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ERGOMETER_COLLECTOR_REJECTED') return 'rejected';
  if (code === 'ERGOMETER_EXPORT_ABORTED') return 'flush-deadline';
  return 'export-failed';
}
