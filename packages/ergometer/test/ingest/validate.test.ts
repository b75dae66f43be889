import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ErgometerError } from '../../src/errors';
import { resolveLimits } from '../../src/ingest/limits';
import { parseJsonBody, validateBatch, validateDeploy } from '../../src/ingest/validate';
import { wireBatch } from './support';

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const limits = resolveLimits();

function rejects(value: unknown, messagePart: RegExp | string, code = 'ERGOMETER_BAD_BATCH'): void {
  assert.throws(
    () => validateBatch(value, limits, NOW),
    (error: unknown) => {
      assert.ok(error instanceof ErgometerError, String(error));
      assert.equal(error.code, code);
      assert.equal(error.status, 400);
      if (typeof messagePart === 'string') assert.ok(error.message.includes(messagePart), error.message);
      else assert.match(error.message, messagePart);
      return true;
    },
  );
}

function withSample(patch: Record<string, unknown>): Record<string, unknown> {
  const batch = wireBatch(4, { now: NOW });
  batch.samples[3] = { ...batch.samples[3], ...patch } as (typeof batch.samples)[number];
  return batch;
}

test('a valid agent batch becomes an IngestBatch with every field carried over', () => {
  const wire = wireBatch(3, { now: NOW });
  const batch = validateBatch(wire, limits, NOW);
  assert.equal(batch.batchId, wire.batchId);
  assert.equal(batch.service, 'api');
  assert.equal(batch.hostClass, 'x86-test');
  assert.equal(batch.agentVersion, '0.1.0');
  assert.equal(batch.runtime, 'node v20');
  assert.equal(batch.receivedAt, NOW);
  assert.equal(batch.samples.length, 3);
  const first = batch.samples[0];
  assert.ok(first);
  assert.deepEqual(
    { ...first, flags: { ...first.flags } },
    {
      ts: NOW - 1000,
      endpoint: 'GET /feed/:id',
      status: 200,
      cost: 1000,
      wallMs: 1.5,
      db: 0.5,
      cache: 0.1,
      http: 0,
      flags: { new_ranker: 'on' },
      user: 'u1',
      weight: 100,
      aborted: false,
    },
  );
  assert.deepEqual(batch.counts, [{ minute: NOW, endpoint: 'GET /feed/:id', requests: 300 }]);
});

test('optional fields take their defaults', () => {
  const batch = validateBatch(
    {
      v: 1,
      batchId: 'b',
      service: 's',
      commit: 'c',
      metric: 'cpu_ns',
      samples: [{ ts: NOW, endpoint: 'GET /', status: 204, cost: 0, wallMs: 0 }],
    },
    limits,
    NOW,
  );
  assert.equal(batch.host, '');
  assert.equal(batch.hostClass, '');
  assert.equal(batch.dropped, 0);
  assert.deepEqual(batch.counts, []);
  const sample = batch.samples[0];
  assert.equal(sample?.weight, 1);
  assert.equal(sample?.user, '');
  assert.equal(sample?.db, 0);
});

test('each bad field is named in the message', () => {
  rejects(
    withSample({ cost: 'abc' }),
    'samples[3].cost: expected a finite number ≥ 0 and ≤ 9007199254740991, got "abc"',
  );
  rejects(withSample({ cost: -1 }), 'samples[3].cost');
  rejects(withSample({ cost: Number.POSITIVE_INFINITY }), 'samples[3].cost');
  rejects(withSample({ weight: 0 }), 'samples[3].weight: expected a finite number > 0');
  rejects(withSample({ status: 99 }), 'samples[3].status');
  rejects(withSample({ status: 200.5 }), 'samples[3].status');
  rejects(withSample({ ts: NOW + 2 * 3600_000 }), 'samples[3].ts');
  rejects(withSample({ ts: NOW - 31 * 86_400_000 }), 'samples[3].ts');
  rejects(withSample({ endpoint: '' }), 'samples[3].endpoint');
  rejects(withSample({ endpoint: 'x'.repeat(257) }), 'samples[3].endpoint');
  rejects(withSample({ endpoint: 'GET /\u0000' }), 'samples[3].endpoint: expected a string without control characters');
  rejects(withSample({ endpoint: 'GET /\ud800' }), 'unpaired surrogates');
  rejects(withSample({ flags: { k: 1 } }), 'samples[3].flags["k"]');
  rejects(withSample({ flags: [] }), 'samples[3].flags');
  rejects(withSample({ backend: { db: 'x' } }), 'samples[3].backend.db');
  rejects(withSample({ backend: { cache: -1 } }), 'samples[3].backend.cache');
  rejects(withSample({ backend: { http: null } }), 'samples[3].backend.http');
  rejects(withSample({ wallMs: 'slow' }), 'samples[3].wallMs');
  rejects(withSample({ flags: { 'a\u0007': 'on' } }), 'samples[3].flags key');
  rejects(withSample({ aborted: 'yes' }), 'samples[3].aborted');
  rejects(withSample({ user: 'u'.repeat(129) }), 'samples[3].user');
  rejects({ ...wireBatch(1, { now: NOW }), service: 7 }, 'service: expected a string, got 7');
  rejects({ ...wireBatch(1, { now: NOW }), metric: 'cycles' }, 'metric');
  rejects({ ...wireBatch(1, { now: NOW }), batchId: undefined }, 'batchId');
  rejects({ ...wireBatch(1, { now: NOW }), samples: {} }, 'samples: expected an array');
  rejects({ ...wireBatch(1, { now: NOW }), agent: { dropped: -1 } }, 'agent.dropped');
  rejects(
    { ...wireBatch(1, { now: NOW }), counts: [{ minute: NOW, endpoint: 'e', requests: 1.5 }] },
    'counts[0].requests',
  );
  rejects({ ...wireBatch(1, { now: NOW }), counts: [{ minute: 'x', endpoint: 'e', requests: 1 }] }, 'counts[0].minute');
  rejects(
    { ...wireBatch(1, { now: NOW }), counts: [{ minute: NOW, endpoint: '', requests: 1 }] },
    'counts[0].endpoint',
  );
  rejects({ ...wireBatch(1, { now: NOW }), users: [{ minute: -5, sketch: 'AA==' }] }, 'users[0].minute');
  rejects({ ...wireBatch(1, { now: NOW }), users: [{ minute: NOW, sketch: 'not base64!' }] }, 'users[0].sketch');
  // Base64, but not a users sketch (random bytes): refused with its batch, not stored to fail reads later.
  rejects(
    { ...wireBatch(1, { now: NOW }), users: [{ minute: NOW, sketch: 'q83vEjRWeJCrze8SNFZ4kA==' }] },
    'users[0].sketch',
  );
  rejects([], 'body: expected a JSON object');
  rejects(null, 'body');
});

test('an unknown or missing version is refused', () => {
  rejects(
    { ...wireBatch(1, { now: NOW }), v: 3 },
    'v: this collector speaks wire formats 1 and 2, got 3',
    'ERGOMETER_UNSUPPORTED_VERSION',
  );
  rejects({ ...wireBatch(1, { now: NOW }), v: '1' }, 'got "1"', 'ERGOMETER_UNSUPPORTED_VERSION');
  rejects({ ...wireBatch(1, { now: NOW }), v: undefined }, 'v: expected the wire format version, 1 or 2');
});

test('batch and sample size limits', () => {
  const small = resolveLimits({ maxSamplesPerBatch: 2, maxFlagsPerSample: 2 });
  assert.throws(
    () => validateBatch(wireBatch(3, { now: NOW }), small, NOW),
    /samples: at most 2 samples per batch, got 3/,
  );
  const flags = { a: '1', b: '2', c: '3' };
  assert.throws(
    () => validateBatch(wireBatch(1, { now: NOW, flags }), small, NOW),
    /samples\[0\]\.flags: at most 2 flags/,
  );
});

test('a flag named __proto__ stays a flag', () => {
  const wire = parseJsonBody(
    Buffer.from(JSON.stringify(wireBatch(1, { now: NOW })).replace('"new_ranker"', '"__proto__"')),
    limits,
    'ERGOMETER_BAD_BATCH',
  );
  const batch = validateBatch(wire, limits, NOW);
  assert.deepEqual(Object.entries(batch.samples[0]?.flags ?? {}), [['__proto__', 'on']]);
  assert.equal(JSON.stringify(batch.samples[0]?.flags), '{"__proto__":"on"}');
});

test("a sample's flags read as a plain map: only the flags sent, none inherited, and the same for samples without", () => {
  const wire = wireBatch(3, { now: NOW, flags: { constructor: 'b', beta: 'on' } });
  const [, second, third] = wire.samples;
  if (second === undefined || third === undefined) throw new Error('wireBatch(3) gives three samples');
  second.flags = {};
  delete third.flags;
  const batch = validateBatch(JSON.parse(JSON.stringify(wire)), limits, NOW);
  const [withFlags, emptyFlags, noFlags] = batch.samples.map((sample) => sample.flags);
  assert.deepEqual({ ...withFlags }, { constructor: 'b', beta: 'on' });
  for (const flags of [withFlags, emptyFlags, noFlags]) {
    assert.equal(Object.getPrototypeOf(flags), null);
    assert.equal(flags?.toString, undefined, 'nothing inherited from Object.prototype');
    assert.equal(flags?.hasOwnProperty, undefined);
  }
  assert.deepEqual(Object.keys(emptyFlags ?? {}), []);
  assert.deepEqual(Object.keys(noFlags ?? {}), []);
});

test('parseJsonBody refuses deep nesting and malformed JSON with a 400', () => {
  assert.throws(() => parseJsonBody(Buffer.from('['.repeat(100_000)), limits, 'X'), /nested deeper than 8/);
  assert.throws(() => parseJsonBody(Buffer.from('{"v":1,'), limits, 'X'), /not valid JSON/);
  // 1e999 parses to Infinity: the validator, not the parser, refuses it.
  const parsed = parseJsonBody(Buffer.from('{"x":1e999}'), limits, 'X') as { x: number };
  assert.equal(parsed.x, Number.POSITIVE_INFINITY);
});

test('property: any mutation of one sample field to a wrong type is refused, naming that field', () => {
  const fields = ['ts', 'endpoint', 'status', 'cost', 'wallMs', 'weight'] as const;
  const wrong = fc.oneof(
    fc.constant(null),
    fc.constant('NaN'),
    fc.constant(Number.NaN),
    fc.constant(Number.NEGATIVE_INFINITY),
    fc.constant([]),
    fc.constant({}),
    fc.boolean(),
    fc.double({ min: -1e308, max: -1e-9 }),
  );
  fc.assert(
    fc.property(fc.constantFrom(...fields), wrong, fc.nat(3), (field, value, index) => {
      if (field === 'endpoint' && typeof value === 'string') return; // "NaN" is a valid endpoint name
      const batch = wireBatch(4, { now: NOW });
      (batch.samples[index] as unknown as Record<string, unknown>)[field] = value;
      assert.throws(
        () => validateBatch(batch, limits, NOW),
        (error: unknown) => error instanceof ErgometerError && error.message.startsWith(`samples[${index}].${field}:`),
      );
    }),
  );
});

test('deploys: service and commit required, ts defaults to the receive time', () => {
  assert.deepEqual(validateDeploy({ service: 'api', commit: 'c1' }, limits, NOW), {
    service: 'api',
    commit: 'c1',
    ts: NOW,
  });
  assert.deepEqual(validateDeploy({ service: 'api', commit: 'c1', ts: NOW - 5 }, limits, NOW), {
    service: 'api',
    commit: 'c1',
    ts: NOW - 5,
  });
  assert.equal(
    validateDeploy({ service: 'api', commit: 'c1', ts: 1_700_000_000_000 }, limits, NOW).ts,
    1_700_000_000_000,
  );
  assert.throws(() => validateDeploy({ service: 'api', commit: 'c1', ts: NOW + 2 * 3600_000 }, limits, NOW), /ts:/);
  assert.throws(() => validateDeploy({ service: 'api' }, limits, NOW), /commit: expected a string/);
  assert.throws(
    () => validateDeploy({ service: 'api', commit: 'c', ts: 'now' }, limits, NOW),
    /ts: expected integer milliseconds since the epoch from 2000-01-01/,
  );
});

test('an endpoint met before (interned) is still held to the length limit of the collector checking it', () => {
  const endpoint = 'GET /api/interned/:id';
  validateBatch(JSON.parse(JSON.stringify(wireBatch(2, { now: NOW, endpoints: [endpoint] }))), limits, NOW);
  const second = validateBatch(
    JSON.parse(JSON.stringify(wireBatch(1, { now: NOW, endpoints: [endpoint] }))),
    limits,
    NOW,
  );
  assert.equal(second.samples[0]?.endpoint, endpoint);
  const strict = resolveLimits({ maxEndpointLength: endpoint.length - 1 });
  assert.throws(
    () => validateBatch(JSON.parse(JSON.stringify(wireBatch(1, { now: NOW, endpoints: [endpoint] }))), strict, NOW),
    /samples\[0\]\.endpoint: expected a string of 1 to 20 characters/,
  );
  assert.throws(
    () => validateBatch(wireBatch(1, { now: NOW, endpoints: [`${endpoint}\u0007`] }), limits, NOW),
    /samples\[0\]\.endpoint: expected a string without control characters/,
  );
});
