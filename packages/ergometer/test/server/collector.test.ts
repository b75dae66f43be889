import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createCollector } from '../../src/server/collector';
import { wireBatch } from '../ingest/support';
import { buildPprof } from '../profile/pprof';
import { gated, INGEST_TOKEN, parsePrometheus, READ_TOKEN, startTestCollector } from './harness';

function errorCode(json: unknown): string | undefined {
  return (json as { error?: { code?: string } } | undefined)?.error?.code;
}

async function metricsOf(url: string): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await response.text());
}

/** Sends a body in chunks without Content-Length (chunked transfer), as a streaming client would. */
function postChunked(url: string, chunks: Buffer[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/samples`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INGEST_TOKEN}`, 'content-type': 'application/json' },
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    (async () => {
      for (const chunk of chunks) {
        if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
      }
      req.end();
    })().catch(reject);
  });
}

test('health and metrics answer without a token; every /v1 route needs the right kind of token', {
  timeout: 60_000,
}, async (t) => {
  const c = await startTestCollector(t);
  const health = await fetch(`${c.url}/health`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'ok');
  await metricsOf(c.url);

  const batch = wireBatch(2);
  for (const token of [null, 'wrong', READ_TOKEN, `${INGEST_TOKEN}x`]) {
    const answer = await c.post('/v1/samples', batch, { token });
    assert.equal(answer.status, 401, `token ${token}`);
    assert.equal(errorCode(answer.json), 'ERGOMETER_UNAUTHORIZED');
    assert.doesNotMatch(answer.text, /test-(ingest|read)-token/);
  }
  for (const route of ['/v1/deploys', '/v1/profiles?service=a&commit=b&metric=cpu_ns&from=1&to=2']) {
    assert.equal((await c.post(route, {}, { token: READ_TOKEN })).status, 401);
  }
  for (const route of ['/v1/services', '/v1/endpoints?service=api', '/v1/deploys?service=api', '/v1/profiles/x']) {
    assert.equal((await c.get(route, { token: null })).status, 401);
    assert.equal((await c.get(route, { token: INGEST_TOKEN })).status, 401);
  }
  assert.equal(await c.store.sampleCount(), 0);
  assert.equal((await c.post('/v1/samples', batch)).status, 200);
  assert.equal((await c.get('/v1/services')).status, 200);
  const metrics = await metricsOf(c.url);
  assert.equal(metrics.get('ergometer_requests_rejected_total{reason="unauthorized"}'), 4);
});

test('a batch is acknowledged once durable; the same batchId again is acknowledged as a duplicate and not stored', {
  timeout: 60_000,
}, async (t) => {
  const c = await startTestCollector(t);
  const batch = wireBatch(25);
  const first = await c.post('/v1/samples', batch);
  assert.equal(first.status, 200);
  assert.deepEqual(first.json, { accepted: 25 });
  assert.equal(await c.store.sampleCount('api'), 25);
  const again = await c.post('/v1/samples', batch, { gzip: true });
  assert.equal(again.status, 200);
  assert.deepEqual(again.json, { accepted: 25, duplicate: true });
  assert.equal(await c.store.sampleCount('api'), 25);
  const metrics = await metricsOf(c.url);
  assert.equal(metrics.get('ergometer_batches_accepted_total'), 1);
  assert.equal(metrics.get('ergometer_samples_accepted_total'), 25);
  assert.equal(metrics.get('ergometer_batches_duplicate_total'), 1);
  assert.equal(metrics.get('ergometer_insert_duration_seconds_count'), 2);
  assert.equal(metrics.get('ergometer_write_queue_batches'), 0);
});

test('a bad batch is a 400 naming the field, and nothing of it is stored', { timeout: 60_000 }, async (t) => {
  const c = await startTestCollector(t);
  const batch = wireBatch(5);
  (batch.samples[3] as unknown as Record<string, unknown>).cost = 'abc';
  const answer = await c.post('/v1/samples', batch);
  assert.equal(answer.status, 400);
  assert.deepEqual(answer.json, {
    error: {
      code: 'ERGOMETER_BAD_BATCH',
      message: 'samples[3].cost: expected a finite number ≥ 0 and ≤ 9007199254740991, got "abc"',
    },
  });
  assert.equal((await c.post('/v1/samples', '{"v":1,')).status, 400);
  assert.equal(
    errorCode((await c.post('/v1/samples', { ...wireBatch(1), v: 3 })).json),
    'ERGOMETER_UNSUPPORTED_VERSION',
  );
  assert.equal(await c.store.sampleCount(), 0);
  const metrics = await metricsOf(c.url);
  assert.equal(metrics.get('ergometer_requests_rejected_total{reason="bad_batch"}'), 2);
  assert.equal(metrics.get('ergometer_requests_rejected_total{reason="unsupported_version"}'), 1);
});

test('413 for a body over the limit (declared or streamed) and for a gzip bomb; 415 for other encodings', {
  timeout: 60_000,
}, async (t) => {
  const c = await startTestCollector(t, { limits: { maxBodyBytes: 64 * 1024, maxInflatedBytes: 256 * 1024 } });
  const big = wireBatch(1);
  (big.samples[0] as unknown as Record<string, unknown>).padding = 'x'.repeat(100_000);
  const declared = await c.post('/v1/samples', big);
  assert.equal(declared.status, 413);
  assert.equal(errorCode(declared.json), 'ERGOMETER_TOO_LARGE');

  const streamed = await postChunked(
    c.url,
    Array.from({ length: 20 }, () => Buffer.alloc(8192, 0x20)),
  );
  assert.equal(streamed.status, 413);

  // 1 MB of zeros gzips to about 1 KB: small on the wire, too large once inflated.
  const bomb = await c.post('/v1/samples', gzipSync(Buffer.alloc(1024 * 1024)), {
    headers: { 'content-encoding': 'gzip' },
  });
  assert.equal(bomb.status, 413);
  assert.match(errorCode(bomb.json) ?? '', /TOO_LARGE/);

  const corrupt = await c.post('/v1/samples', Buffer.from('not gzip at all'), {
    headers: { 'content-encoding': 'gzip' },
  });
  assert.equal(corrupt.status, 400);
  const brotli = await c.post('/v1/samples', wireBatch(1), { headers: { 'content-encoding': 'br' } });
  assert.equal(brotli.status, 415);

  // A gzip batch within the limits goes through.
  assert.equal((await c.post('/v1/samples', wireBatch(10), { gzip: true })).status, 200);
  assert.equal(await c.store.sampleCount(), 10);
  const metrics = await metricsOf(c.url);
  assert.equal(metrics.get('ergometer_requests_rejected_total{reason="too_large"}'), 3);
  assert.equal(metrics.get('ergometer_requests_rejected_total{reason="unsupported_encoding"}'), 1);
});

test('429 with Retry-After while the write queue is full; the same batch succeeds later', {
  timeout: 60_000,
}, async (t) => {
  const gate = { value: undefined as ReturnType<typeof gated> | undefined };
  const c = await startTestCollector(t, {
    queue: { maxBatches: 1, retryAfterSeconds: 2 },
    wrapStore: (store) => {
      gate.value = gated(store);
      return gate.value.store;
    },
  });
  const held = c.post('/v1/samples', wireBatch(3));
  while ((gate.value?.groups.length ?? 0) === 0) await new Promise((r) => setTimeout(r, 5));
  const refusedBatch = wireBatch(4);
  const refused = await c.post('/v1/samples', refusedBatch);
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get('retry-after'), '2');
  assert.equal(errorCode(refused.json), 'ERGOMETER_QUEUE_FULL');
  const metrics = await metricsOf(c.url);
  assert.equal(metrics.get('ergometer_write_queue_batches'), 1);
  assert.equal(metrics.get('ergometer_write_queue_samples'), 3);
  gate.value?.open();
  assert.equal((await held).status, 200);
  assert.equal((await c.post('/v1/samples', refusedBatch)).status, 200);
  assert.equal(await c.store.sampleCount(), 7);
  assert.equal((await metricsOf(c.url)).get('ergometer_requests_rejected_total{reason="queue_full"}'), 1);
});

test('batches arriving during a write are written together in one group commit', { timeout: 60_000 }, async (t) => {
  const gate = { value: undefined as ReturnType<typeof gated> | undefined };
  const c = await startTestCollector(t, {
    wrapStore: (store) => {
      gate.value = gated(store);
      return gate.value.store;
    },
  });
  const first = c.post('/v1/samples', wireBatch(2));
  while ((gate.value?.groups.length ?? 0) === 0) await new Promise((r) => setTimeout(r, 5));
  const same = wireBatch(3);
  const waiting = [
    c.post('/v1/samples', same),
    c.post('/v1/samples', wireBatch(3)),
    c.post('/v1/samples', wireBatch(3)),
  ];
  while ((await metricsOf(c.url)).get('ergometer_write_queue_batches') !== 4)
    await new Promise((r) => setTimeout(r, 5));
  // A retry of a batch still in the queue joins it instead of being written twice.
  const retry = c.post('/v1/samples', same);
  gate.value?.open();
  assert.deepEqual(
    (await Promise.all([first, ...waiting])).map((a) => a.status),
    [200, 200, 200, 200],
  );
  assert.deepEqual((await retry).json, { accepted: 3, duplicate: true });
  assert.deepEqual(gate.value?.groups, [1, 3]);
  assert.equal(await c.store.sampleCount(), 11);
});

test('cardinality guard: samples past the endpoint or flag-key limit are refused and counted, the rest stored', {
  timeout: 60_000,
}, async (t) => {
  const c = await startTestCollector(t, { limits: { maxEndpointsPerService: 3, maxFlagKeysPerService: 2 } });
  const endpoints = ['GET /a', 'GET /b', 'GET /c', 'GET /d', 'GET /e'];
  const answer = await c.post('/v1/samples', wireBatch(5, { endpoints, flags: {} }));
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.json, { accepted: 3, refused: { cardinality: 2, endpoints: 2, flagKeys: 0, counts: 0 } });
  assert.equal(await c.store.sampleCount(), 3);

  const flagged = wireBatch(2, { endpoints: ['GET /a'], flags: { f1: 'on', f2: 'on', f3: 'on' } });
  assert.deepEqual((await c.post('/v1/samples', flagged)).json, {
    accepted: 0,
    refused: { cardinality: 2, endpoints: 0, flagKeys: 2, counts: 0 },
  });
  const metrics = await metricsOf(c.url);
  assert.equal(metrics.get('ergometer_cardinality_refused_total{limit="endpoints",row="sample"}'), 2);
  assert.equal(metrics.get('ergometer_cardinality_refused_total{limit="flag_keys",row="sample"}'), 2);

  // A collector started later over the same store knows the stored endpoints: the limit survives a restart.
  const second = createCollector({
    store: c.store,
    ingestTokens: [INGEST_TOKEN],
    readTokens: [READ_TOKEN],
    limits: { maxEndpointsPerService: 3 },
    log: () => undefined,
  });
  const address = await second.listen(0, '127.0.0.1');
  t.after(() => second.close());
  const response = await fetch(`http://127.0.0.1:${address.port}/v1/samples`, {
    method: 'POST',
    headers: { authorization: `Bearer ${INGEST_TOKEN}` },
    body: JSON.stringify(wireBatch(2, { endpoints: ['GET /a', 'GET /z'], flags: {} })),
  });
  assert.deepEqual(await response.json(), {
    accepted: 1,
    refused: { cardinality: 1, endpoints: 1, flagKeys: 0, counts: 0 },
  });
});

test('read API: services, endpoints, commits, timeseries, deploys and profiles', { timeout: 60_000 }, async (t) => {
  const c = await startTestCollector(t);
  const now = Date.now();
  assert.equal((await c.post('/v1/samples', wireBatch(20, { now }))).status, 200);

  const services = (await c.get('/v1/services')).json as Array<{ service: string; samples: number }>;
  assert.deepEqual(
    services.map((s) => [s.service, s.samples]),
    [['api', 20]],
  );
  const endpoints = (await c.get('/v1/endpoints?service=api&commit=abc123')).json as Array<{
    endpoint: string;
    samples: number;
  }>;
  assert.deepEqual(endpoints.map((e) => [e.endpoint, e.samples]).sort(), [
    ['GET /feed/:id', 10],
    ['POST /login', 10],
  ]);
  const commits = (await c.get('/v1/commits?service=api')).json as Array<{ commit: string }>;
  assert.deepEqual(
    commits.map((x) => x.commit),
    ['abc123'],
  );
  const series = (
    await c.get(`/v1/timeseries?service=api&endpoint=${encodeURIComponent('POST /login')}&bucketMs=60000`)
  ).json as {
    bucketMs: number;
    points: Array<{ endpoint: string; samples: number; costMean: number }>;
  };
  assert.equal(series.bucketMs, 60_000);
  assert.equal(
    series.points.reduce((sum, p) => sum + p.samples, 0),
    10,
  );
  assert.ok(series.points.every((p) => p.endpoint === 'POST /login'));
  // Samples 1, 3, …, 19 of wireBatch cost 1000 + 17·i.
  const costs = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19].map((i) => 1000 + 17 * i);
  const total = series.points.reduce((sum, p) => sum + p.costMean * p.samples, 0);
  assert.ok(Math.abs(total - costs.reduce((a, b) => a + b, 0)) < 1e-6);

  assert.equal((await c.post('/v1/deploys', { service: 'api', commit: 'def456', ts: now - 10 })).status, 200);
  assert.equal((await c.post('/v1/deploys', { service: 'api' })).status, 400);
  assert.deepEqual((await c.get('/v1/deploys?service=api')).json, [{ service: 'api', commit: 'def456', ts: now - 10 }]);

  // Bytes that are not a pprof are refused, naming the problem, and not stored.
  const fake = await c.post(
    `/v1/profiles?service=api&commit=abc123&host=web-7&metric=cpu_ns&from=${now - 60_000}&to=${now}`,
    gzipSync(Buffer.from('fake pprof protobuf bytes')),
  );
  assert.equal(fake.status, 400);
  assert.equal(errorCode(fake.json), 'ERGOMETER_BAD_PROFILE');
  const pprof = buildPprof('cpu_ns', [
    { stack: [{ name: 'handler', file: '/app/a.js', line: 1 }], endpoint: 'GET /feed/:id', cost: 5000 },
  ]);
  const stored = await c.post(
    `/v1/profiles?service=api&commit=abc123&host=web-7&metric=cpu_ns&from=${now - 60_000}&to=${now}`,
    pprof,
    {
      headers: { 'content-type': 'application/octet-stream' },
    },
  );
  assert.equal(stored.status, 200, stored.text);
  const id = (stored.json as { id: string }).id;
  const list = (await c.get('/v1/profiles?service=api')).json as Array<{ id: string; bytes: number }>;
  assert.deepEqual(
    list.map((p) => [p.id, p.bytes]),
    [[id, pprof.length]],
  );
  const download = await fetch(`${c.url}/v1/profiles/${encodeURIComponent(id)}`, {
    headers: { authorization: `Bearer ${READ_TOKEN}` },
  });
  assert.equal(download.status, 200);
  assert.deepEqual(Buffer.from(await download.arrayBuffer()), pprof);
  assert.equal((await c.get('/v1/profiles/no-such-id')).status, 404);
  assert.equal((await c.post('/v1/profiles?service=api&commit=c&metric=cpu_ns', pprof)).status, 400);

  // Without detectors (no `read.alerts`) the collector says so.
  const compare = await c.get('/v1/compare?service=api&base=a&head=b');
  assert.equal(compare.status, 200);
  assert.ok(Array.isArray(compare.json));
  const alerts = await c.get('/v1/alerts?service=api');
  assert.equal(alerts.status, 501);
  assert.equal(errorCode(alerts.json), 'ERGOMETER_NOT_IMPLEMENTED');
  const diffWithoutCommits = await c.get('/v1/profiles/diff?service=api');
  assert.equal(diffWithoutCommits.status, 400);
  assert.equal(errorCode(diffWithoutCommits.json), 'ERGOMETER_BAD_QUERY');
  const missing = await c.get('/v1/endpoints');
  assert.equal(missing.status, 400);
  assert.match((missing.json as { error: { message: string } }).error.message, /^service: required/);
  assert.equal((await c.get('/v1/endpoints?service=api&from=abc')).status, 400);
  assert.equal((await c.get('/v1/timeseries?service=api&bucketMs=1000')).status, 400);
  assert.equal((await c.get('/v1/nothing')).status, 404);
  assert.equal((await c.get('/v1/samples')).status, 405);
});

test('close() finishes the write in flight before resolving: the acknowledged batch is stored', {
  timeout: 60_000,
}, async (t) => {
  const gate = { value: undefined as ReturnType<typeof gated> | undefined };
  const c = await startTestCollector(t, {
    wrapStore: (store) => {
      gate.value = gated(store);
      return gate.value.store;
    },
  });
  const posted = c.post('/v1/samples', wireBatch(6));
  while ((gate.value?.groups.length ?? 0) === 0) await new Promise((r) => setTimeout(r, 5));
  const closed = c.collector.close();
  gate.value?.open();
  assert.equal((await posted).status, 200);
  await closed;
  assert.equal(await c.store.sampleCount(), 6);
});

test('a batch the store cannot write fails alone (503), not the batches grouped with it', {
  timeout: 60_000,
}, async (t) => {
  const gate = { value: undefined as ReturnType<typeof gated> | undefined };
  const c = await startTestCollector(t, {
    wrapStore: (store) => {
      gate.value = gated(store, (batch) => batch.batchId === 'poison');
      return gate.value.store;
    },
  });
  const first = c.post('/v1/samples', wireBatch(1));
  while ((gate.value?.groups.length ?? 0) === 0) await new Promise((r) => setTimeout(r, 5));
  const grouped = [
    c.post('/v1/samples', wireBatch(2)),
    c.post('/v1/samples', wireBatch(3, { batchId: 'poison' })),
    c.post('/v1/samples', wireBatch(4)),
  ];
  while ((await metricsOf(c.url)).get('ergometer_write_queue_batches') !== 4)
    await new Promise((r) => setTimeout(r, 5));
  gate.value?.open();
  const answers = await Promise.all([first, ...grouped]);
  assert.deepEqual(
    answers.map((a) => a.status),
    [200, 200, 503, 200],
  );
  assert.equal(errorCode(answers[2]?.json), 'ERGOMETER_STORE_UNAVAILABLE');
  assert.ok(answers[2]?.headers.get('retry-after'));
  assert.deepEqual(gate.value?.groups, [1, 3, 1, 1, 1]);
  assert.equal(await c.store.sampleCount(), 7);
  assert.equal((await metricsOf(c.url)).get('ergometer_requests_rejected_total{reason="store_error"}'), 1);
});

test('429 while too many uploads are being received at once', { timeout: 60_000 }, async (t) => {
  const c = await startTestCollector(t, { limits: { maxConcurrentUploads: 1 } });
  const body = Buffer.from(JSON.stringify(wireBatch(3)));
  // A slow client: headers and half of the body, the rest later.
  const slow = request(`${c.url}/v1/samples`, {
    method: 'POST',
    headers: { authorization: `Bearer ${INGEST_TOKEN}`, 'content-length': body.length },
  });
  const slowAnswer = new Promise<number>((resolve, reject) => {
    slow.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    slow.on('error', reject);
  });
  slow.write(body.subarray(0, 100));
  while ((await metricsOf(c.url)).get('ergometer_uploads_in_progress') !== 1)
    await new Promise((r) => setTimeout(r, 5));
  const busy = await c.post('/v1/samples', wireBatch(2));
  assert.equal(busy.status, 429);
  assert.equal(errorCode(busy.json), 'ERGOMETER_BUSY');
  assert.ok(busy.headers.get('retry-after'));
  slow.end(body.subarray(100));
  assert.equal(await slowAnswer, 200);
  assert.equal((await c.post('/v1/samples', wireBatch(2))).status, 200);
  assert.equal(await c.store.sampleCount(), 5);
  assert.equal((await metricsOf(c.url)).get('ergometer_requests_rejected_total{reason="busy"}'), 1);
});
