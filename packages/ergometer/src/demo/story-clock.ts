/**
 * The demo's calendar: rollouts, canaries and flag windows are hours long in production, and the
 * store aggregates by the minute, so a story told in seconds of real time has to be put on a faster
 * clock. The demo's collector stores every batch on a story clock that runs `speed` times faster than
 * real time (600×: one real second is ten story minutes) and starts a few days in the past.
 *
 * Only timestamps move. Costs, wall times, flags and every other field are stored as the agents
 * measured them, and the detectors run unchanged with their defaults for windows, on the story clock's
 * "now".
 */
import type { IngestBatch, Store } from '../store/types';

export class StoryClock {
  constructor(
    /** Real time at which the story starts, ms since the epoch. */
    readonly realStartMs: number,
    /** Story time at that instant, ms since the epoch. */
    readonly storyStartMs: number,
    /** Story milliseconds per real millisecond. */
    readonly speed: number,
  ) {}

  /** The story time of a real instant. */
  story(realMs: number): number {
    return Math.round(this.storyStartMs + (realMs - this.realStartMs) * this.speed);
  }

  now(): number {
    return this.story(Date.now());
  }
}

const MINUTE_MS = 60_000;

/** A batch with its timestamps on the story clock (samples' ts, counts' and users' minutes). */
export function batchOnStoryClock(batch: IngestBatch, clock: StoryClock): IngestBatch {
  const minute = (ms: number) => Math.floor(clock.story(ms) / MINUTE_MS) * MINUTE_MS;
  return {
    ...batch,
    receivedAt: clock.story(batch.receivedAt),
    samples: batch.samples.map((s) => ({ ...s, ts: clock.story(s.ts) })),
    counts: batch.counts.map((c) => ({ ...c, minute: minute(c.minute) })),
    users: batch.users.map((u) => ({ ...u, minute: minute(u.minute) })),
  };
}

/**
 * The store as the demo's collector sees it: every write goes through the story clock, every read
 * is the store's own.
 */
export function storeOnStoryClock(store: Store, clock: StoryClock): Store {
  return new Proxy(store, {
    get(target, property) {
      if (property === 'ingest') return (batch: IngestBatch) => target.ingest(batchOnStoryClock(batch, clock));
      if (property === 'ingestMany')
        return (batches: IngestBatch[]) => target.ingestMany(batches.map((b) => batchOnStoryClock(b, clock)));
      if (property === 'recordDeploy')
        return (deploy: Parameters<Store['recordDeploy']>[0]) =>
          target.recordDeploy({ ...deploy, ts: clock.story(deploy.ts) });
      if (property === 'storeProfile')
        return (...[meta, pprof, receivedAt, ...rest]: Parameters<Store['storeProfile']>) =>
          target.storeProfile(
            { ...meta, from: clock.story(meta.from), to: clock.story(meta.to) },
            pprof,
            clock.story(receivedAt),
            ...rest,
          );
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
