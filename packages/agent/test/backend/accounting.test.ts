/**
 * The accounting itself, without servers: the O(1) union of intervals against
 * a brute-force union on random call patterns; the `backend` option and
 * ERGOMETER_BACKEND; agent.time() outside requests; and what "off" means.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { start } from '../../src/agent';
import { BACKEND_SOURCES, resolveBackendSources } from '../../src/backend/sources';
import { BACKEND_KINDS, type BackendKind, BackendTimes } from '../../src/backend/times';

interface Call {
  kind: BackendKind;
  startMs: number;
  endMs: number;
}

/** Length of the union of [start, end) intervals, clipped at `closeMs`, by sorting and merging. */
function bruteForceUnion(intervals: [number, number][], closeMs: number): number {
  const sorted = intervals.map(([s, e]) => [s, Math.min(e, closeMs)] as const).sort((a, b) => a[0] - b[0]);
  let total = 0;
  let currentStart = Number.NaN;
  let currentEnd = Number.NaN;
  for (const [s, e] of sorted) {
    if (e <= s) continue;
    if (Number.isNaN(currentStart) || s > currentEnd) {
      if (!Number.isNaN(currentStart)) total += currentEnd - currentStart;
      currentStart = s;
      currentEnd = e;
    } else {
      currentEnd = Math.max(currentEnd, e);
    }
  }
  if (!Number.isNaN(currentStart)) total += currentEnd - currentStart;
  return total;
}

const callArbitrary = fc
  .record({
    kind: fc.constantFrom<BackendKind>(...BACKEND_KINDS),
    startMs: fc.integer({ min: 0, max: 1000 }),
    lengthMs: fc.integer({ min: 0, max: 300 }),
  })
  .map(({ kind, startMs, lengthMs }): Call => ({ kind, startMs, endMs: startMs + lengthMs }));

test('the busy-period counter equals the union of the calls’ intervals, per kind', () => {
  fc.assert(
    fc.property(fc.array(callArbitrary, { maxLength: 40 }), fc.integer({ min: 0, max: 1400 }), (calls, closeMs) => {
      // Replay starts and ends in time order. At equal times: ends first ([s, e) intervals
      // touch, they do not overlap), then starts, then the ends of zero-length calls.
      const events = calls.flatMap((call) => [
        { at: call.startMs, order: 1, kind: call.kind, start: true },
        { at: call.endMs, order: call.endMs === call.startMs ? 2 : 0, kind: call.kind, start: false },
      ]);
      events.sort((a, b) => a.at - b.at || a.order - b.order);
      const times = new BackendTimes();
      for (const event of events) {
        // Events after the request ended are ignored by close(); the replay stops there.
        if (event.at > closeMs) break;
        if (event.start) times.start(event.kind, event.at);
        else times.end(event.kind, event.at);
      }
      const measured = times.close(closeMs);
      for (const kind of BACKEND_KINDS) {
        const own = calls.filter((c) => c.kind === kind && c.startMs <= closeMs).map((c) => [c.startMs, c.endMs]);
        const expected = bruteForceUnion(own as [number, number][], closeMs);
        assert.ok(Math.abs(measured[kind] - expected) < 1e-6, `${kind}: ${measured[kind]} vs ${expected}`);
      }
    }),
    { numRuns: 500 },
  );
});

test('two overlapping calls count once; back to back they add up; an end without a start is ignored', () => {
  const times = new BackendTimes();
  times.start('db', 0);
  times.start('db', 10);
  times.end('db', 50);
  times.end('db', 60);
  times.start('db', 100);
  times.end('db', 150);
  times.end('db', 200); // no start: must not open a period
  times.start('cache', 20);
  times.end('cache', 25);
  assert.deepEqual(times.close(300), { db: 110, cache: 5, http: 0 });
  // Closed: later calls change nothing.
  times.start('http', 400);
  times.end('http', 450);
  assert.deepEqual(times.close(500), { db: 110, cache: 5, http: 0 });
});

test('a call still in flight when the request ends counts up to the end', () => {
  const times = new BackendTimes();
  times.start('http', 10);
  assert.deepEqual(times.close(40), { db: 0, cache: 0, http: 30 });
});

test('backend option: true/false, per instrumentation, and ERGOMETER_BACKEND lists', () => {
  const all = Object.fromEntries(BACKEND_SOURCES.map((s) => [s, true]));
  const none = Object.fromEntries(BACKEND_SOURCES.map((s) => [s, false]));
  assert.deepEqual(resolveBackendSources(undefined, undefined), all);
  assert.deepEqual(resolveBackendSources(undefined, 'off'), none);
  assert.deepEqual(resolveBackendSources(undefined, ' ON '), all);
  assert.deepEqual(resolveBackendSources(false, 'on'), none, 'the option wins over the variable');
  assert.deepEqual(resolveBackendSources({ pg: false }, undefined), { ...all, pg: false });
  assert.deepEqual(resolveBackendSources(undefined, 'pg,ioredis'), { ...none, pg: true, ioredis: true });
  assert.deepEqual(resolveBackendSources(undefined, '-mongodb, -http'), { ...all, mongodb: false, http: false });
  for (const [option, env, pattern] of [
    [undefined, 'pg,-http', /mixes/],
    [undefined, 'postgres', /unknown instrumentation "postgres"/],
    [{ postgres: false }, undefined, /unknown instrumentation "postgres"/],
    [{ pg: 'no' }, undefined, /pg: expected true or false/],
    ['pg', undefined, /expected true, false or an object/],
  ] as const) {
    assert.throws(
      () => resolveBackendSources(option, env),
      (error: Error & { code?: string }) => error.code === 'ERGOMETER_BAD_OPTION' && pattern.test(error.message),
      `${JSON.stringify(option)} / ${env}`,
    );
  }
});

test('with every instrumentation off, nothing subscribes and samples carry no backend; agent.time outside a request just runs', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-backend-off-'));
  const file = path.join(dir, 'samples.ndjson');
  const agent = start({ service: 'off', collector: `file:${file}`, sampleRate: 1, commit: 'c', backend: false });
  const start_ = diagnosticsChannel.channel('http.client.request.start');
  let subscribedInRequest: boolean | undefined;
  const server = http.createServer(
    agent.http((_req, res) => {
      subscribedInRequest = start_.hasSubscribers;
      res.end('ok');
    }),
  );
  try {
    assert.equal(
      agent.time('db', () => 42),
      42,
    );
    const promise = Promise.resolve('v');
    assert.equal(
      agent.time('cache', () => promise),
      promise,
      'outside a sampled request, the same promise comes back',
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/x`)).text(), 'ok');
    await agent.shutdown();
    assert.equal(subscribedInRequest, false);
    const samples = readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .flatMap((line) => JSON.parse(line).samples as { backend?: unknown }[]);
    assert.equal(samples.length, 1);
    assert.equal(samples[0]!.backend, undefined);
  } finally {
    await agent.shutdown();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('regression: a timed promise nobody handles is still an unhandled rejection, and a handled one is not', () => {
  // Attaching the agent's handlers to the app's own promise would mark it handled and hide the first.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-backend-unhandled-'));
  try {
    const fixture = path.join(__dirname, '..', '..', '..', 'test', 'backend', 'fixtures', 'unhandled-rejection.cjs');
    const output = execFileSync(process.execPath, [fixture], {
      cwd: path.join(__dirname, '..', '..', '..'),
      env: {
        PATH: process.env.PATH,
        ERGOMETER_SERVICE: 'unhandled',
        ERGOMETER_COLLECTOR: `file:${path.join(dir, 'samples.ndjson')}`,
        ERGOMETER_COMMIT: 'test',
      },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.deepEqual(JSON.parse(output.trim()), ['nobody handles this one']);
    const samples = readFileSync(path.join(dir, 'samples.ndjson'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .flatMap((line) => JSON.parse(line).samples as { backend?: { db: number } }[]);
    assert.equal(samples.length, 1);
    assert.ok(samples[0]!.backend!.db >= 0, 'the request was sampled and timed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
