/**
 * The batcher's byte bounds (maxBatchBytes, maxQueuedBytes) and the per-minute totals riding on batches.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Batcher, estimateSampleBytes } from '../../src/export/batcher';
import type { WireSample } from '../../src/export/wire';
import { RequestTotals } from '../../src/totals/request-totals';
import { HEADER, ScriptedExporter, sample } from '../unit/support/wire';

const ascii = (maxLength: number) => fc.string({ unit: fc.constantFrom(...'abcXYZ019 /:-_.'.split('')), maxLength });

const sampleArb: fc.Arbitrary<WireSample> = fc.record(
  {
    ts: fc.integer({ min: 0, max: 2 ** 45 }),
    endpoint: ascii(80),
    status: fc.integer({ min: 100, max: 599 }),
    cost: fc.oneof(fc.integer({ min: 0 }), fc.double({ min: 0, max: 1e15, noNaN: true })),
    wallMs: fc.double({ min: 0, max: 1e7, noNaN: true }),
    weight: fc.double({ min: 1, max: 1e6, noNaN: true }),
    backend: fc.record({
      db: fc.double({ min: 0, max: 1e6, noNaN: true }),
      cache: fc.double({ min: 0, max: 1e6, noNaN: true }),
      http: fc.double({ min: 0, max: 1e6, noNaN: true }),
    }),
    flags: fc.dictionary(ascii(20), ascii(30), { maxKeys: 10 }),
    user: ascii(22),
    aborted: fc.constant(true as const),
    flagsDropped: fc.integer({ min: 1, max: 1000 }),
  },
  { requiredKeys: ['ts', 'endpoint', 'status', 'cost', 'wallMs', 'weight'] },
);

test('property: the size estimate is never below the JSON size of an ASCII sample', () => {
  fc.assert(
    fc.property(sampleArb, (s) => {
      const actual = Buffer.byteLength(JSON.stringify(s));
      const estimate = estimateSampleBytes(s);
      assert.ok(estimate >= actual, `estimate ${estimate} < ${actual} for ${JSON.stringify(s)}`);
      assert.ok(estimate <= actual + 400, `estimate ${estimate} far above ${actual}`);
    }),
    { numRuns: 500 },
  );
});

test('property: with the collector hanging, queued bytes never exceed maxQueuedBytes; batches respect maxBatchBytes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(sampleArb, { minLength: 1, maxLength: 300 }), async (samples) => {
      const exporter = new ScriptedExporter();
      exporter.behaviour = 'hang';
      const limits = {
        flushIntervalMs: 5,
        maxBatchSamples: 1000,
        maxQueuedSamples: 100_000,
        maxBatchBytes: 4096,
        maxQueuedBytes: 16_384,
      };
      const batcher = new Batcher(HEADER, exporter, limits);
      for (const [i, s] of samples.entries()) {
        batcher.add(s);
        assert.ok(batcher.queuedBytes <= limits.maxQueuedBytes, `${batcher.queuedBytes} bytes held`);
        if (i % 25 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      exporter.release();
      await batcher.flush();
      for (const batch of exporter.delivered) {
        const bytes = batch.samples.reduce((n, s) => n + estimateSampleBytes(s), 0);
        assert.ok(batch.samples.length === 1 || bytes <= limits.maxBatchBytes, `batch of ${bytes} bytes`);
      }
      assert.equal(batcher.queuedBytes, 0);
    }),
    { numRuns: 50 },
  );
});

test('maxBatchBytes waiting triggers a send, like maxBatchSamples', async () => {
  const exporter = new ScriptedExporter();
  const one = estimateSampleBytes(sample(0));
  const batcher = new Batcher(HEADER, exporter, {
    flushIntervalMs: 60_000,
    maxBatchSamples: 1000,
    maxQueuedSamples: 1000,
    maxBatchBytes: one * 3,
  });
  const turns = async () => {
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  };
  batcher.add(sample(0));
  batcher.add(sample(1));
  await turns();
  assert.equal(exporter.handed.length, 0, 'below maxBatchBytes nothing is sent before the interval');
  batcher.add(sample(2));
  await turns();
  assert.deepEqual(
    exporter.delivered.map((b) => b.samples.length),
    [3],
  );
  // A burst is cut into batches of at most maxBatchBytes.
  for (let i = 3; i < 10; i++) batcher.add(sample(i));
  await turns();
  assert.deepEqual(
    exporter.delivered.map((b) => b.samples.length),
    [3, 3, 3, 1],
  );
});

test('counts alone (no sample) still go out within flushIntervalMs', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const exporter = new ScriptedExporter();
  let batcher: Batcher | undefined;
  const totals = new RequestTotals(undefined, () => batcher?.notePending());
  batcher = new Batcher(HEADER, exporter, { flushIntervalMs: 100, maxBatchSamples: 10, maxQueuedSamples: 10 }, totals);
  totals.countRequest('GET /a', 120_000);
  totals.countRequest('GET /a', 120_001);
  t.mock.timers.tick(99);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(exporter.handed.length, 0);
  t.mock.timers.tick(1);
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(exporter.delivered.length, 1);
  assert.deepEqual(exporter.delivered[0]!.samples, []);
  assert.deepEqual(exporter.delivered[0]!.counts, [{ minute: 120_000, endpoint: 'GET /a', requests: 2 }]);
});
