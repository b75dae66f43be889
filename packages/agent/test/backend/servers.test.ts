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
 * Tolerances: a 50 ms server-side sleep must read 45–150 ms. The lower bound
 * cannot be met by a call that was not timed (0) or timed only to its first
 * byte; the upper bound not by two 50 ms calls added up (100 + overhead) in the
 * parallel case, where the assertion is < 95.
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
import type { WireBatch, WireSample } from '../../src/export/wire';
import {
  type PostgresServer,
  startHttpBackend,
  startMemcached,
  startPostgres,
  startRedis,
  type TestServer,
} from '../support/servers';

type Handler = (url: URL) => Promise<void>;

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
  routes: Map<string, Handler>;
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

const routes = new Map<string, Handler>();
const route = (name: string, handler: Handler) => routes.set(`/${name}`, handler);

route('pg-sleep', async () => {
  await fx.clients.pgA.query('SELECT pg_sleep(0.05)');
});
/** [start, end] of each query of the last /pg-parallel or /pg-sequential request, as the app saw them (performance.now()). */
let appIntervals: [number, number][] = [];
async function timedQuery(client: pg.Client): Promise<void> {
  const startedAt = performance.now();
  await client.query('SELECT pg_sleep(0.05)');
  appIntervals.push([startedAt, performance.now()]);
}
route('pg-parallel', async () => {
  appIntervals = [];
  await Promise.all([timedQuery(fx.clients.pgA), timedQuery(fx.clients.pgB)]);
});
route('pg-sequential', async () => {
  appIntervals = [];
  await timedQuery(fx.clients.pgA);
  await timedQuery(fx.clients.pgA);
});

/** Length of the union and the sum of the app's intervals. */
function unionAndSum(intervals: [number, number][]): { unionMs: number; sumMs: number } {
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
route('pg-callback', async () => {
  await new Promise<void>((resolve, reject) =>
    fx.clients.pgA.query('SELECT pg_sleep(0.05)', (error: Error | null) => (error ? reject(error) : resolve())),
  );
});
route('ioredis', async () => {
  // BLPOP on an empty list with a 50 ms timeout: Redis itself waits 50 ms.
  await fx.clients.ioredis.blpop('ergometer:empty', 0.05);
});
route('node-redis', async () => {
  await fx.clients.nodeRedis.blPop('ergometer:empty', 0.05);
});
route('memcached', async () => {
  await new Promise<void>((resolve, reject) =>
    fx.clients.memcached.set('k', 'v', 60, (error) => (error ? reject(error) : resolve())),
  );
  await new Promise<void>((resolve, reject) =>
    fx.clients.memcached.get('k', (error) => (error ? reject(error) : resolve())),
  );
});
route('memjs', async () => {
  await fx.clients.memjs.set('k2', 'v', {});
  await fx.clients.memjs.get('k2');
});
route('fetch', async () => {
  const response = await fetch(`${fx.backend.url}/delay?headersMs=20&bodyMs=40`);
  await response.text();
});
route('undici', async () => {
  const { body } = await undiciRequest(`${fx.backend.url}/delay?headersMs=20&bodyMs=40`);
  await body.text();
});
route('http-get', async () => {
  await httpGet(`${fx.backend.url}/delay?headersMs=20&bodyMs=40`);
});
route('manual', async () => {
  await fx.agent.time('db', () => sleep(30));
  fx.agent.time('cache', () => undefined);
});
route('interleave-a', async () => {
  await fx.clients.pgA.query('SELECT pg_sleep(0.08)');
});
route('interleave-b', async () => {
  await fx.clients.ioredis.blpop('ergometer:empty', 0.05);
  await httpGet(`${fx.backend.url}/delay?headersMs=30`);
});

async function startApp(agent: Agent): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(
    agent.http((req, res) => {
      const url = new URL(req.url ?? '/', 'http://app');
      const handler = routes.get(url.pathname);
      if (handler === undefined) {
        res.writeHead(404).end();
        return;
      }
      handler(url).then(
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

function assertAbout(actualMs: number, expectedMs: number, what: string): void {
  assert.ok(
    actualMs >= expectedMs * 0.9 && actualMs <= expectedMs * 3,
    `${what}: ${actualMs} ms, expected about ${expectedMs} (${expectedMs * 0.9}–${expectedMs * 3})`,
  );
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
        routes,
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
    const sample = await requestOne('/pg-sleep');
    assertAbout(sample.backend!.db, 50, 'db');
    assert.equal(sample.backend!.cache, 0);
    assert.equal(sample.backend!.http, 0);
    assert.ok(sample.backend!.db <= sample.wallMs, `db ${sample.backend!.db} > wall ${sample.wallMs}`);
  });

  test('the callback form of pg is timed to its callback', async () => {
    const sample = await requestOne('/pg-callback');
    assertAbout(sample.backend!.db, 50, 'db');
  });

  // The app times each query itself: on a loaded machine a "parallel" pair can come back
  // 50 ms apart, and then the truth is what the app saw. The agent's interval of each call
  // lies within the app's (it starts after, and ends before the app's await resumes).
  test('two 50 ms queries in parallel on two connections count once (the union), not twice', async () => {
    let overlapped = false;
    for (let attempt = 1; attempt <= 3 && !overlapped; attempt++) {
      const sample = await requestOne('/pg-parallel');
      const { unionMs, sumMs } = unionAndSum(appIntervals);
      const db = sample.backend!.db;
      assert.ok(db >= 45 && db <= unionMs + 0.5 && db >= unionMs - 5, `db ${db} ms, the app saw a union of ${unionMs}`);
      // Only a run where the queries did overlap (by 10 ms or more) tells a union from a sum.
      overlapped = sumMs - unionMs >= 10;
      if (overlapped) assert.ok(db < sumMs - 5, `db ${db} ms: counted twice (sum ${sumMs})`);
    }
    assert.ok(overlapped, 'in 3 attempts the two queries never ran side by side');
  });

  test('two 50 ms queries one after the other count both (about 100 ms)', async () => {
    const sample = await requestOne('/pg-sequential');
    const { unionMs } = unionAndSum(appIntervals);
    const db = sample.backend!.db;
    assert.ok(db >= 95 && db <= unionMs + 0.5 && db >= unionMs - 5, `db ${db} ms, the app saw ${unionMs}`);
  });

  for (const [name, what] of [
    ['ioredis', 'ioredis (ioredis:command tracing channel)'],
    ['node-redis', 'node-redis (node-redis:command tracing channel)'],
  ] as const) {
    test(`${what}: a 50 ms BLPOP shows about 50 ms of cache`, async () => {
      const sample = await requestOne(`/${name}`);
      assertAbout(sample.backend!.cache, 50, 'cache');
      assert.equal(sample.backend!.db, 0);
      assert.equal(sample.backend!.http, 0);
    });
  }

  for (const name of ['memcached', 'memjs']) {
    test(`${name}: a set and a get show as cache time`, async () => {
      const sample = await requestOne(`/${name}`);
      assert.ok(sample.backend!.cache > 0, `cache ${sample.backend!.cache}`);
      assert.ok(sample.backend!.cache <= sample.wallMs);
      assert.equal(sample.backend!.db, 0);
      assert.equal(sample.backend!.http, 0);
    });
  }

  for (const name of ['fetch', 'undici', 'http-get']) {
    test(`${name}: a response whose body ends after 60 ms shows about 60 ms of http`, async () => {
      // 20 ms to the headers, 40 more to the end of the body: timing only to the
      // headers would read ~20 and fail the lower bound.
      const sample = await requestOne(`/${name}`);
      assertAbout(sample.backend!.http, 60, 'http');
      assert.equal(sample.backend!.db, 0);
      assert.equal(sample.backend!.cache, 0);
    });
  }

  test('agent.time() charges the kind it is given, sync and async', async () => {
    const sample = await requestOne('/manual');
    assertAbout(sample.backend!.db, 30, 'db');
    assert.ok(sample.backend!.cache < 5, `cache ${sample.backend!.cache}`);
    assert.equal(sample.backend!.http, 0);
  });

  test('interleaved requests are each charged their own calls only, not calls outside any request', async () => {
    // A query outside any request, running across both requests.
    const outside = fx.clients.pgOutside.query('SELECT pg_sleep(0.2)');
    const samples = await requestAll('/interleave-a', '/interleave-b');
    await outside;
    const a = samples.get('GET /interleave-a')!.backend!;
    const b = samples.get('GET /interleave-b')!.backend!;
    assertAbout(a.db, 80, 'request A db');
    assert.equal(a.cache, 0, 'request A made no cache call');
    assert.equal(a.http, 0, 'request A made no http call');
    assert.equal(b.db, 0, "request B made no db call (A's and the outside query are not its own)");
    assertAbout(b.cache, 50, 'request B cache');
    assertAbout(b.http, 30, 'request B http');
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
      routes.set('/pool-a', async () => {
        (await pool.connect()).release();
        const query = pool.query('SELECT pg_sleep(0.06)');
        aQueryIssued();
        await query;
        await sleep(100);
      });
      routes.set('/pool-b', async () => {
        // Queue behind A's query (the pool's queue is first come, first served).
        await aFirst;
        await pool.query('SELECT pg_sleep(0.06)');
      });
      const samples = await requestAll('/pool-a', '/pool-b');
      const a = samples.get('GET /pool-a')!.backend!;
      const b = samples.get('GET /pool-b')!.backend!;
      assert.ok(a.db >= 54 && a.db < 100, `request A db ${a.db} ms: only its own 60 ms query`);
      assert.ok(b.db >= 100, `request B db ${b.db} ms: the wait for the connection plus its own query`);
    } finally {
      routes.delete('/pool-a');
      routes.delete('/pool-b');
      await pool.end();
    }
  });
});
