/**
 * The bounded write queue in front of the store, with group commit: while one write is in flight,
 * batches that arrive wait in the queue, and the next write takes all of them (up to a group
 * limit) in one `store.ingestMany` — one transaction, one fsync — instead of one each. Every
 * caller's promise resolves only when the write that carried its batch resolved, i.e. when its
 * batch is durable; that is what lets the route answer 200.
 *
 * When the queue holds `maxBatches` batches or `maxSamples` samples, `enqueue` throws a 429
 * (ERGOMETER_QUEUE_FULL, Retry-After) instead of growing: the agent backs off and retries the
 * same batchId.
 *
 *   enqueue ─► [ queued … ] ─► group ─► ingestMany ─► resolve each caller
 *                  ▲ full? 429           (one in flight at a time)
 */
import { performance } from 'node:perf_hooks';
import { ErgometerError } from '../errors';
import type { IngestBatch, IngestResult, Store } from '../store/types';

export interface WriteQueueOptions {
  /** Batches queued or being written before new ones get 429. Default 256. */
  maxBatches: number;
  /** Samples queued or being written before new batches get 429. Default 500 000. */
  maxSamples: number;
  /** Samples written in one group commit at most. Default 100 000. */
  maxGroupSamples: number;
  /** Seconds a client is told to wait in Retry-After when the queue is full. Default 1. */
  retryAfterSeconds: number;
}

export const DEFAULT_QUEUE_OPTIONS: Readonly<WriteQueueOptions> = Object.freeze({
  maxBatches: 256,
  maxSamples: 500_000,
  maxGroupSamples: 100_000,
  retryAfterSeconds: 1,
});

interface Entry {
  batch: IngestBatch;
  resolve: (result: IngestResult) => void;
  reject: (error: Error) => void;
}

export class WriteQueue {
  private readonly queued: Entry[] = [];
  /** batchId → the promise of its pending write: a retry arriving meanwhile joins it instead of being written twice. */
  private readonly pending = new Map<string, Promise<IngestResult>>();
  private pendingSamples = 0;
  private running: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly options: WriteQueueOptions,
    private readonly onWrite: (seconds: number) => void,
  ) {}

  /** Batches and samples queued or being written. */
  depth(): { batches: number; samples: number } {
    return { batches: this.pending.size, samples: this.pendingSamples };
  }

  /**
   * Queues a batch; resolves when it is durable (or was stored before: `stored: false`).
   * @throws ErgometerError ERGOMETER_QUEUE_FULL (429) synchronously when the queue is full.
   */
  enqueue(batch: IngestBatch): Promise<IngestResult> {
    const inFlight = this.pending.get(batch.batchId);
    if (inFlight !== undefined) {
      // The same batch is being written right now (a client retry that overtook its own answer).
      return inFlight.then((result) => ({ stored: false, samples: result.samples }));
    }
    const samples = batch.samples.length;
    if (
      this.pending.size > 0 &&
      (this.pending.size >= this.options.maxBatches || this.pendingSamples + samples > this.options.maxSamples)
    ) {
      throw new ErgometerError(
        'ERGOMETER_QUEUE_FULL',
        429,
        `the collector's write queue is full (${this.pending.size} batches, ${this.pendingSamples} samples); retry the same batch after the Retry-After delay`,
        { 'retry-after': String(this.options.retryAfterSeconds) },
      );
    }
    const promise = new Promise<IngestResult>((resolve, reject) => {
      this.queued.push({ batch, resolve, reject });
    });
    this.pending.set(batch.batchId, promise);
    this.pendingSamples += samples;
    const forget = (): void => {
      this.pending.delete(batch.batchId);
      this.pendingSamples -= samples;
    };
    promise.then(forget, forget);
    if (this.running === null) this.running = this.writeUntilEmpty();
    return promise;
  }

  /** Resolves when everything queued so far has been written (or failed). */
  async drain(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  private storeFailure(error: unknown): ErgometerError {
    return new ErgometerError(
      'ERGOMETER_STORE_UNAVAILABLE',
      503,
      `the store could not write the batch (${(error as Error)?.message ?? String(error)}); retry the same batch later`,
      { 'retry-after': String(Math.max(1, this.options.retryAfterSeconds)) },
    );
  }

  private async writeUntilEmpty(): Promise<void> {
    // Let the requests that are already parsed in this tick join the first group.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.queued.length > 0) {
        let take = 0;
        let samples = 0;
        while (take < this.queued.length) {
          const next = (this.queued[take] as Entry).batch.samples.length;
          if (take > 0 && samples + next > this.options.maxGroupSamples) break;
          samples += next;
          take++;
        }
        const group = this.queued.splice(0, take);
        const started = performance.now();
        try {
          const results = await this.store.ingestMany(group.map((entry) => entry.batch));
          this.onWrite((performance.now() - started) / 1000);
          for (let i = 0; i < group.length; i++) {
            const result = results[i];
            if (result === undefined) {
              (group[i] as Entry).reject(new Error('the store returned fewer results than batches'));
            } else {
              (group[i] as Entry).resolve(result);
            }
          }
        } catch (error) {
          if (group.length === 1) {
            (group[0] as Entry).reject(this.storeFailure(error));
          } else {
            // One bad batch must not fail the batches it was grouped with (they would be retried
            // into the same group, forever): write each alone. Safe to repeat, since a batch
            // the failed write did store is recognised by its batchId.
            for (const entry of group) {
              try {
                const [result] = await this.store.ingestMany([entry.batch]);
                if (result === undefined) throw new Error('the store returned no result');
                entry.resolve(result);
              } catch (single) {
                entry.reject(this.storeFailure(single));
              }
            }
          }
        }
      }
    } finally {
      this.running = null;
    }
  }
}
