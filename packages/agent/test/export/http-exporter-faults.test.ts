/**
 * Fault injection (issue 3): a host app with the agent at sampleRate 1 keeps serving while its collector
 * refuses connections, hangs, answers slowly, returns 500, 429 with Retry-After, 400 and garbage, closes
 * mid-request and mid-answer, and is down for a 10-minute outage compressed 100 times (every delay of the
 * exporter and batcher divided by 100). Throughout: the app's responses are unchanged, nothing escapes to
 * process level, the agent's queued bytes stay under the bound; after recovery every sample not counted
 * as dropped arrives exactly once: produced = stored + dropped, and every drop is reported in a batch.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type CollectorMode, FaultyCollector } from '../support/faulty-collector';
import { HostApp, type HostStats } from './host-app';

/** Time compression: the defaults (500 ms first backoff, 30 s cap, 10 s flush interval) divided by this. */
const SCALE = 100;
const MAX_QUEUED_BYTES = 64 * 1024;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('HTTP exporter under collector faults', () => {
  let collector: FaultyCollector;
  let app: HostApp;
  let final: HostStats;
  const phases: { mode: CollectorMode; fromMs: number; toMs: number }[] = [];
  let outage: { firstRequest: number; lastRequest: number } = { firstRequest: 0, lastRequest: 0 };

  before(async () => {
    collector = await FaultyCollector.start('s3cret');
    app = await HostApp.start(
      {
        service: 'faults',
        collector: collector.url,
        token: 's3cret',
        commit: 'fault-commit',
        sampleRate: 1,
        flushIntervalMs: 10_000 / SCALE,
        maxBatchSamples: 50,
        maxBatchBytes: 16 * 1024,
        maxQueuedBytes: MAX_QUEUED_BYTES,
        requestTimeoutMs: 300,
        exitFlushTimeoutMs: 0,
      },
      { initialDelayMs: 500 / SCALE, maxDelayMs: 30_000 / SCALE, maxRetryAfterMs: 300_000 / SCALE },
    );
    app.startLoad(4, 10);
    const phase = async (mode: CollectorMode, ms: number) => {
      const fromMs = Date.now();
      await collector.setMode(mode);
      await sleep(ms);
      phases.push({ mode, fromMs, toMs: Date.now() });
    };
    await phase('ok', 800);
    await phase('refuse', 1500);
    await phase('hang', 1500);
    collector.slowMs = 100; // within the request timeout
    await phase('slow', 800);
    collector.slowMs = 500; // beyond it: the agent gives up on the answer and sends the batch again
    await phase('slow', 1500);
    await phase('status-500', 1000);
    collector.retryAfter = '1';
    await phase('status-429', 2500);
    await phase('garbage', 1000);
    await phase('garbage-body', 800);
    await phase('close-mid-answer', 1000);
    await phase('close-mid-request', 1000);
    await phase('status-400', 800);
    await phase('ok', 500);
    // The 10-minute outage, compressed: 600 s / SCALE.
    outage.firstRequest = app.produced;
    await phase('refuse', 600_000 / SCALE);
    outage = { ...outage, lastRequest: app.produced };
    await phase('ok', 1500);
    await app.stopLoad();
    final = await app.shutdown(10_000);
  });

  after(async () => {
    app?.kill();
    await collector?.stop();
  });

  test('the host app answered every request unchanged, and nothing escaped to process level', () => {
    assert.ok(app.produced > 1000, `only ${app.produced} requests were served`);
    assert.deepEqual(app.wrongResponses.slice(0, 5), []);
    assert.deepEqual(app.fatal, []);
    assert.deepEqual(final.internalErrors, []);
  });

  test('queued bytes never exceeded the configured bound, and the queue is empty after shutdown', () => {
    assert.ok(final.maxQueuedBytes > 0);
    assert.ok(
      final.maxQueuedBytes <= MAX_QUEUED_BYTES,
      `queued bytes reached ${final.maxQueuedBytes} > ${MAX_QUEUED_BYTES}`,
    );
    assert.equal(final.queuedBytes, 0);
  });

  test('every sample arrived exactly once or was counted dropped, and every drop was reported in a batch', () => {
    const ids: number[] = [];
    for (const batch of collector.batches.values()) {
      for (const sample of batch.samples) ids.push(Number(sample.flags?.req));
    }
    assert.equal(new Set(ids).size, ids.length, 'a sample was stored twice under two batchIds');
    assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0));
    assert.equal(collector.samplesStored + final.droppedPublished, app.produced, JSON.stringify(final.dropReasons));
    assert.equal(collector.droppedReported, final.droppedPublished, 'drops published but never reported in a batch');
    assert.ok(final.droppedPublished > 0, 'the outage should have overflowed the queue');
    assert.ok((final.dropReasons['queue-full'] ?? 0) > 0);
    assert.ok((final.dropReasons.rejected ?? 0) > 0, 'the 400 phase drops its batches');
  });

  test('a full queue drops the oldest samples: the newest of the outage survive', () => {
    const stored = new Set<number>();
    for (const batch of collector.batches.values()) {
      for (const sample of batch.samples) stored.add(Number(sample.flags?.req));
    }
    const lastOfOutage = [...stored].filter((id) => id < outage.lastRequest).sort((a, b) => a - b);
    // Request numbers are handed out in order; the last few served before recovery are still there.
    assert.ok(lastOfOutage.length > 0);
    const inOutage = Array.from(
      { length: outage.lastRequest - outage.firstRequest },
      (_, i) => outage.firstRequest + i,
    );
    const keptInOutage = inOutage.filter((id) => stored.has(id));
    const droppedInOutage = inOutage.filter((id) => !stored.has(id));
    assert.ok(droppedInOutage.length > 0, 'nothing of the outage was dropped');
    const newestDropped = Math.max(...droppedInOutage);
    const newestKept = Math.max(...keptInOutage);
    assert.ok(newestKept > newestDropped, `newest kept #${newestKept}, newest dropped #${newestDropped}`);
  });

  test('the same batchId is sent again after an unknown outcome, and stored once', () => {
    const storedIds = new Set(collector.batches.keys());
    const repeats = collector.arrivals.filter((a) => !a.stored && storedIds.has(a.batchId) && a.mode !== 'status-400');
    assert.ok(repeats.length > 0, 'no batch was sent twice: the slow and close-mid-answer phases should cause that');
    assert.ok(final.retries > 0);
  });

  test('429 with Retry-After: 1 is retried no sooner than a second later', () => {
    const byBatch = new Map<string, number[]>();
    for (const arrival of collector.arrivals) {
      if (arrival.mode !== 'status-429') continue;
      const times = byBatch.get(arrival.batchId) ?? [];
      times.push(arrival.atMs);
      byBatch.set(arrival.batchId, times);
    }
    const gaps = [...byBatch.values()].flatMap((times) => times.slice(1).map((t, i) => t - times[i]!));
    assert.ok(gaps.length > 0, 'no batch was retried during the 429 phase');
    // Without Retry-After the scaled backoff would be at most 300 ms.
    for (const gap of gaps) assert.ok(gap >= 990, `retried after ${gap} ms`);
  });

  test('a 400 is not retried: a batch answered 400 never comes again', () => {
    const rejected = collector.arrivals.filter((a) => a.mode === 'status-400');
    assert.ok(rejected.length > 0);
    for (const arrival of rejected) {
      const later = collector.arrivals.filter((a) => a.batchId === arrival.batchId && a.atMs > arrival.atMs);
      assert.equal(later.length, 0, `batch ${arrival.batchId} was sent again after its 400`);
    }
  });

  test('batches carry the token, gzip and the header fields', () => {
    const [batch] = collector.batches.values();
    assert.ok(batch);
    assert.equal(batch.service, 'faults');
    assert.equal(batch.commit, 'fault-commit');
    assert.match(batch.hostClass, / x\d+$/);
    assert.ok(batch.counts.length > 0, 'counts ride along');
    const counted = [...collector.batches.values()].flatMap((b) => b.counts).reduce((n, c) => n + c.requests, 0);
    assert.ok(counted <= app.produced);
  });
});
