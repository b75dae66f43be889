/**
 * Batcher: when batches are cut, what they carry, and the promise that the
 * host process never blocks, crashes or grows without bound because of the
 * collector (SPEC §1).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, type TestContext, test } from 'node:test';
import fc from 'fast-check';
import { Batcher } from '../../src/export/batcher';
import type { Exporter } from '../../src/export/wire';
import { assertWireBatch, HEADER, ScriptedExporter, sample } from './support/wire';

interface SamplesDropped {
  count: number;
  reason: string;
}
interface BatchDropped {
  batchId: string;
  samples: number;
  error: unknown;
}

/** Collects what is published on `name` for the rest of the test. */
function listen<T>(t: TestContext, name: string): T[] {
  const messages: T[] = [];
  const onMessage = (message: unknown) => messages.push(message as T);
  diagnosticsChannel.subscribe(name, onMessage);
  t.after(() => diagnosticsChannel.unsubscribe(name, onMessage));
  return messages;
}

/** Lets the event loop turn once: setImmediate callbacks (size-triggered flushes) and settled promises run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await turn();
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** A batcher that cuts a batch 100 ms (of the test's mocked setTimeout) after its first waiting sample. */
function onMockedTime(t: TestContext): { exporter: ScriptedExporter; batcher: Batcher } {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const exporter = new ScriptedExporter();
  const batcher = new Batcher(HEADER, exporter, {
    flushIntervalMs: 100,
    maxBatchSamples: 1000,
    maxQueuedSamples: 1000,
  });
  return { exporter, batcher };
}

describe('what a batch carries', () => {
  test('the header, a fresh batchId, the samples in order, dropped 0', async () => {
    const exporter = new ScriptedExporter();
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 4,
      maxQueuedSamples: 100,
    });
    const rich = sample(0, {
      backend: { db: 3.1, cache: 0.4, http: 0 },
      flags: { new_ranker: 'on' },
      user: 'opaque-hash',
      aborted: true,
    });
    batcher.add(rich);
    for (let i = 1; i < 10; i++) batcher.add(sample(i));
    await batcher.flush();
    const batches = exporter.delivered.map((b) => assertWireBatch(JSON.parse(JSON.stringify(b))));
    assert.deepEqual(
      batches.map((b) => b.samples.map((s) => s.ts)),
      [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
      ],
    );
    assert.deepEqual(batches[0]!.samples[0], rich, 'optional fields survive');
    assert.equal(new Set(batches.map((b) => b.batchId)).size, batches.length, 'batchIds are unique');
    for (const b of batches) assert.equal(b.agent.dropped, 0);
  });

  test('batchIds are unique across many batches and batchers', async () => {
    const exporter = new ScriptedExporter();
    for (let n = 0; n < 5; n++) {
      const batcher = new Batcher(HEADER, exporter, {
        flushIntervalMs: 60_000,
        maxBatchSamples: 1,
        maxQueuedSamples: 1000,
      });
      for (let i = 0; i < 200; i++) batcher.add(sample(i));
      await batcher.flush();
    }
    assert.equal(exporter.delivered.length, 1000);
    assert.equal(new Set(exporter.delivered.map((b) => b.batchId)).size, 1000);
  });
});

describe('when batches are cut', () => {
  test('size: maxBatchSamples waiting triggers a send soon, never inside add()', async () => {
    const exporter = new ScriptedExporter();
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 5,
      maxQueuedSamples: 100,
    });
    for (let i = 0; i < 4; i++) batcher.add(sample(i));
    await turns(3);
    assert.equal(exporter.handed.length, 0, 'below maxBatchSamples nothing is sent before the interval');
    batcher.add(sample(4));
    // Not in the caller's own callback, nor in its microtasks: the response goes out first.
    for (let i = 0; i < 10; i++) await new Promise((resolve) => process.nextTick(resolve));
    assert.equal(exporter.handed.length, 0, 'the batch was cut in the same turn of the event loop as add()');
    await turns(3);
    assert.deepEqual(
      exporter.delivered.map((b) => b.samples.length),
      [5],
    );
    assert.equal(batcher.queued, 0);
  });

  test('size: a burst of adds is cut into full batches', async () => {
    const exporter = new ScriptedExporter();
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 10,
      maxQueuedSamples: 1000,
    });
    for (let i = 0; i < 35; i++) batcher.add(sample(i));
    await turns(5);
    assert.deepEqual(
      exporter.delivered.map((b) => b.samples.length),
      [10, 10, 10, 5],
    );
  });

  test('time: flushIntervalMs after the first waiting sample, not after the last', async (t) => {
    const { exporter, batcher } = onMockedTime(t);
    batcher.add(sample(0));
    t.mock.timers.tick(60);
    batcher.add(sample(1)); // does not restart the clock
    t.mock.timers.tick(39);
    await turns(2);
    assert.equal(exporter.handed.length, 0, 'nothing before 100 ms');
    t.mock.timers.tick(1);
    await turns(2);
    assert.deepEqual(
      exporter.delivered.map((b) => b.samples.map((s) => s.ts)),
      [[0, 1]],
    );

    // The next sample starts a new interval.
    batcher.add(sample(2));
    t.mock.timers.tick(99);
    await turns(2);
    assert.equal(exporter.handed.length, 1);
    t.mock.timers.tick(1);
    await turns(2);
    assert.deepEqual(
      exporter.delivered.map((b) => b.samples.map((s) => s.ts)),
      [[0, 1], [2]],
    );
  });

  test('time: an explicit flush cancels the pending interval', async (t) => {
    const { exporter, batcher } = onMockedTime(t);
    batcher.add(sample(0));
    await batcher.flush();
    t.mock.timers.tick(500);
    await turns(2);
    assert.equal(exporter.handed.length, 1, 'no empty batch when the timer would have fired');
  });

  test('agent.flush() (flushQueued) ends under steady traffic, once what was waiting is delivered', async () => {
    // Every batch that reaches the collector finds three new samples waiting: a loop that sends until the
    // queue is empty would not end while the traffic lasts. The traffic stops after 50 batches so that
    // such a loop fails the test instead of hanging it.
    let next = 5;
    let sends = 0;
    const exporter: Exporter = {
      send: async (batch) => {
        await turn();
        delivered.push(...batch.samples.map((s) => s.ts));
        if (++sends < 50) for (let i = 0; i < 3; i++) batcher.add(sample(next++));
      },
      sendProfile: () => Promise.reject(new Error('batches only')),
      close: async () => undefined,
    };
    const delivered: number[] = [];
    // Neither the size nor the interval cuts a batch during the test: only the flush sends.
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 1000,
      maxQueuedSamples: 1000,
    });
    for (let i = 0; i < 5; i++) batcher.add(sample(i));
    await batcher.flushQueued();
    assert.deepEqual(delivered, [0, 1, 2, 3, 4], 'every sample waiting at the call, in order');
    assert.equal(sends, 1, 'it went on sending what arrived after the call');
    assert.ok(batcher.queued > 0, 'what arrived meanwhile waits for its own batch');
  });

  test('agent.flush() (flushQueued) waits for the batch already on its way, and leaves nothing behind', async (t) => {
    const { exporter, batcher } = onMockedTime(t);
    exporter.behaviour = 'hang';
    batcher.add(sample(0));
    t.mock.timers.tick(100); // 0 is on its way and hangs
    await turns(2);
    batcher.add(sample(1));
    let flushed = false;
    const flush = batcher.flushQueued().then(() => {
      flushed = true;
    });
    await turns(3);
    assert.equal(flushed, false, 'resolved while the batch holding 0 was still on its way');
    batcher.add(sample(2)); // arrives during the flush
    exporter.release();
    await flush;
    assert.deepEqual(
      exporter.delivered.slice(0, 2).map((b) => b.samples.map((s) => s.ts)),
      [[0], [1]],
    );
    // 2 was not part of the flush, but it is not stranded either (the automatic flush that was running
    // takes it, or the interval).
    t.mock.timers.tick(100);
    await turns(3);
    assert.deepEqual(
      exporter.delivered.flatMap((b) => b.samples.map((s) => s.ts)),
      [0, 1, 2],
    );
  });

  test('time: an interval that fires while a send hangs does not disarm later intervals', async (t) => {
    const { exporter, batcher } = onMockedTime(t);
    exporter.behaviour = 'hang';
    batcher.add(sample(0));
    t.mock.timers.tick(100); // sends 0, which hangs
    await turns(2);
    batcher.add(sample(1));
    t.mock.timers.tick(100); // a flush is already running: this one leaves 1 to it
    await turns(2);
    exporter.release(); // 0 and then 1 are delivered
    await turns(3);
    batcher.add(sample(2)); // must arm a new interval
    t.mock.timers.tick(100);
    await turns(3);
    assert.deepEqual(
      exporter.delivered.map((b) => b.samples.map((s) => s.ts)),
      [[0], [1], [2]],
    );
  });

  test('time: the timer does not keep the process alive', () => {
    // A process with a queued sample and a minute-long interval exits as soon as its own work is done.
    const batcherModule = require.resolve('../../src/export/batcher');
    const script = `
      const { Batcher } = require(${JSON.stringify(batcherModule)});
      const exporter = { send: async () => {}, close: async () => {} };
      const batcher = new Batcher(${JSON.stringify(HEADER)}, exporter, { flushIntervalMs: 60000, maxBatchSamples: 1000, maxQueuedSamples: 1000 });
      batcher.add({ ts: 0, endpoint: 'GET /', status: 200, cost: 1, wallMs: 1, weight: 1 });
      process.stdout.write(String(batcher.queued));`;
    const started = Date.now();
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, '1');
    assert.ok(Date.now() - started < 10_000, 'the process waited for the flush timer');
  });
});

describe('flush()', () => {
  test('drains everything, in batches of at most maxBatchSamples, in order', async () => {
    const exporter = new ScriptedExporter();
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 100,
      maxQueuedSamples: 10_000,
    });
    for (let i = 0; i < 2345; i++) batcher.add(sample(i));
    await batcher.flush();
    assert.equal(batcher.queued, 0);
    assert.ok(exporter.delivered.every((b) => b.samples.length <= 100 && b.samples.length > 0));
    assert.deepEqual(
      exporter.delivered.flatMap((b) => b.samples.map((s) => s.ts)),
      Array.from({ length: 2345 }, (_, i) => i),
    );
  });

  test('resolves only once the exporter has finished with every batch', async () => {
    let finished = 0;
    const slow = {
      send: () =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            finished++;
            resolve();
          }, 20),
        ),
      close: async () => {},
    };
    const batcher = new Batcher(HEADER, slow, { flushIntervalMs: 60_000, maxBatchSamples: 2, maxQueuedSamples: 100 });
    for (let i = 0; i < 5; i++) batcher.add(sample(i));
    await batcher.flush();
    assert.equal(finished, 3);
  });

  test('with nothing queued sends nothing', async () => {
    const exporter = new ScriptedExporter();
    const batcher = new Batcher(HEADER, exporter, { flushIntervalMs: 10, maxBatchSamples: 10, maxQueuedSamples: 10 });
    await batcher.flush();
    await batcher.flush();
    assert.equal(exporter.handed.length, 0);
  });

  test('resolves, not rejects, when the exporter fails', async () => {
    for (const behaviour of ['reject', 'throw'] as const) {
      const exporter = new ScriptedExporter();
      exporter.behaviour = behaviour;
      const batcher = new Batcher(HEADER, exporter, {
        flushIntervalMs: 60_000,
        maxBatchSamples: 10,
        maxQueuedSamples: 100,
      });
      for (let i = 0; i < 25; i++) batcher.add(sample(i));
      await batcher.flush();
      assert.equal(exporter.handed.length, 3, behaviour);
      assert.equal(batcher.queued, 0);
    }
  });
});

describe('bounded memory', () => {
  test('the queue never exceeds maxQueuedSamples, and the oldest samples are the ones dropped', async (t) => {
    const drops = listen<SamplesDropped>(t, 'ergometer:agent:samples-dropped');
    const exporter = new ScriptedExporter();
    // maxBatchSamples above the bound: no size-triggered flush, only the bound acts.
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 1000,
      maxQueuedSamples: 10,
    });
    for (let i = 0; i < 25; i++) {
      batcher.add(sample(i));
      assert.ok(batcher.queued <= 10, `queue at ${batcher.queued}`);
    }
    const kept = batcher.queued;
    assert.ok(kept > 0);
    assert.ok(drops.every((d) => d.reason === 'queue-full'));
    assert.equal(sum(drops.map((d) => d.count)), 25 - kept);

    await batcher.flush();
    const [batch] = exporter.delivered;
    assert.deepEqual(
      batch!.samples.map((s) => s.ts),
      Array.from({ length: kept }, (_, i) => 25 - kept + i),
      'the newest samples survive, in order',
    );
    assert.equal(batch!.agent.dropped, 25 - kept, 'the batch reports what was dropped before it');
  });

  test('an exporter that never answers: samples are either handed over, queued, or reported dropped', async (t) => {
    // Regression: batches cut while an earlier send hung were chained behind it without limit,
    // neither queued (so outside maxQueuedSamples) nor dropped (so never reported).
    const drops = listen<SamplesDropped>(t, 'ergometer:agent:samples-dropped');
    const exporter = new ScriptedExporter();
    exporter.behaviour = 'hang';
    const limits = { flushIntervalMs: 10, maxBatchSamples: 10, maxQueuedSamples: 100 };
    const batcher = new Batcher(HEADER, exporter, limits);
    const added = 10_000;
    for (let i = 0; i < added; i++) {
      batcher.add(sample(i));
      assert.ok(batcher.queued <= limits.maxQueuedSamples, `queue at ${batcher.queued}`);
      if (i % 10 === 9) await turn();
    }
    await new Promise((resolve) => setTimeout(resolve, 3 * limits.flushIntervalMs));
    const dropped = sum(drops.map((d) => d.count));
    assert.equal(
      exporter.samplesHanded() + batcher.queued + dropped,
      added,
      `handed ${exporter.samplesHanded()}, queued ${batcher.queued}, dropped ${dropped}`,
    );
    // Only one batch may be waiting on the exporter at a time.
    assert.ok(exporter.samplesHanded() <= limits.maxBatchSamples, `${exporter.samplesHanded()} samples in flight`);

    // When the collector comes back, the next batch reports every sample lost meanwhile.
    exporter.release();
    await batcher.flush();
    assert.equal(batcher.queued, 0);
    const delivered = exporter.delivered.flatMap((b) => b.samples.map((s) => s.ts));
    assert.equal(delivered.length + sum(exporter.delivered.map((b) => b.agent.dropped)), added);
    assert.equal(delivered.at(-1), added - 1, 'the newest sample made it');
    assert.ok(exporter.delivered[1]!.agent.dropped > 0);
  });

  test('samples added while flushes are running are never stranded', async () => {
    // An automatic flush skips while another runs (that is what bounds memory above): whatever
    // arrives meanwhile must still be taken by a running flush.
    const pending: (() => void)[] = [];
    const handed: number[] = [];
    const exporter = {
      send: (batch: { samples: { ts: number }[] }) => {
        handed.push(...batch.samples.map((s) => s.ts));
        return new Promise<void>((resolve) => pending.push(resolve));
      },
      close: async () => {},
    };
    // maxBatchSamples 1: every add is a size trigger; no interval timer is ever armed.
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 1,
      maxQueuedSamples: 100,
    });
    batcher.add(sample(0));
    await turn(); // the automatic flush sends 0 and waits
    batcher.add(sample(1)); // triggers an automatic flush for later...
    const explicit = batcher.flush(); // ...but an explicit flush takes 1 now, behind 0
    await turn(); // the automatic flush triggered by 1 finds one running and leaves
    pending.shift()!(); // 0 is delivered
    await turn();
    batcher.add(sample(2)); // its trigger, too, finds a flush running
    await turn();
    assert.equal(batcher.queued, 1);
    let done = false;
    explicit.then(() => {
      done = true;
    }, assert.fail);
    for (let i = 0; i < 10 && !done; i++) {
      pending.shift()?.();
      await turn();
    }
    assert.ok(done, 'the explicit flush finished');
    assert.deepEqual(handed, [0, 1, 2]);
    assert.equal(batcher.queued, 0);
  });

  test('an exporter that always fails: add() never throws, every failure is reported, the next batch counts them', async (t) => {
    for (const behaviour of ['reject', 'throw'] as const) {
      const drops = listen<SamplesDropped>(t, 'ergometer:agent:samples-dropped');
      const failedBatches = listen<BatchDropped>(t, 'ergometer:agent:batch-dropped');
      const exporter = new ScriptedExporter();
      exporter.behaviour = behaviour;
      const limits = { flushIntervalMs: 10, maxBatchSamples: 7, maxQueuedSamples: 50 };
      const batcher = new Batcher(HEADER, exporter, limits);
      const added = 2000;
      for (let i = 0; i < added; i++) {
        batcher.add(sample(i)); // must not throw
        assert.ok(batcher.queued <= limits.maxQueuedSamples);
        if (i % 13 === 0) await turn();
      }
      await batcher.flush();
      assert.ok(failedBatches.length > 0, behaviour);
      assert.equal(failedBatches.length, exporter.handed.length, 'one batch-dropped per failed batch');
      for (const [i, message] of failedBatches.entries()) {
        assert.equal(message.batchId, exporter.handed[i]!.batchId);
        assert.equal(message.samples, exporter.handed[i]!.samples.length);
        assert.ok(message.error instanceof Error);
      }
      const exportFailed = drops.filter((d) => d.reason === 'export-failed');
      assert.equal(sum(exportFailed.map((d) => d.count)), exporter.samplesHanded());
      assert.equal(sum(drops.map((d) => d.count)), added, 'every sample was reported dropped, once');

      // The collector recovers: the next batch carries the count of everything lost.
      exporter.behaviour = 'deliver';
      batcher.add(sample(added));
      await batcher.flush();
      assert.equal(exporter.delivered.length, 1);
      assert.equal(exporter.delivered[0]!.agent.dropped, added);
      assert.deepEqual(
        exporter.delivered[0]!.samples.map((s) => s.ts),
        [added],
      );
    }
  });

  test('property: whatever the exporter does, every sample is delivered or counted in agent.dropped, once', async () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), n: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ kind: fc.constant('turn' as const) }),
      fc.record({ kind: fc.constant('flush' as const) }),
      fc.record({
        kind: fc.constant('exporter' as const),
        behaviour: fc.constantFrom('deliver', 'reject', 'throw', 'hang'),
      }),
      fc.record({ kind: fc.constant('release' as const) }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { maxLength: 40 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 30 }),
        async (steps, maxBatchSamples, maxQueuedSamples) => {
          const exporter = new ScriptedExporter();
          const batcher = new Batcher(HEADER, exporter, { flushIntervalMs: 5, maxBatchSamples, maxQueuedSamples });
          let added = 0;
          const flushes: Promise<void>[] = [];
          for (const s of steps) {
            if (s.kind === 'add') {
              for (let i = 0; i < s.n; i++) batcher.add(sample(added++));
              assert.ok(batcher.queued <= maxQueuedSamples);
            } else if (s.kind === 'turn') await turn();
            else if (s.kind === 'flush') flushes.push(batcher.flush());
            else if (s.kind === 'exporter') exporter.behaviour = s.behaviour;
            else exporter.release();
          }
          // Recover: automatic flushes alone drain the queue (nothing is stranded without a trigger).
          exporter.release();
          await Promise.all(flushes);
          for (let waited = 0; batcher.queued > 0; waited++) {
            assert.ok(waited < 100, `${batcher.queued} samples stranded in the queue`);
            await new Promise((resolve) => setTimeout(resolve, 2));
          }
          // One last sample carries the remaining drop count.
          batcher.add(sample(added++));
          await batcher.flush();

          const delivered = exporter.delivered.flatMap((b) => b.samples.map((s) => s.ts));
          assert.equal(new Set(delivered).size, delivered.length, 'a sample was delivered twice');
          assert.deepEqual(
            delivered,
            [...delivered].sort((a, b) => a - b),
            'samples are delivered in the order they were added',
          );
          const reported = sum(exporter.delivered.map((b) => b.agent.dropped));
          assert.equal(delivered.length + reported, added, `delivered ${delivered.length}, reported ${reported}`);
        },
      ),
      { numRuns: 200 },
    );
  });
});
