/**
 * Wire format v2 (docs/wire-format.md): v1's batch with the samples as columns. What the agent sends
 * (its own encoder) must validate to exactly what the same samples give in v1, and every bad column,
 * index or dictionary entry must be refused with its place named.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeColumns } from '@ergometer/agent/wire';
import fc from 'fast-check';
import { ErgometerError } from '../../src/errors';
import { resolveLimits } from '../../src/ingest/limits';
import { parseJsonBody, validateBatch } from '../../src/ingest/validate';
import { type WireSampleInput, wireBatch } from './support';

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const limits = resolveLimits();

/** The batch as v2, through JSON text as it travels. */
function toV2(batch: ReturnType<typeof wireBatch>): Record<string, unknown> {
  const samples = batch.samples.map((s) => ({ weight: 1, ...s }));
  return JSON.parse(JSON.stringify({ ...batch, v: 2, samples: encodeColumns(samples) })) as Record<string, unknown>;
}

function columnsOf(batch: Record<string, unknown>): Record<string, unknown[]> {
  return batch.samples as Record<string, unknown[]>;
}

function rejects(value: unknown, messagePart: string, options = limits): void {
  assert.throws(
    () => validateBatch(value, options, NOW),
    (error: unknown) => {
      assert.ok(error instanceof ErgometerError, String(error));
      assert.equal(error.code, 'ERGOMETER_BAD_BATCH');
      assert.equal(error.status, 400);
      assert.ok(error.message.includes(messagePart), `${error.message} (wanted: ${messagePart})`);
      return true;
    },
  );
}

const name = fc.stringMatching(/^[A-Za-z0-9 /:_.-]{1,30}$/);
const duration = fc.double({ min: 0, max: 10_000, noNaN: true, noDefaultInfinity: true });
const sampleArb: fc.Arbitrary<WireSampleInput> = fc.record(
  {
    ts: fc.integer({ min: NOW - 3_600_000, max: NOW }),
    endpoint: fc.constantFrom('GET /', 'GET /feed/:id', 'POST /login', 'DELETE /cart/items/:id'),
    status: fc.integer({ min: 100, max: 599 }),
    cost: fc.double({ min: 0, max: 1e12, noNaN: true, noDefaultInfinity: true }),
    wallMs: duration,
    backend: fc.record({ db: duration, cache: duration, http: duration }),
    flags: fc.dictionary(name, fc.constantFrom('on', 'off', '', 'v2'), { maxKeys: 3 }),
    user: fc.oneof(fc.constant(''), name),
    weight: fc.double({ min: 0.001, max: 1e6, noNaN: true, noDefaultInfinity: true }),
    aborted: fc.boolean(),
  },
  { requiredKeys: ['ts', 'endpoint', 'status', 'cost', 'wallMs'] },
);

test('property: v2 of any samples validates to exactly what v1 of them does', () => {
  fc.assert(
    fc.property(fc.array(sampleArb, { maxLength: 40 }), (samples) => {
      const batch = wireBatch(0, { now: NOW });
      batch.samples = samples;
      const v1 = validateBatch(JSON.parse(JSON.stringify(batch)), limits, NOW);
      const v2 = validateBatch(toV2(batch), limits, NOW);
      assert.deepEqual(v2, v1);
    }),
    { numRuns: 300 },
  );
});

test('v2 dictionaries: one entry per endpoint and flag set, columns the agent leaves out read as defaults', () => {
  const batch = wireBatch(6, { now: NOW });
  const v2 = toV2(batch);
  const columns = columnsOf(v2);
  assert.deepEqual(columns.endpoints, ['GET /feed/:id', 'POST /login']);
  assert.deepEqual(columns.flagSets, [{ new_ranker: 'on' }, { new_ranker: 'off' }]);
  assert.equal(columns.aborted, undefined, 'no sample aborted: no column');
  const stored = validateBatch(v2, limits, NOW);
  assert.equal(stored.samples.length, 6);
  // Samples of one flag set share one object, which reads as a plain map and cannot be changed.
  assert.equal(stored.samples[0]?.flags, stored.samples[2]?.flags);
  assert.equal(Object.getPrototypeOf(stored.samples[0]?.flags), null);
  assert.ok(Object.isFrozen(stored.samples[0]?.flags));

  // Only the required columns: backend 0, no flags, no user, weight 1, not aborted.
  const bare = wireBatch(2, { now: NOW });
  bare.samples = bare.samples.map(({ ts, endpoint, status, cost, wallMs }) => ({ ts, endpoint, status, cost, wallMs }));
  const minimal = toV2(bare);
  const min = columnsOf(minimal);
  for (const optional of ['db', 'cache', 'http', 'flags', 'user', 'aborted']) assert.equal(min[optional], undefined);
  delete min.weight;
  delete min.flagSets;
  for (const s of validateBatch(minimal, limits, NOW).samples) {
    assert.deepEqual(
      {
        db: s.db,
        cache: s.cache,
        http: s.http,
        flags: { ...s.flags },
        user: s.user,
        weight: s.weight,
        aborted: s.aborted,
      },
      { db: 0, cache: 0, http: 0, flags: {}, user: '', weight: 1, aborted: false },
    );
  }
});

test('a v2 flag set named __proto__ stays a flag', () => {
  const batch = wireBatch(1, { now: NOW });
  const text = JSON.stringify(toV2(batch)).replace(
    '"flagSets":[{"new_ranker":"on"}]',
    '"flagSets":[{"__proto__":"on"}]',
  );
  assert.ok(text.includes('"__proto__":"on"'));
  const stored = validateBatch(parseJsonBody(Buffer.from(text), limits, 'ERGOMETER_BAD_BATCH'), limits, NOW);
  assert.deepEqual(Object.entries(stored.samples[0]?.flags ?? {}), [['__proto__', 'on']]);
});

test('each bad v2 column, index or dictionary entry is refused and named', () => {
  const mutate = (change: (columns: Record<string, unknown>) => void): Record<string, unknown> => {
    const v2 = toV2(wireBatch(4, { now: NOW }));
    change(v2.samples as Record<string, unknown>);
    return v2;
  };
  rejects({ ...toV2(wireBatch(1, { now: NOW })), samples: [] }, 'samples: expected an object of columns');
  rejects(
    mutate((c) => delete c.ts),
    'samples.ts: expected an array',
  );
  rejects(
    mutate((c) => delete c.cost),
    'samples.cost: expected an array of 4 values (as many as samples.ts)',
  );
  rejects(
    mutate((c) => (c.status as unknown[]).pop()),
    'samples.status: expected an array of 4 values',
  );
  rejects(
    mutate((c) => (c.db = 'x')),
    'samples.db: expected an array of 4 values',
  );
  rejects(
    mutate((c) => ((c.ts as unknown[])[2] = 'soon')),
    'samples.ts[2]: expected milliseconds since the epoch',
  );
  rejects(
    mutate((c) => ((c.endpoint as unknown[])[1] = 2)),
    'samples.endpoint[1]: expected an index into samples.endpoints (0 to 1)',
  );
  rejects(
    mutate((c) => ((c.endpoint as unknown[])[1] = 0.5)),
    'samples.endpoint[1]',
  );
  rejects(
    mutate((c) => ((c.status as unknown[])[3] = 99)),
    'samples.status[3]: expected an integer HTTP status',
  );
  rejects(
    mutate((c) => ((c.cost as unknown[])[0] = -1)),
    'samples.cost[0]: expected a finite number ≥ 0',
  );
  rejects(
    mutate((c) => ((c.wallMs as unknown[])[0] = null)),
    'samples.wallMs[0]',
  );
  rejects(
    mutate((c) => ((c.http as unknown[])[3] = -0.5)),
    'samples.http[3]',
  );
  rejects(
    mutate((c) => ((c.flags as unknown[])[0] = 2)),
    'samples.flags[0]: expected -1 (no flags) or an index into samples.flagSets (0 to 1)',
  );
  rejects(
    mutate((c) => ((c.flags as unknown[])[0] = -2)),
    'samples.flags[0]',
  );
  rejects(
    mutate((c) => ((c.user as unknown[])[1] = 7)),
    'samples.user[1]: expected a string',
  );
  rejects(
    mutate((c) => ((c.weight as unknown[])[2] = 0)),
    'samples.weight[2]: expected a finite number > 0',
  );
  rejects(
    mutate((c) => (c.aborted = [0, 1, true, 0])),
    'samples.aborted[2]: expected 0 or 1, got true',
  );
  rejects(
    mutate((c) => ((c.endpoints as unknown[])[1] = 'GET /\u0000')),
    'samples.endpoints[1]: expected a string without control characters',
  );
  rejects(
    mutate((c) => (c.endpoints = 'GET /')),
    'samples.endpoints: expected an array',
  );
  rejects(
    mutate((c) => delete c.endpoints),
    'samples.endpoint[0]: expected an index into samples.endpoints, which is empty, got 0',
  );
  rejects(
    mutate((c) => ((c.flagSets as unknown[])[1] = ['on'])),
    'samples.flagSets[1]: expected an object of flag key → variant',
  );
  rejects(
    mutate((c) => ((c.flagSets as unknown[])[0] = { new_ranker: 5 })),
    'samples.flagSets[0]["new_ranker"]: expected a string',
  );
});

test('v2 is held to the same limits as v1', () => {
  const small = resolveLimits({ maxSamplesPerBatch: 2, maxFlagsPerSample: 2, maxEndpointLength: 8 });
  rejects(
    toV2(wireBatch(3, { now: NOW, endpoints: ['GET /'] })),
    'samples.ts: at most 2 samples per batch, got 3',
    small,
  );
  rejects(
    toV2(wireBatch(1, { now: NOW, endpoints: ['GET /'], flags: { a: '1', b: '2', c: '3' } })),
    'samples.flagSets[0]: at most 2 flags per sample',
    small,
  );
  rejects(
    toV2(wireBatch(1, { now: NOW, endpoints: ['GET /a/long/route'] })),
    'samples.endpoints[0]: expected a string of 1 to 8 characters',
    small,
  );
});
