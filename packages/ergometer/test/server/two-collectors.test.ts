/**
 * Issue 4 must-show: two collectors in front of one ClickHouse (and in front of the two-shard
 * cluster) give the same read API answers as one collector on DuckDB for the same input.
 *
 * The same seeded batches (two services, several commits, endpoints, flags, host classes, both
 * metrics) are POSTed over HTTP to (a) one collector on a DuckDB file, (b) two collectors, each with
 * its own ClickHouse store object, on one ClickHouse node, (c) two collectors entering the two-shard
 * cluster through different shards. In (b) and (c) the batches are split between the collectors and
 * some are sent twice: to both collectors at once (racing), or to the same one again (a retry).
 * Then `/v1/services`, `/v1/commits` and `/v1/endpoints` (per service, per commit, per metric, over
 * a time range) from every collector must equal DuckDB's: counts and quantiles exactly (quantiles come
 * from the same histogram bins), means and shares up to floating-point rounding (sums added in a
 * different order).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createClient } from '@clickhouse/client';
import { openStore } from '../../src/cli/open-store';
import { type Collector, createCollector } from '../../src/server/collector';
import { toWire } from '../../src/sim/scenario';
import type { IngestBatch, Store } from '../../src/store/types';
import { generateDataset, HOUR_MS, MINUTE_MS, T0_MS } from '../store/dataset';
import {
  type ClickHouseCluster,
  type SingleClickHouse,
  startClickHouse,
  startClickHouseCluster,
} from '../support/clickhouse';

const INGEST = 'two-collectors-ingest';
const READ = 'two-collectors-read';
/** The collectors' clock: just after the generated data (it spans T0 … T0 + 3 h 3 min). */
const NOW_MS = T0_MS + 4 * HOUR_MS;
const DATASET = generateDataset(20_261_127, 160);
const TOTAL_SAMPLES = DATASET.samples.length;

interface RunningCollector {
  url: string;
  collector: Collector;
  store: Store;
}

/** One in-process collector on 127.0.0.1:0 over its own store object. */
async function startCollector(store: Store): Promise<RunningCollector> {
  const collector = createCollector({
    store,
    ingestTokens: [INGEST],
    readTokens: [READ],
    log: () => undefined,
    now: () => NOW_MS,
  });
  const address = await collector.listen(0, '127.0.0.1');
  return { url: `http://127.0.0.1:${address.port}`, collector, store };
}

/** POSTs one batch; fails the test unless it is acknowledged in full. Returns whether it was a duplicate. */
async function post(url: string, batch: IngestBatch, body: string): Promise<boolean> {
  const response = await fetch(`${url}/v1/samples`, {
    method: 'POST',
    headers: { authorization: `Bearer ${INGEST}`, 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `${batch.batchId} to ${url}: ${text}`);
  const answer = JSON.parse(text) as { accepted: number; duplicate?: boolean };
  assert.equal(answer.accepted, batch.samples.length, `${batch.batchId} accepted`);
  return answer.duplicate === true;
}

async function get(url: string, route: string): Promise<unknown> {
  const response = await fetch(`${url}${route}`, {
    headers: { authorization: `Bearer ${READ}` },
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `GET ${route} from ${url}: ${text}`);
  return JSON.parse(text) as unknown;
}

/** Rows in one shard's local samples table (duplicates of racing writes included). */
async function localSamples(shardUrl: string): Promise<number> {
  const client = createClient({ url: shardUrl });
  try {
    const result = await client.query({
      query: 'SELECT count() AS n FROM ergometer_two.samples_local',
      format: 'JSONEachRow',
    });
    const rows = await result.json<{ n: string }>();
    return Number(rows[0]?.n);
  } finally {
    await client.close();
  }
}

/** Runs `work` over `items` with at most `width` at a time (several agents posting at once). */
async function pool<T>(items: T[], width: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const index = next++;
        await work(items[index] as T, index);
      }
    }),
  );
}

/** Sends the whole dataset to one collector, each batch once. */
async function sendToOne(c: RunningCollector): Promise<void> {
  await pool(DATASET.batches, 4, async (batch) => {
    assert.equal(await post(c.url, batch, JSON.stringify(toWire(batch))), false, `${batch.batchId} is new`);
  });
}

/**
 * Splits the dataset between two collectors: every 5th batch to both at once (racing collectors),
 * every 7th also retried on the same collector after its acknowledgement, the rest alternately.
 * Returns how many sends were answered as duplicates.
 */
async function sendToTwo(a: RunningCollector, b: RunningCollector): Promise<{ retries: number; duplicates: number }> {
  let duplicates = 0;
  let retries = 0;
  await pool(DATASET.batches, 4, async (batch, i) => {
    const body = JSON.stringify(toWire(batch));
    const first = i % 2 === 0 ? a : b;
    const second = first === a ? b : a;
    if (i % 5 === 0) {
      const answers = await Promise.all([post(first.url, batch, body), post(second.url, batch, body)]);
      duplicates += answers.filter(Boolean).length;
    } else if (await post(first.url, batch, body)) {
      duplicates++;
    }
    if (i % 7 === 0) {
      retries++;
      // A retry after an acknowledgement (the agent did not see the 200): stored before, so a duplicate.
      assert.equal(await post(first.url, batch, body), true, `retry of ${batch.batchId} is a duplicate`);
      duplicates++;
    }
  });
  return { retries, duplicates };
}

/** Counts, ids and quantiles must match exactly; sums, means and shares up to rounding. */
const EXACT_KEYS = new Set([
  'samples',
  'requests',
  'firstSeen',
  'lastSeen',
  'deployedAt',
  'costP50',
  'costP95',
  'wallP50',
  'wallP95',
]);
const RELATIVE_TOLERANCE = 1e-9;

function assertSameAnswer(actual: unknown, expected: unknown, where: string, key = ''): void {
  if (typeof expected === 'number' && typeof actual === 'number') {
    if (EXACT_KEYS.has(key)) {
      assert.equal(actual, expected, `${where}: ${actual} ≠ ${expected}`);
    } else {
      const bound = RELATIVE_TOLERANCE * Math.max(Math.abs(expected), Number.MIN_VALUE);
      assert.ok(Math.abs(actual - expected) <= bound, `${where}: ${actual} ≠ ${expected} (relative tolerance 1e-9)`);
    }
    return;
  }
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${where}: expected an array, got ${JSON.stringify(actual)}`);
    assert.equal(actual.length, expected.length, `${where}: length`);
    for (let i = 0; i < expected.length; i++) assertSameAnswer(actual[i], expected[i], `${where}[${i}]`, key);
    return;
  }
  if (expected !== null && typeof expected === 'object') {
    assert.ok(actual !== null && typeof actual === 'object', `${where}: expected an object, got ${String(actual)}`);
    const a = actual as Record<string, unknown>;
    const e = expected as Record<string, unknown>;
    assert.deepEqual(Object.keys(a).sort(), Object.keys(e).sort(), `${where}: fields`);
    for (const k of Object.keys(e)) assertSameAnswer(a[k], e[k], `${where}.${k}`, k);
    return;
  }
  assert.equal(actual, expected, where);
}

/** The read routes compared, derived from the input (not from any store's answer). */
function routes(): string[] {
  const out = ['/v1/services'];
  const byService = new Map<string, { commits: Set<string>; metrics: Set<string> }>();
  for (const b of DATASET.batches) {
    const entry = byService.get(b.service) ?? { commits: new Set(), metrics: new Set() };
    entry.commits.add(b.commit);
    entry.metrics.add(b.metric);
    byService.set(b.service, entry);
  }
  // A window that does not fall on hour boundaries: minute rows at both ends.
  const from = T0_MS + 47 * MINUTE_MS;
  const to = T0_MS + 2 * HOUR_MS + 13 * MINUTE_MS;
  for (const [service, { commits, metrics }] of [...byService].sort(([a], [b]) => a.localeCompare(b))) {
    const s = encodeURIComponent(service);
    out.push(`/v1/commits?service=${s}`, `/v1/commits?service=${s}&from=${from}&to=${to}`);
    out.push(`/v1/endpoints?service=${s}`, `/v1/endpoints?service=${s}&from=${from}&to=${to}`);
    for (const commit of [...commits].sort()) {
      out.push(`/v1/endpoints?service=${s}&commit=${encodeURIComponent(commit)}`);
    }
    for (const metric of [...metrics].sort()) out.push(`/v1/endpoints?service=${s}&metric=${metric}`);
  }
  return out;
}

describe('two collectors in front of ClickHouse answer like one collector on DuckDB', { timeout: 600_000 }, () => {
  let dir: string | undefined;
  let single: SingleClickHouse | undefined;
  let cluster: ClickHouseCluster | undefined;
  const running: RunningCollector[] = [];
  const setups = new Map<string, RunningCollector[]>();
  let reference: RunningCollector | undefined;
  /** Every store opened, closed in `after` even when `before` failed half-way. */
  const stores: Store[] = [];
  const track = async (opening: Promise<Store>): Promise<Store> => {
    const store = await opening;
    stores.push(store);
    return store;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ergometer-two-collectors-'));
    // Three ClickHouse servers: started one after the other, the test machine is small.
    single = await startClickHouse();
    cluster = await startClickHouseCluster(2, 'ergometer');

    reference = await startCollector(await track(openStore({ db: path.join(dir, 'reference.duckdb') })));
    running.push(reference);

    // Each collector has its own store object; both open (and create the schema) at the same time.
    const singleUrl = `${single.url}/ergometer_two`;
    const onSingle = await Promise.all([
      track(openStore({ clickhouse: singleUrl })),
      track(openStore({ clickhouse: singleUrl })),
    ]);
    const shardUrls = cluster.shards.map((s) => s.url);
    // Collector i enters the cluster through shard i.
    const onCluster = await Promise.all(
      shardUrls.map((url) =>
        track(
          openStore({
            clickhouse: `${url}/ergometer_two?cluster=${cluster?.name}&shards=${shardUrls.join(',')}`,
          }),
        ),
      ),
    );
    const singleCollectors = [];
    for (const store of onSingle) singleCollectors.push(await startCollector(store));
    running.push(...singleCollectors);
    const clusterCollectors = [];
    for (const store of onCluster) clusterCollectors.push(await startCollector(store));
    running.push(...clusterCollectors);
    setups.set('one ClickHouse node', singleCollectors);
    setups.set('two-shard cluster', clusterCollectors);

    await sendToOne(reference);
  });

  after(async () => {
    for (const c of running) await c.collector.close().catch(() => undefined);
    for (const store of stores) await store.close().catch(() => undefined);
    await single?.stop();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const name of ['one ClickHouse node', 'two-shard cluster']) {
    test(`${name}: batches split over two collectors, some sent to both or retried; every sample stored once`, async () => {
      const [a, b] = setups.get(name) as [RunningCollector, RunningCollector];
      const { retries, duplicates } = await sendToTwo(a, b);
      assert.ok(retries > 0 && duplicates >= retries, `${duplicates} duplicates for ${retries} retries`);
      assert.equal(await reference?.store.sampleCount(), TOTAL_SAMPLES);
      assert.equal(await a.store.sampleCount(), TOTAL_SAMPLES, 'through collector A');
      assert.equal(await b.store.sampleCount(), TOTAL_SAMPLES, 'through collector B');
      if (name === 'two-shard cluster') {
        // Distributed for real: each shard holds part of the samples.
        for (const shard of cluster?.shards ?? []) {
          const stored = await localSamples(shard.url);
          assert.ok(stored > 0 && stored < TOTAL_SAMPLES, `shard ${shard.url} holds ${stored} of ${TOTAL_SAMPLES}`);
        }
      }
    });

    test(`${name}: /v1/services, /v1/commits and /v1/endpoints from each collector equal DuckDB's`, async () => {
      const collectors = setups.get(name) as RunningCollector[];
      for (const route of routes()) {
        const expected = await get(reference?.url as string, route);
        assert.ok(Array.isArray(expected) && expected.length > 0, `${route} on DuckDB is not empty`);
        for (const [i, c] of collectors.entries()) {
          assertSameAnswer(await get(c.url, route), expected, `${name}, collector ${i}, ${route}`);
        }
      }
    });
  }
});
