/**
 * HttpExporter on its own, against the test collector: what a request looks like, how failures are
 * classified and retried, the flush deadline, and the marks that keep the agent's own traffic out of
 * the app's measurements.
 */
import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, type TestContext, test } from 'node:test';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { currentRequest } from '../../src/context/request-context';
import { Batcher } from '../../src/export/batcher';
import { decodeColumns, encodeColumns, type WireColumns } from '../../src/export/columns';
import { HttpExporter, isExporterRequest, parseRetryAfter, serializeAndCompress } from '../../src/export/http-exporter';
import { FaultyCollector } from '../support/faulty-collector';
import { FileAgent } from '../support/file-agent';
import { HEADER, sample } from '../unit/support/wire';

function listen<T>(t: TestContext, name: string): T[] {
  const messages: T[] = [];
  const onMessage = (message: unknown) => messages.push(message as T);
  diagnosticsChannel.subscribe(name, onMessage);
  t.after(() => diagnosticsChannel.unsubscribe(name, onMessage));
  return messages;
}

const FAST = { initialDelayMs: 5, maxDelayMs: 50, maxRetryAfterMs: 2000 };

let collector: FaultyCollector;
before(async () => {
  collector = await FaultyCollector.start('tok');
});
after(async () => {
  await collector.stop();
});

describe('parseRetryAfter', () => {
  test('delay-seconds and HTTP-dates; anything else is ignored', () => {
    const now = Date.parse('2026-11-27T03:00:00Z');
    assert.equal(parseRetryAfter('120', now), 120_000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('Fri, 27 Nov 2026 03:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Fri, 27 Nov 2026 02:59:00 GMT', now), 0, 'a date in the past: now');
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('-5', now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
  });
});

describe('serializeAndCompress', () => {
  test('property: wire format 1: gunzip gives exactly JSON.stringify(batch), however many slices', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 700 }),
        fc.array(fc.record({ minute: fc.nat(), endpoint: fc.string(), requests: fc.nat() }), { maxLength: 3 }),
        async (n, counts) => {
          const batch = {
            ...HEADER,
            batchId: 'b',
            agent: { ...HEADER.agent, dropped: 3 },
            samples: Array.from({ length: n }, (_, i) => sample(i, i % 3 === 0 ? { flags: { 'k"\\': 'v\n' } } : {})),
            counts,
            users: [{ minute: 0, sketch: 'AQQ=' }],
          };
          const json = zlib.gunzipSync(await serializeAndCompress(batch, 1)).toString('utf8');
          assert.equal(json, JSON.stringify(batch));
        },
      ),
      { numRuns: 30 },
    );
  });

  test('property: wire format 2 (the default): the batch with its samples as columns, which decode to the samples', async () => {
    const duration = fc.double({ min: 0, max: 1e4, noNaN: true, noDefaultInfinity: true });
    const wireSample = fc.record(
      {
        ts: fc.nat(),
        endpoint: fc.constantFrom('GET /', 'GET /a/:id', 'POST /b'),
        status: fc.integer({ min: 100, max: 599 }),
        cost: fc.nat(),
        wallMs: duration,
        weight: fc.double({ min: 0.01, max: 1e4, noNaN: true, noDefaultInfinity: true }),
        backend: fc.record({ db: duration, cache: duration, http: duration }),
        flags: fc.dictionary(fc.string({ minLength: 1 }), fc.string(), { minKeys: 1, maxKeys: 3 }),
        user: fc.string({ minLength: 1 }),
        aborted: fc.constant(true),
        flagsDropped: fc.integer({ min: 1, max: 9 }),
      },
      { requiredKeys: ['ts', 'endpoint', 'status', 'cost', 'wallMs', 'weight', 'backend'] },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(wireSample, { maxLength: 300 }), async (samples) => {
        const batch = {
          ...HEADER,
          batchId: 'b',
          agent: { ...HEADER.agent, dropped: 0 },
          samples,
          counts: [],
          users: [],
        };
        const json = zlib.gunzipSync(await serializeAndCompress(batch)).toString('utf8');
        assert.equal(json, JSON.stringify({ ...batch, v: 2, samples: encodeColumns(samples) }));
        const sent = JSON.parse(json) as { v: number; samples: WireColumns };
        assert.equal(sent.v, 2);
        assert.deepEqual(decodeColumns(sent.samples), JSON.parse(JSON.stringify(samples)));
        assert.ok(sent.samples.endpoints.length <= 3, 'each endpoint name once');
      }),
      { numRuns: 40 },
    );
  });
});

describe('wire format fallback', () => {
  /** A collector from before wire format 2: it refuses v2 as such, and stores v1. */
  async function olderCollector(t: TestContext, refuseV1 = false) {
    const arrivals: Array<{ v: number; batchId: string }> = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const batch = JSON.parse(zlib.gunzipSync(Buffer.concat(chunks)).toString('utf8'));
        arrivals.push({ v: batch.v, batchId: batch.batchId });
        const error = (code: string, message: string) =>
          res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code, message } }));
        if (batch.v !== 1)
          return error('ERGOMETER_UNSUPPORTED_VERSION', 'v: this collector speaks wire format 1, got 2');
        if (refuseV1) return error('ERGOMETER_BAD_BATCH', 'samples[0].cost: expected a finite number');
        res.end(JSON.stringify({ accepted: batch.samples.length }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrivals };
  }

  test('a collector that does not speak wire format 2 gets the same batch again as v1, and v1 from then on, with one warning', async (t) => {
    const { url, arrivals } = await olderCollector(t);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const exporter = new HttpExporter(url, { requestTimeoutMs: 2000, retry: FAST });
    const batch = (id: string) => ({
      ...HEADER,
      batchId: id,
      agent: { ...HEADER.agent, dropped: 0 },
      samples: [sample(1), sample(2)],
      counts: [],
      users: [],
    });
    assert.equal(exporter.wireFormat, 2);
    await exporter.send(batch('first'));
    await exporter.send(batch('second'));
    await exporter.close();
    assert.deepEqual(arrivals, [
      { v: 2, batchId: 'first' },
      { v: 1, batchId: 'first' },
      { v: 1, batchId: 'second' },
    ]);
    assert.equal(exporter.wireFormat, 1);
    await new Promise((resolve) => setImmediate(resolve));
    const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'ERGOMETER_WIRE_FORMAT_1');
    assert.equal(ours.length, 1);
    assert.match(ours[0]?.message ?? '', /does not speak wire format 2/);
  });

  test('any other 400 refuses the batch for good: no second try in v1', async (t) => {
    const { url, arrivals } = await olderCollector(t, true);
    const exporter = new HttpExporter(url, { requestTimeoutMs: 2000, retry: FAST });
    const batch = {
      ...HEADER,
      batchId: 'bad',
      agent: { ...HEADER.agent, dropped: 0 },
      samples: [sample(1)],
      counts: [],
      users: [],
    };
    await assert.rejects(exporter.send(batch), { code: 'ERGOMETER_COLLECTOR_REJECTED' });
    await assert.rejects(exporter.send({ ...batch, batchId: 'bad-again' }), { code: 'ERGOMETER_COLLECTOR_REJECTED' });
    await exporter.close();
    // The first try in v2 is refused as a version; its v1 retry is refused for its data; the next batch
    // goes straight as v1 and is refused once.
    assert.deepEqual(arrivals, [
      { v: 2, batchId: 'bad' },
      { v: 1, batchId: 'bad' },
      { v: 1, batchId: 'bad-again' },
    ]);
  });
});

describe('the request', () => {
  test('POST {collector}/v1/samples, gzipped JSON, bearer token; a base path is kept', async () => {
    const seen: http.IncomingHttpHeaders[] = [];
    const paths: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers);
      paths.push(req.url ?? '');
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const batch = JSON.parse(zlib.gunzipSync(Buffer.concat(chunks)).toString('utf8'));
        res.end(JSON.stringify({ accepted: batch.samples.length }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const exporter = new HttpExporter(`http://127.0.0.1:${port}/ingest/`, { token: 'tok', requestTimeoutMs: 2000 });
      const batcher = new Batcher(HEADER, exporter, {
        flushIntervalMs: 60_000,
        maxBatchSamples: 10,
        maxQueuedSamples: 100,
      });
      for (let i = 0; i < 25; i++) batcher.add(sample(i));
      await batcher.flush();
      await exporter.close();
      assert.deepEqual(paths, ['/ingest/v1/samples', '/ingest/v1/samples', '/ingest/v1/samples']);
      for (const headers of seen) {
        assert.equal(headers.authorization, 'Bearer tok');
        assert.equal(headers['content-encoding'], 'gzip');
        assert.equal(headers['content-type'], 'application/json');
        assert.match(String(headers['user-agent']), /^ergometer-agent\/\d+\.\d+\.\d+ node\/v\d+/);
      }
    } finally {
      server.close();
    }
  });

  test('no token, no Authorization header', async (t) => {
    const headers: http.IncomingHttpHeaders[] = [];
    const server = http.createServer((req, res) => {
      headers.push(req.headers);
      req.resume().on('end', () => res.end('{}'));
    });
    t.after(() => server.close());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const exporter = new HttpExporter(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, {
      requestTimeoutMs: 2000,
    });
    await exporter.send({
      ...HEADER,
      batchId: 'b',
      agent: { ...HEADER.agent, dropped: 0 },
      samples: [],
      counts: [],
      users: [],
    });
    await exporter.close();
    assert.equal(headers[0]?.authorization, undefined);
  });
});

describe('failures', () => {
  test('5xx: retried with the same body until it passes; delays are full-jitter under a doubling ceiling', async (t) => {
    const retries = listen<{ batchId: string; attempt: number; delayMs: number; status?: number }>(
      t,
      'ergometer:agent:batch-retry',
    );
    await collector.setMode('status-500');
    const exporter = new HttpExporter(collector.url, { token: 'tok', requestTimeoutMs: 2000, retry: FAST });
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 10,
      maxQueuedSamples: 100,
    });
    batcher.add(sample(0));
    const flushed = batcher.flush();
    while (retries.length < 4) await new Promise((resolve) => setTimeout(resolve, 5));
    await collector.setMode('ok');
    await flushed;
    await exporter.close();
    const batchId = retries[0]!.batchId;
    assert.ok(retries.every((r) => r.batchId === batchId && r.status === 500));
    assert.equal(collector.batches.get(batchId)?.samples.length, 1);
    for (const r of retries) {
      const ceiling = Math.min(FAST.maxDelayMs, FAST.initialDelayMs * 2 ** (r.attempt - 1));
      assert.ok(r.delayMs >= 0 && r.delayMs <= ceiling, `attempt ${r.attempt}: ${r.delayMs} ms > ${ceiling}`);
    }
  });

  test('401: not retried, dropped, counted, and one process warning for all such batches', async (t) => {
    const drops = listen<{ count: number; reason: string }>(t, 'ergometer:agent:samples-dropped');
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const exporter = new HttpExporter(collector.url, { token: 'wrong', requestTimeoutMs: 2000, retry: FAST });
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 2,
      maxQueuedSamples: 100,
    });
    const requestsBefore = collector.requests;
    for (let i = 0; i < 6; i++) batcher.add(sample(i));
    await batcher.flush();
    await exporter.close();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(collector.requests - requestsBefore, 3, 'one request per batch: no retries');
    assert.deepEqual(drops, [
      { count: 2, reason: 'rejected' },
      { count: 2, reason: 'rejected' },
      { count: 2, reason: 'rejected' },
    ]);
    const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'ERGOMETER_COLLECTOR_REJECTED');
    assert.equal(ours.length, 1);
    assert.match(ours[0]!.message, /HTTP 401.*ERGOMETER_TOKEN/);
  });

  test('a hanging collector: each attempt ends at requestTimeoutMs, and flushWithin gives up at its deadline', async (t) => {
    const drops = listen<{ count: number; reason: string }>(t, 'ergometer:agent:samples-dropped');
    await collector.setMode('hang');
    try {
      const exporter = new HttpExporter(collector.url, { token: 'tok', requestTimeoutMs: 100, retry: FAST });
      const batcher = new Batcher(HEADER, exporter, {
        flushIntervalMs: 60_000,
        maxBatchSamples: 3,
        maxQueuedSamples: 100,
      });
      for (let i = 0; i < 7; i++) batcher.add(sample(i));
      const requestsBefore = collector.requests;
      await batcher.flushWithin(600);
      await exporter.close();
      assert.ok(collector.requests - requestsBefore >= 2, 'the first attempt should have timed out and been retried');
      assert.equal(batcher.queued, 0);
      assert.equal(batcher.queuedBytes, 0);
      assert.deepEqual(
        drops.map((d) => d.reason),
        ['flush-deadline', 'flush-deadline', 'flush-deadline'],
      );
      assert.equal(
        drops.reduce((n, d) => n + d.count, 0),
        7,
      );
    } finally {
      await collector.setMode('ok');
    }
  });

  test('one keep-alive connection carries batch after batch', async (t) => {
    let connections = 0;
    const server = http.createServer((req, res) => req.resume().on('end', () => res.end('{}')));
    server.on('connection', () => connections++);
    t.after(() => server.close());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const exporter = new HttpExporter(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, {
      requestTimeoutMs: 2000,
    });
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 1,
      maxQueuedSamples: 100,
    });
    for (let i = 0; i < 10; i++) batcher.add(sample(i));
    await batcher.flush();
    await exporter.close();
    assert.equal(connections, 1);
  });
});

describe('the agent’s own traffic is nobody’s', () => {
  test('exporter requests are marked from http.client.request.start on, and run outside any sampled request', async (t) => {
    const starts: { marked: boolean; inRequest: boolean }[] = [];
    const onStart = (message: unknown) => {
      const { request } = message as { request: http.ClientRequest };
      starts.push({ marked: isExporterRequest(request), inRequest: currentRequest() !== undefined });
    };
    diagnosticsChannel.subscribe('http.client.request.start', onStart);
    t.after(() => diagnosticsChannel.unsubscribe('http.client.request.start', onStart));

    const fileAgent = new FileAgent({ sampleRate: 1 });
    t.after(() => fileAgent.remove());
    const exporter = new HttpExporter(collector.url, { token: 'tok', requestTimeoutMs: 2000 });
    const batcher = new Batcher(HEADER, exporter, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 100,
      maxQueuedSamples: 100,
    });
    // Flushed from inside a sampled request (an app that flushes in a handler): still nobody's.
    const server = http.createServer(
      fileAgent.agent.http(async (_req, res) => {
        assert.ok(currentRequest() !== undefined);
        batcher.add(sample(1));
        await batcher.flush();
        res.end('ok');
      }),
    );
    t.after(() => server.close());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const answer = await new Promise<string>((resolve, reject) => {
      http
        .get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, (res) => {
          let body = '';
          res.on('data', (c) => {
            body += c;
          });
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
    assert.equal(answer, 'ok');
    await exporter.close();
    await fileAgent.batches();
    const exporterStarts = starts.filter((s) => s.marked);
    assert.equal(exporterStarts.length, 1);
    assert.equal(exporterStarts[0]!.inRequest, false);
    assert.ok(
      starts.some((s) => !s.marked),
      'the test client itself is not marked',
    );
  });
});

describe('checkIn (POST /v1/profiling)', () => {
  /** A server on loopback that hands each request to `handle`; closed after the test. */
  async function serve(t: TestContext, handle: http.RequestListener): Promise<string> {
    const server = http.createServer(handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      server.closeAllConnections();
      server.close();
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  test('sends the JSON with the token and reads the decision', async (t) => {
    const seen: Array<{ url?: string; auth?: string; type?: string; body: string }> = [];
    const url = await serve(t, (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        seen.push({ url: req.url, auth: req.headers.authorization, type: req.headers['content-type'], body });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"profile":false}');
      });
    });
    const exporter = new HttpExporter(`${url}/base/`, { token: 'tok', requestTimeoutMs: 2000 });
    t.after(() => exporter.close());
    assert.deepEqual(await exporter.checkIn({ state: 'asking' }), { kind: 'answer', profile: false });
    assert.deepEqual(seen, [
      { url: '/base/v1/profiling', auth: 'Bearer tok', type: 'application/json', body: '{"state":"asking"}' },
    ]);
  });

  test("a collector that never answers is given 2 s, not the batches' requestTimeoutMs", async (t) => {
    const url = await serve(t, (req) => req.resume());
    const exporter = new HttpExporter(url, { requestTimeoutMs: 60_000 });
    t.after(() => exporter.close());
    const startedMs = Date.now();
    const outcome = await exporter.checkIn({ state: 'asking' });
    const tookMs = Date.now() - startedMs;
    assert.deepEqual(outcome, { kind: 'unreachable', reason: 'no complete answer within 2000 ms' });
    assert.ok(tookMs >= 1900 && tookMs < 10_000, `${tookMs} ms`);
  });

  test('an answer without a decision, or a 4xx, is a refusal; a 5xx is no answer', async (t) => {
    const answers: Array<[number, string]> = [
      [200, '<html>a proxy page</html>'],
      [404, '{"error":{"code":"ERGOMETER_NOT_FOUND"}}'],
      [503, 'busy'],
    ];
    const url = await serve(t, (req, res) => {
      req.resume();
      const [status, body] = answers.shift() ?? [500, ''];
      res.writeHead(status);
      res.end(body);
    });
    const exporter = new HttpExporter(url, { requestTimeoutMs: 2000 });
    t.after(() => exporter.close());
    assert.deepEqual(await exporter.checkIn({}), { kind: 'refused', status: 200, body: '<html>a proxy page</html>' });
    assert.deepEqual(await exporter.checkIn({}), {
      kind: 'refused',
      status: 404,
      body: '{"error":{"code":"ERGOMETER_NOT_FOUND"}}',
    });
    assert.deepEqual(await exporter.checkIn({}), { kind: 'unreachable', reason: 'HTTP 503' });
  });
});
