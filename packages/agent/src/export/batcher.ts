import { randomUUID } from 'node:crypto';
import { channels, publish } from '../diagnostics';
import type { Exporter, WireBatch, WireSample } from './wire';

/** What every batch of this process carries besides its samples. */
export type BatchHeader = Omit<WireBatch, 'batchId' | 'samples' | 'counts' | 'users' | 'agent'> & {
  agent: Omit<WireBatch['agent'], 'dropped'>;
};

/**
 * Collects finished samples and hands them to the exporter in batches: when
 * `maxBatchSamples` are waiting, or `flushIntervalMs` after the first one.
 * Memory is bounded by `maxQueuedSamples`: beyond it the oldest samples are
 * dropped, counted, reported in the next batch and on diagnostics_channel.
 * Never throws into the caller and never keeps the process alive.
 */
export class Batcher {
  private queue: WireSample[] = [];
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushScheduled = false;
  private autoFlushing = false;
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly header: BatchHeader,
    private readonly exporter: Exporter,
    private readonly limits: { flushIntervalMs: number; maxBatchSamples: number; maxQueuedSamples: number },
  ) {}

  add(sample: WireSample): void {
    if (this.queue.length >= this.limits.maxQueuedSamples) {
      // Drop the oldest: under a long collector outage the freshest data is the
      // most useful. A tenth at a time, so that a full queue costs one memmove
      // per 10% of its size rather than one per sample.
      const excess = Math.max(1, Math.ceil(this.limits.maxQueuedSamples / 10));
      this.queue.splice(0, excess);
      this.noteDropped(excess, 'queue-full');
    }
    this.queue.push(sample);
    if (this.queue.length >= this.limits.maxBatchSamples) this.scheduleFlush();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flushSoon(), this.limits.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Samples waiting to be sent. */
  get queued(): number {
    return this.queue.length;
  }

  /** Sends everything queued now; resolves when every batch has been handed over (or failed). */
  async flush(): Promise<void> {
    this.clearTimer();
    while (this.queue.length > 0) {
      const samples = this.queue.splice(0, this.limits.maxBatchSamples);
      await this.send(samples);
    }
    await this.sending;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Not in the request's own callback: the response goes out first.
    setImmediate(() => this.flushSoon()).unref();
  }

  private flushSoon(): void {
    this.flushScheduled = false;
    // One automatic flush at a time: its loop takes what arrives while a batch
    // is on its way, and meanwhile the rest waits in the queue, where
    // maxQueuedSamples bounds it. A flush per trigger would chain batch after
    // batch behind a hung collector, without limit and without counting them.
    if (this.autoFlushing) {
      this.clearTimer();
      return;
    }
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
    const batch: WireBatch = {
      batchId: randomUUID(),
      ...this.header,
      agent: { ...this.header.agent, dropped },
      samples,
      counts: [],
      users: [],
    };
    const sent = this.sending
      .then(() => this.exporter.send(batch))
      .then(
        () => publish(channels.batchSent, { batchId: batch.batchId, samples: samples.length }),
        (error: unknown) => {
          publish(channels.batchDropped, { batchId: batch.batchId, samples: samples.length, error });
          // The failed batch also carried the count of earlier drops: carry it on.
          this.dropped += dropped;
          this.noteDropped(samples.length, 'export-failed');
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
