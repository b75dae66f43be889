/**
 * Backend time per request against real servers started on 127.0.0.1 by the
 * test (PostgreSQL, Redis, memcached, a downstream HTTP service): each client
 * library's calls land in the right kind, with the wall time the server took,
 * overlapping calls counted once, and only in the request that made them.
 *
 * The client libraries are imported before the agent starts: this file covers
 * the patches made on packages already in require.cache (fixtures.test.ts
 * covers packages loaded after start, from CommonJS and from ESM).
 *
 * What each measurement is held to, so that neither a slow machine nor a wrong
 * agent can pass or fail by accident:
 *   - below: the time the server itself enforces (pg_sleep(0.05) cannot answer
 *     in less than 50 ms, a response whose body ends 60 ms after the request
 *     cannot end sooner) — a call not timed, or timed to its first byte, fails;
 *   - above: the interval the app measured around its own calls of that kind
 *     (their union): the agent's interval of a call lies inside the app's, so
 *     anything charged from elsewhere (another request, the whole request, a
 *     call counted twice) exceeds it;
 *   - every other kind: exactly 0.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Redis from 'ioredis';
import Memcached from 'memcached';
import memjs from 'memjs';
import pg from 'pg';
import { createClient } from 'redis';
import { request as undiciRequest } from 'undici';
import { type Agent, start } from '../../src/agent';
import { BACKEND_KINDS, type BackendKind } from '../../src/backend/times';
import type { WireBatch, WireSample } from '../../src/export/wire';
import {
  type PostgresServer,
  startHttpBackend,
  startMemcached,
  startPostgres,
  startRedis,
  type TestServer,
} from '../support/servers';

interface Fixture {
  agent: Agent;
  appUrl: string;
  samplesFile: string;
  dir: string;
  server: http.Server;
  postgres: PostgresServer;
  redis: TestServer;
  memcached: TestServer;
  backend: TestServer & { url: string };
  clients: {
    pgA: pg.Client;
    pgB: pg.Client;
    pgOutside: pg.Client;
    ioredis: Redis;
    nodeRedis: ReturnType<typeof createClient>;
    memcached: Memcached;
    memjs: memjs.Client;
  };
}

let fx: Fixture;

/** Consumes a response to its end, as a client that waits for the body does. */
function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve(body));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** Intervals [start, end] (performance.now()) the app measured around its own backend calls, per request path and kind. */
const observed = new Map<string, Record<BackendKind, [number, number][]>>();

/** What handlers get: `observe(kind, fn)` runs fn and records the interval the app saw around it. */
type Observe = <T>(kind: BackendKind, fn: () => Promise<T>) => Promise<T>;

function observerFor(requestPath: string): Observe {
  const own: Record<BackendKind, [number, number][]> = { db: [], cache: [], http: [] };
  observed.set(requestPath, own);
  return async (kind, fn) => {
    const startedAt = performance.now();
    try {
      return await fn();
    } finally {
      own[kind].push([startedAt, performance.now()]);
    }
  };
}

const routes = new Map<string, (observe: Observe) => Promise<void>>();
const route = (name: string, handler: (observe: Observe) => Promise<void>) => routes.set(`/${name}`, handler);
const PG_SLEEP_50 = 'SELECT pg_sleep(0.05)';

route('pg-sleep', async (observe) => {
  await observe('db', () => fx.clients.pgA.query(PG_SLEEP_50));
});
route('pg-parallel', async (observe) => {
  await Promise.all([
    observe('db', () => fx.clients.pgA.query(PG_SLEEP_50)),
    observe('db', () => fx.clients.pgB.query(PG_SLEEP_50)),
  ]);
});
route('pg-sequential', async (observe) => {
  await observe('db', () => fx.clients.pgA.query(PG_SLEEP_50));
  await observe('db', () => fx.clients.pgA.query(PG_SLEEP_50));
});
route('pg-callback', async (observe) => {
  await observe(
    'db',
    () =>
      new Promise<void>((resolve, reject) =>
        fx.clients.pgA.query(PG_SLEEP_50, (error: Error | null) => (error ? reject(error) : resolve())),
      ),
  );
});
route('ioredis', async (observe) => {
  // BLPOP on an empty list with a 50 ms timeout: Redis itself waits about 50 ms.
  await observe('cache', () => fx.clients.ioredis.blpop('ergometer:empty', 0.05));
});
route('node-redis', async (observe) => {
  await observe('cache', () => fx.clients.nodeRedis.blPop('ergometer:empty', 0.05));
});
route('memcached', async (observe) => {
  await observe(
    'cache',
    () =>
      new Promise<void>((resolve, reject) =>
        fx.clients.memcached.set('k', 'v', 60, (error) => (error ? reject(error) : resolve())),
      ),
  );
  await observe(
    'cache',
    () =>
      new Promise<void>((resolve, reject) =>
        fx.clients.memcached.get('k', (error) => (error ? reject(error) : resolve())),
      ),
  );
});
route('memjs', async (observe) => {
  await observe('cache', () => fx.clients.memjs.set('k2', 'v', {}));
  await observe('cache', () => fx.clients.memjs.get('k2'));
});
// 20 ms to the headers, 40 more to the end of the body: timing to the headers would read ~20.
const SLOW_BODY = '/delay?headersMs=20&bodyMs=40';
route('fetch', async (observe) => {
  await observe('http', async () => (await fetch(`${fx.backend.url}${SLOW_BODY}`)).text());
});
route('undici', async (observe) => {
  await observe('http', async () => (await undiciRequest(`${fx.backend.url}${SLOW_BODY}`)).body.text());
});
route('http-get', async (observe) => {
  await observe('http', () => httpGet(`${fx.backend.url}${SLOW_BODY}`));
});
route('manual', async (observe) => {
  await observe('db', () => fx.agent.time('db', () => sleep(30)));
  fx.agent.time('cache', () => undefined);
});
route('interleave-a', async (observe) => {
  await observe('db', () => fx.clients.pgA.query('SELECT pg_sleep(0.08)'));
});
route('interleave-b', async (observe) => {
  await observe('cache', () => fx.clients.ioredis.blpop('ergometer:empty', 0.05));
  await observe('http', () => httpGet(`${fx.backend.url}/delay?headersMs=30`));
});

/** Length of the union and the sum of intervals. */
function unionAndSum(intervals: [number, number][]): { unionMs: number; sumMs: number } {
  if (intervals.length === 0) return { unionMs: 0, sumMs: 0 };
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let unionMs = 0;
  let [start, end] = sorted[0]!;
  for (const [s, e] of sorted.slice(1)) {
    if (s > end) {
      unionMs += end - start;
      [start, end] = [s, e];
    } else {
      end = Math.max(end, e);
    }
  }
  unionMs += end - start;
  return { unionMs, sumMs: sorted.reduce((total, [s, e]) => total + e - s, 0) };
}

/**
 * Asserts the sample of `requestPath`: each kind in `serverMinMs` between the
 * server's own minimum and the union of the intervals the app saw around its
 * calls of that kind; every other kind exactly 0.
 */
function assertCharged(
  requestPath: string,
  sample: WireSample,
  serverMinMs: Partial<Record<BackendKind, number>>,
): void {
  const backend = sample.backend;
  assert.ok(backend !== undefined, `${requestPath}: no backend in ${JSON.stringify(sample)}`);
  const own = observed.get(requestPath);
  assert.ok(own !== undefined, `${requestPath}: the route did not run`);
  for (const kind of BACKEND_KINDS) {
    const min = serverMinMs[kind];
    if (min === undefined) {
      assert.equal(backend[kind], 0, `${requestPath}: ${kind} must be 0, is ${backend[kind]}`);
      continue;
    }
    const { unionMs } = unionAndSum(own[kind]);
    assert.ok(
      backend[kind] >= min && backend[kind] <= unionMs + 0.5,
      `${requestPath}: ${kind} ${backend[kind]} ms, expected from ${min} (the server's time) ` +
        `to ${unionMs.toFixed(3)} (what the app saw around its calls)`,
    );
  }
}

async function startApp(agent: Agent): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(
    agent.http((req, res) => {
      const url = new URL(req.url ?? '/', 'http://app');
      const handler = routes.get(url.pathname);
      if (handler === undefined) {
        res.writeHead(404).end();
        return;
      }
      handler(observerFor(url.pathname)).then(
        () => res.end('ok'),
        (error: unknown) => res.writeHead(500).end(String(error)),
      );
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Requests `paths` of the app, all at once, and returns each one's sample (by endpoint). */
async function requestAll(...paths: string[]): Promise<Map<string, WireSample>> {
  const before = readSamples().length;
  const bodies = await Promise.all(paths.map(async (p) => (await fetch(`${fx.appUrl}${p}`)).text()));
  for (const [i, body] of bodies.entries()) assert.equal(body, 'ok', `${paths[i]} answered ${body}`);
  await fx.agent.flush();
  const samples = readSamples().slice(before);
  const byEndpoint = new Map(samples.map((s) => [s.endpoint, s]));
  for (const p of paths) assert.ok(byEndpoint.has(`GET ${p}`), `no sample for GET ${p}: ${JSON.stringify(samples)}`);
  return byEndpoint;
}

async function requestOne(p: string): Promise<WireSample> {
  return (await requestAll(p)).get(`GET ${p}`)!;
}

function readSamples(): WireSample[] {
  let text = '';
  try {
    text = readFileSync(fx.samplesFile, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line !== '')
    .flatMap((line) => (JSON.parse(line) as WireBatch).samples);
}

describe('backend time against real servers', () => {
  before(async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-backend-'));
    const samplesFile = path.join(dir, 'samples.ndjson');
    const started: TestServer[] = [];
    const track = <S extends TestServer>(server: S): S => {
      started.push(server);
      return server;
    };
    try {
      const [postgres, redis, memcached, backend] = await Promise.all([
        startPostgres().then(track),
        startRedis().then(track),
        startMemcached().then(track),
        startHttpBackend().then(track),
      ]);
      const agent = start({
        service: 'backend-test',
        collector: `file:${samplesFile}`,
        sampleRate: 1,
        commit: 'test',
        flushIntervalMs: 3_600_000,
      });
      const app = await startApp(agent);
      // Connected outside any request: connecting is not what the tests measure.
      const pgA = new pg.Client(postgres.url);
      const pgB = new pg.Client(postgres.url);
      const pgOutside = new pg.Client(postgres.url);
      await Promise.all([pgA.connect(), pgB.connect(), pgOutside.connect()]);
      const ioredis = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true });
      await ioredis.connect();
      const nodeRedis = createClient({ socket: { host: '127.0.0.1', port: redis.port } });
      await nodeRedis.connect();
      const memcachedClient = new Memcached(`127.0.0.1:${memcached.port}`, { retries: 0, timeout: 2000 });
      const memjsClient = memjs.Client.create(`127.0.0.1:${memcached.port}`, { retries: 1, logger: { log() {} } });
      // Steady state, outside any request: a first call compiles each client's code paths
      // (tens of ms on a busy machine), which is not the servers' time the tests compare with.
      await Promise.all([pgA.query('SELECT 1'), pgB.query('SELECT 1'), ioredis.ping(), nodeRedis.ping()]);
      await memjsClient.set('warm', 'up', {});
      await new Promise((resolve) => memcachedClient.set('warm', 'up', 60, resolve));
      await (await fetch(`${backend.url}/delay`)).text();
      await (await undiciRequest(`${backend.url}/delay`)).body.text();
      await httpGet(`${backend.url}/delay`);
      fx = {
        agent,
        appUrl: app.url,
        samplesFile,
        dir,
        server: app.server,
        postgres,
        redis,
        memcached,
        backend,
        clients: { pgA, pgB, pgOutside, ioredis, nodeRedis, memcached: memcachedClient, memjs: memjsClient },
      };
    } catch (error) {
      await Promise.all(started.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  });

  after(async () => {
    if (fx === undefined) return;
    const { clients } = fx;
    await Promise.allSettled([
      fx.agent.shutdown(),
      new Promise<void>((resolve) => fx.server.close(() => resolve())),
      clients.pgA.end(),
      clients.pgB.end(),
      clients.pgOutside.end(),
      clients.ioredis.quit(),
      clients.nodeRedis.quit(),
    ]);
    clients.memcached.end();
    clients.memjs.close();
    await Promise.all([fx.postgres.stop(), fx.redis.stop(), fx.memcached.stop(), fx.backend.stop()]);
    rmSync(fx.dir, { recursive: true, force: true });
  });

  test('a 50 ms PostgreSQL query shows about 50 ms of db, nothing else', async () => {
    assertCharged('/pg-sleep', await requestOne('/pg-sleep'), { db: 50 });
  });

  test('the callback form of pg is timed to its callback', async () => {
    assertCharged('/pg-callback', await requestOne('/pg-callback'), { db: 50 });
  });

  test('two 50 ms queries in parallel on two connections count once (the union), not twice', async () => {
    // On a loaded machine a "parallel" pair can come back 50 ms apart: only a run where the
    // app saw them overlap by 10 ms or more tells a union from a sum.
    let overlapped = false;
    for (let attempt = 1; attempt <= 3 && !overlapped; attempt++) {
      const sample = await requestOne('/pg-parallel');
      assertCharged('/pg-parallel', sample, { db: 50 });
      const { unionMs, sumMs } = unionAndSum(observed.get('/pg-parallel')!.db);
      overlapped = sumMs - unionMs >= 10;
      if (overlapped)
        assert.ok(sample.backend!.db < sumMs - 5, `db ${sample.backend!.db}: counted twice (sum ${sumMs})`);
    }
    assert.ok(overlapped, 'in 3 attempts the two queries never ran side by side');
  });

  test('two 50 ms queries one after the other count both (about 100 ms)', async () => {
    assertCharged('/pg-sequential', await requestOne('/pg-sequential'), { db: 100 });
  });

  for (const [name, what] of [
    ['ioredis', 'ioredis (ioredis:command tracing channel)'],
    ['node-redis', 'node-redis (node-redis:command tracing channel)'],
  ] as const) {
    test(`${what}: a 50 ms BLPOP shows as cache time`, async () => {
      // Redis times the BLPOP out against its cached clock, a few ms stale on a busy machine:
      // the server's own minimum is lower than 50 here.
      assertCharged(`/${name}`, await requestOne(`/${name}`), { cache: 30 });
    });
  }

  for (const name of ['memcached', 'memjs']) {
    test(`${name}: a set and a get show as cache time`, async () => {
      assertCharged(`/${name}`, await requestOne(`/${name}`), { cache: 0.001 });
    });
  }

  for (const name of ['fetch', 'undici', 'http-get']) {
    test(`${name}: a response whose body ends 60 ms after the request shows at least 60 ms of http`, async () => {
      assertCharged(`/${name}`, await requestOne(`/${name}`), { http: 59.5 });
    });
  }

  test('agent.time() charges the kind it is given, sync and async', async () => {
    const sample = await requestOne('/manual');
    // A 30 ms timer; libuv's cached loop time lets it fire up to ~1 ms early by performance.now().
    assertCharged('/manual', { ...sample, backend: { ...sample.backend!, cache: 0 } }, { db: 29 });
    assert.ok(sample.backend!.cache < 5, `cache ${sample.backend!.cache}: a synchronous no-op`);
  });

  test('interleaved requests are each charged their own calls only, not calls outside any request', async () => {
    // A query outside any request, running across both requests.
    const outside = fx.clients.pgOutside.query('SELECT pg_sleep(0.2)');
    const samples = await requestAll('/interleave-a', '/interleave-b');
    await outside;
    assertCharged('/interleave-a', samples.get('GET /interleave-a')!, { db: 80 });
    assertCharged('/interleave-b', samples.get('GET /interleave-b')!, { cache: 30, http: 30 });
  });

  test('pg pool: a query that waited for a connection released by another request is charged to its own request', async () => {
    const pool = new pg.Pool({ connectionString: fx.postgres.url, max: 1 });
    try {
      // A opens the pool's only connection inside its request (so its socket's callbacks run in
      // A's context), runs a 60 ms query, then works 100 ms more; B's 60 ms query waits for that
      // connection. pg-pool hands it over from A's context: unless the agent keeps B's callback
      // in B's context, B's query lands on A (A would read ~120 ms).
      let aQueryIssued!: () => void;
      const aFirst = new Promise<void>((resolve) => {
        aQueryIssued = resolve;
      });
      routes.set('/pool-a', async (observe) => {
        (await pool.connect()).release();
        await observe('db', () => {
          const query = pool.query('SELECT pg_sleep(0.06)');
          aQueryIssued();
          return query;
        });
        await sleep(100);
      });
      routes.set('/pool-b', async (observe) => {
        // Queue behind A's query (the pool's queue is first come, first served).
        await aFirst;
        await observe('db', () => pool.query('SELECT pg_sleep(0.06)'));
      });
      const samples = await requestAll('/pool-a', '/pool-b');
      // A: only its own query, not B's after it. B: the wait for A's query, then its own.
      assertCharged('/pool-a', samples.get('GET /pool-a')!, { db: 60 });
      assertCharged('/pool-b', samples.get('GET /pool-b')!, { db: 100 });
    } finally {
      routes.delete('/pool-a');
      routes.delete('/pool-b');
      await pool.end();
    }
  });
});
