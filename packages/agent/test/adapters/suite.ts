/**
 * The promises every adapter makes to the app it runs in, checked against the
 * real framework: the same scenario runs once without the agent (the reference)
 * and once with it, each in a fresh process, and the tests compare the two runs
 * and read the samples the agent wrote.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { openCounter } from '@ergometer/counters';
import type { WireSample } from '../../src/export/wire';
import { AGENT_VERSION } from '../../src/version';
import {
  type AgentMode,
  type AppSpec,
  abortSlowRequest,
  fixtureCommon,
  HEADER_ENV,
  launch,
  type Reply,
  type RunningApp,
  request,
  type StoppedApp,
} from './harness';

export interface AdapterSuiteSpec extends AppSpec {
  /** Title of the describe block. */
  title: string;
  /** How the agent is put in: start() + adapter, or zero-code. */
  mode: Exclude<AgentMode, 'none'>;
  /** Endpoint names this framework's requests must get. */
  endpoints: {
    /** GET /api/v1/items/7: two routers or prefixes deep. */
    nested: string;
    /** GET /nothing/here: the framework's 404. */
    unmatched: string;
  };
}

/** What the client saw, request by request (the aborted request has no reply). */
interface Exchange {
  request: string;
  reply: Reply;
}

interface ScenarioRun {
  exchanges: Exchange[];
  /** Every request sent, the aborted one included. */
  requestsSent: number;
  /** How long the app took to hand over the whole stream, by its own clock. */
  streamMs: number;
  stopped: StoppedApp;
}

/** Enough bytes to arrive in several chunks, with multi-byte characters split across them. */
const ECHO_BODY = 'héllo wörld, ünïcode ✓ across chunk boundaries\n'.repeat(600);

/** /users/:id requests sent at once: their awaits interleave on the event loop. */
const CONCURRENT_USER_IDS = ['1', '2', '3', '4', '5', '6'];

async function runScenario(app: RunningApp): Promise<Omit<ScenarioRun, 'stopped'>> {
  const exchanges: Exchange[] = [];
  const send = async (method: string, path: string, body?: { text: string; contentType: string }) => {
    exchanges.push({ request: `${method} ${path}`, reply: await request(app.port, method, path, body) });
  };
  await send('GET', '/users/42?x=1');
  const concurrent = await Promise.all(
    CONCURRENT_USER_IDS.map(async (id) => ({
      request: `GET /users/${id}`,
      reply: await request(app.port, 'GET', `/users/${id}`),
    })),
  );
  exchanges.push(...concurrent);
  await send('GET', '/api/v1/items/7');
  await send('POST', '/echo', { text: ECHO_BODY, contentType: 'text/plain; charset=utf-8' });
  await send('GET', '/nothing/here');
  await send('GET', '/boom-sync');
  await send('GET', '/boom-async');
  const streamDone = app.waitFor('stream-done');
  await send('GET', '/stream');
  const streamMs = (await streamDone).ms;
  await abortSlowRequest(app);
  return { exchanges, requestsSent: exchanges.length + 1, streamMs };
}

async function runApp(spec: AppSpec, mode: AgentMode): Promise<ScenarioRun> {
  const app = await launch(spec, mode);
  let scenario: Omit<ScenarioRun, 'stopped'>;
  try {
    scenario = await runScenario(app);
  } catch (error) {
    const stopped = await app.stop();
    throw new Error(`${String(error)}\napp stderr:\n${stopped.stderr}\nfatal: ${stopped.fatal.join('\n')}`);
  }
  return { ...scenario, stopped: await app.stop() };
}

function replyTo(run: ScenarioRun, requestLine: string): Reply {
  const exchange = run.exchanges.find((e) => e.request === requestLine);
  assert.ok(exchange, `no reply to ${requestLine}`);
  return exchange.reply;
}

const samplesOf = (run: ScenarioRun): WireSample[] => run.stopped.batches.flatMap((batch) => batch.samples);

function onlySample(run: ScenarioRun, endpoint: string): WireSample {
  const found = samplesOf(run).filter((s) => s.endpoint === endpoint);
  assert.equal(found.length, 1, `one sample of ${endpoint} expected, got ${JSON.stringify(samplesOf(run))}`);
  return found[0]!;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

/** The app exited by itself after the test asked it to, without any uncaught error. */
function assertCleanExit(run: ScenarioRun, label: string): void {
  assert.deepEqual(run.stopped.fatal, [], `${label}: uncaught errors in the app`);
  assert.equal(run.stopped.signal, null, `${label}: killed\n${run.stopped.stderr}`);
  assert.equal(run.stopped.exitCode, 0, `${label}: exit code\n${run.stopped.stderr}`);
}

export function adapterSuite(spec: AdapterSuiteSpec): void {
  describe(spec.title, () => {
    let reference: ScenarioRun;
    let measured: ScenarioRun;

    before(async () => {
      reference = await runApp(spec, 'none');
      measured = await runApp(spec, spec.mode);
    });

    test('names every sample METHOD route-template and records its status', () => {
      const samples = samplesOf(measured);
      const expected: Record<string, number> = {
        'GET /users/:id': 1 + CONCURRENT_USER_IDS.length,
        [spec.endpoints.nested]: 1,
        'POST /echo': 1,
        [spec.endpoints.unmatched]: 1,
        'GET /boom-sync': 1,
        'GET /boom-async': 1,
        'GET /stream': 1,
        'GET /slow': 1,
      };
      assert.deepEqual(
        countBy(samples, (s) => s.endpoint),
        expected,
      );
      const statuses = countBy(
        samples.filter((s) => s.endpoint !== 'GET /slow'),
        (s) => `${s.endpoint} ${s.status}`,
      );
      assert.deepEqual(statuses, {
        'GET /users/:id 200': 1 + CONCURRENT_USER_IDS.length,
        [`${spec.endpoints.nested} 200`]: 1,
        'POST /echo 200': 1,
        [`${spec.endpoints.unmatched} 404`]: 1,
        'GET /boom-sync 500': 1,
        'GET /boom-async 500': 1,
        'GET /stream 200': 1,
      });
      // The statuses the agent recorded are the ones the client got.
      assert.equal(replyTo(measured, 'GET /users/42?x=1').status, 200);
      assert.equal(replyTo(measured, 'GET /nothing/here').status, 404);
      assert.equal(replyTo(measured, 'GET /api/v1/items/7').status, 200);
    });

    test('every sample has cost > 0, wallMs > 0 and weight 1', () => {
      for (const sample of samplesOf(measured)) {
        assert.ok(Number.isInteger(sample.cost) && sample.cost > 0, `cost: ${JSON.stringify(sample)}`);
        assert.ok(sample.wallMs > 0, `wallMs: ${JSON.stringify(sample)}`);
        assert.equal(sample.weight, 1, `weight: ${JSON.stringify(sample)}`);
        assert.ok(Number.isFinite(sample.ts) && sample.ts > 1_600_000_000_000, `ts: ${JSON.stringify(sample)}`);
      }
    });

    test('every batch carries the wire-format header', () => {
      // The app picks its counter as this process does, on the same machine.
      const counter = openCounter();
      counter.close();
      assert.ok(measured.stopped.batches.length > 0);
      for (const batch of measured.stopped.batches) {
        assert.equal(batch.v, 1);
        assert.equal(batch.service, spec.service);
        assert.equal(batch.commit, HEADER_ENV.commit);
        assert.equal(batch.host, HEADER_ENV.host);
        assert.equal(batch.region, '');
        assert.equal(batch.metric, counter.metric);
        assert.equal(batch.agent.version, AGENT_VERSION);
        assert.equal(batch.agent.runtime, `node ${process.version}`);
        assert.equal(batch.agent.counter, counter.source);
        assert.equal(batch.agent.dropped, 0);
        assert.ok(typeof batch.batchId === 'string' && batch.batchId.length > 0);
        assert.match(batch.hostClass, / x\d+$/);
        assert.deepEqual(batch.users, [], 'no userId option, no users');
      }
      // At sampleRate 1 the per-minute counts (over every request) match the samples, endpoint by endpoint.
      const counted: Record<string, number> = {};
      for (const c of measured.stopped.batches.flatMap((b) => b.counts)) {
        assert.equal(c.minute % 60_000, 0);
        counted[c.endpoint] = (counted[c.endpoint] ?? 0) + c.requests;
      }
      const sampled: Record<string, number> = {};
      for (const sample of samplesOf(measured)) sampled[sample.endpoint] = (sampled[sample.endpoint] ?? 0) + 1;
      assert.deepEqual(counted, sampled);
    });

    test('a flag recorded after an await appears on its own request only', () => {
      // Even ids record user=<id>; the six concurrent requests interleave their awaits.
      const userSamples = samplesOf(measured).filter((s) => s.endpoint === 'GET /users/:id');
      const flagged = userSamples
        .filter((s) => s.flags !== undefined)
        .map((s) => s.flags)
        .sort((a, b) => Number(a?.user) - Number(b?.user));
      assert.deepEqual(flagged, [{ user: '2' }, { user: '4' }, { user: '6' }, { user: '42' }]);
      const others = samplesOf(measured).filter(
        (s) => s.endpoint !== 'GET /users/:id' && s.endpoint !== spec.endpoints.nested,
      );
      assert.deepEqual(
        others.filter((s) => s.flags !== undefined),
        [],
      );
      // /api/v1/items/7: odd, so no flag.
      assert.equal(onlySample(measured, spec.endpoints.nested).flags, undefined);
    });

    test('the client gets the same statuses, headers and bodies as without the agent', () => {
      assertCleanExit(reference, 'without the agent');
      assert.deepEqual(measured.exchanges, reference.exchanges);
      assert.equal(replyTo(measured, 'POST /echo').body, ECHO_BODY);
      const user = replyTo(measured, 'GET /users/42?x=1');
      assert.deepEqual(JSON.parse(user.body), { id: '42', name: 'user 42' });
    });

    test('the agent writes nothing to the app’s stderr (no warnings)', () => {
      assert.doesNotMatch(measured.stopped.stderr, /Warning|ergometer:/);
    });

    test('a handler that throws or rejects gets the framework’s usual 500, and the agent records it', () => {
      for (const path of ['/boom-sync', '/boom-async']) {
        const reply = replyTo(measured, `GET ${path}`);
        assert.equal(reply.status, 500);
        assert.deepEqual(reply, replyTo(reference, `GET ${path}`));
        assert.equal(onlySample(measured, `GET ${path}`).status, 500);
      }
      assertCleanExit(measured, 'with the agent');
    });

    test('a client that goes away mid-request: no uncaught error, and the sample is marked aborted', () => {
      assertCleanExit(measured, 'with the agent');
      assert.equal(onlySample(measured, 'GET /slow').aborted, true);
      const abortedElsewhere = samplesOf(measured).filter((s) => s.endpoint !== 'GET /slow' && s.aborted !== undefined);
      assert.deepEqual(abortedElsewhere, []);
    });

    test('a streamed response arrives whole, and its sample covers the whole stream', () => {
      const { STREAM, streamChunk } = fixtureCommon;
      const expectedBody = Array.from({ length: STREAM.chunks }, (_, i) => streamChunk(i)).join('');
      const reply = replyTo(measured, 'GET /stream');
      assert.equal(reply.status, 200);
      assert.equal(reply.body.length, expectedBody.length);
      assert.ok(reply.body === expectedBody, 'streamed body differs');
      // The stream really took its time (timers fire at most ~1 ms early)...
      assert.ok(measured.streamMs >= STREAM.chunks * (STREAM.gapMs - 1), `stream took ${measured.streamMs} ms`);
      // ...and the request was measured until its last byte, not until the handler returned.
      const sample = onlySample(measured, 'GET /stream');
      assert.ok(sample.wallMs >= measured.streamMs, `wallMs ${sample.wallMs} < stream ${measured.streamMs} ms`);
      assert.equal(sample.aborted, undefined);
    });

    test('shutdown writes a sample for every request, and nothing was written before it', () => {
      assert.equal(measured.stopped.fileExistedBeforeStop, false, 'a batch was written before shutdown');
      assert.equal(samplesOf(measured).length, measured.requestsSent);
      const batchIds = measured.stopped.batches.map((b) => b.batchId);
      assert.equal(new Set(batchIds).size, batchIds.length, 'batch ids repeat');
      assertCleanExit(measured, 'with the agent');
    });
  });
}
