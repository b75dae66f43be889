/**
 * ClickHouse-specific behaviour, run against one node (clickhouse.test.ts) and a two-shard cluster
 * (clickhouse-cluster.test.ts): escaping, exactly-once with racing collectors, invisible
 * half-written batches, schema versioning, retention by partition drop and by mutation. Expected
 * numbers are computed here from the input with plain loops, never read back from the store.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { type ClickHouseSettings, createClient } from '@clickhouse/client';
import fc from 'fast-check';
import { type ClickHouseStoreOptions, openClickHouseStore, StoreError } from '../../src/index';
import { seededRandom } from '../../src/stats/random';
import { rowsOfBatch } from '../../src/store/clickhouse/rows';
import { ident, type Sql, sql, str } from '../../src/store/clickhouse/sql';
import { insertRows } from '../../src/store/clickhouse/store';
import { binOf, quantile } from '../../src/store/histogram';
import type { AggregateRow, IngestBatch, Store } from '../../src/store/types';
import type { OpenedStore } from './conformance';

const MINUTE = 60_000;
const DAY = 86_400_000;
/** A fixed, minute-aligned start: 2026-01-05T00:00Z. */
const T0 = Date.UTC(2026, 0, 5);

export interface Target {
  /** Options for a store on database `database`. */
  options(database: string): ClickHouseStoreOptions;
  /** URL of every node (one on a single node). */
  nodeUrls: string[];
}

const rng = seededRandom;

const ENDPOINTS = ['GET /feed/:id', 'POST /like', "GET /it's \\ \u00e9\u{1f600}"];

export function makeBatch(seed: number, opts: Partial<IngestBatch> & { start?: number; n?: number } = {}): IngestBatch {
  const random = rng(seed);
  const start = opts.start ?? T0;
  const n = opts.n ?? 50;
  const samples: IngestBatch['samples'] = [];
  for (let i = 0; i < n; i++) {
    const flags: Record<string, string> = {};
    if (random() < 0.5) flags.new_ranker = random() < 0.5 ? 'on' : 'off';
    if (random() < 0.3) flags['dark mode'] = 'v2';
    samples.push({
      ts: start + Math.floor(random() * 3 * MINUTE),
      endpoint: ENDPOINTS[Math.floor(random() * ENDPOINTS.length)] as string,
      status: random() < 0.9 ? 200 : 500,
      cost: Math.round(1000 + random() * 1_000_000),
      wallMs: Math.round(random() * 5000) / 100,
      db: Math.round(random() * 300) / 100,
      cache: Math.round(random() * 50) / 100,
      http: random() < 0.5 ? 0 : Math.round(random() * 900) / 100,
      flags,
      user: `u${Math.floor(random() * 20)}`,
      weight: random() < 0.5 ? 100 : 10,
      aborted: random() < 0.05,
    });
  }
  return {
    batchId: `batch-${seed}`,
    service: 'api',
    host: `web-${seed % 3}`,
    region: 'eu-1',
    commit: seed % 2 === 0 ? 'abc123' : 'def456',
    hostClass: seed % 4 === 0 ? 'xeon-8375c' : '',
    metric: 'instructions',
    agentVersion: '0.1.0',
    runtime: 'node v20.20.2',
    dropped: 0,
    receivedAt: start + 3 * MINUTE,
    samples,
    counts: ENDPOINTS.map((endpoint, i) => ({ minute: start, endpoint, requests: 1000 + i + seed })),
    users: [{ minute: start, sketch: `sketch-${seed}` }],
    ...opts,
  };
}

/** Counts in the store's order: minute, then endpoint by UTF-8 bytes. */
function sortCounts<T extends { minute: number; endpoint: string }>(rows: T[]): T[] {
  return [...rows].sort(
    (a, b) => a.minute - b.minute || Buffer.compare(Buffer.from(a.endpoint), Buffer.from(b.endpoint)),
  );
}

interface Expected {
  n: number;
  weight: number;
  sumCost: number;
  sumCost2: number;
  sumLogCost: number;
  sumWall: number;
  sumDb: number;
  costHist: Map<number, number>;
  wallHist: Map<number, number>;
}

/** Independent computation: per commit × endpoint × flag key × variant ('' = all samples), whole range. */
function expectedAggregates(batches: IngestBatch[]): Map<string, Expected> {
  const out = new Map<string, Expected>();
  for (const b of batches) {
    for (const s of b.samples) {
      const keys: Array<[string, string]> = [['', ''], ...Object.entries(s.flags)];
      for (const [fk, fv] of keys) {
        const k = [b.commit, s.endpoint, b.hostClass, fk, fv].join('|');
        let e = out.get(k);
        if (!e) {
          e = {
            n: 0,
            weight: 0,
            sumCost: 0,
            sumCost2: 0,
            sumLogCost: 0,
            sumWall: 0,
            sumDb: 0,
            costHist: new Map(),
            wallHist: new Map(),
          };
          out.set(k, e);
        }
        e.n++;
        e.weight += s.weight;
        e.sumCost += s.cost;
        e.sumCost2 += s.cost ** 2;
        e.sumLogCost += Math.log(Math.max(1, s.cost));
        e.sumWall += s.wallMs;
        e.sumDb += s.db;
        e.costHist.set(binOf(s.cost), (e.costHist.get(binOf(s.cost)) ?? 0) + 1);
        e.wallHist.set(binOf(s.wallMs), (e.wallHist.get(binOf(s.wallMs)) ?? 0) + 1);
      }
    }
  }
  return out;
}

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} ≠ ${expected}`);
}

function assertAggregatesMatch(rows: AggregateRow[], batches: IngestBatch[]): void {
  const expected = expectedAggregates(batches);
  assert.equal(rows.length, expected.size, 'one row per group');
  for (const r of rows) {
    const k = [r.commit, r.endpoint, r.hostClass, r.flagKey, r.flagVariant].join('|');
    const e = expected.get(k);
    assert.ok(e, `unexpected group ${k}`);
    assert.equal(r.n, e.n, `n of ${k}`);
    close(r.weight, e.weight, `weight of ${k}`);
    close(r.sumCost, e.sumCost, `sumCost of ${k}`);
    close(r.sumCost2, e.sumCost2, `sumCost2 of ${k}`);
    close(r.sumLogCost, e.sumLogCost, `sumLogCost of ${k}`);
    close(r.sumWall, e.sumWall, `sumWall of ${k}`);
    close(r.sumDb, e.sumDb, `sumDb of ${k}`);
    assert.deepEqual(
      [...r.costHist].sort((a, b) => a[0] - b[0]),
      [...e.costHist].sort((a, b) => a[0] - b[0]),
      `costHist of ${k}`,
    );
    assert.deepEqual(
      [...r.wallHist].sort((a, b) => a[0] - b[0]),
      [...e.wallHist].sort((a, b) => a[0] - b[0]),
      `wallHist of ${k}`,
    );
  }
}

/** Everything a reader can see, for comparing two stores. */
/**
 * Deep equality where numbers may differ in their last bits: sums of doubles read from two shards
 * (or from two sets of parts) are added in a different order. Everything else must be identical.
 */
function assertSameUpToRounding(actual: unknown, expected: unknown, at = '$'): void {
  if (typeof actual === 'number' && typeof expected === 'number') {
    const scale = Math.max(1, Math.abs(expected));
    assert.ok(Math.abs(actual - expected) <= 1e-9 * scale, `${at}: ${actual} vs ${expected}`);
    return;
  }
  if (Array.isArray(actual) && Array.isArray(expected)) {
    assert.equal(actual.length, expected.length, `${at}: length`);
    actual.forEach((value, i) => {
      assertSameUpToRounding(value, expected[i], `${at}[${i}]`);
    });
    return;
  }
  if (actual !== null && expected !== null && typeof actual === 'object' && typeof expected === 'object') {
    assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${at}: keys`);
    for (const key of Object.keys(expected)) {
      assertSameUpToRounding(
        (actual as Record<string, unknown>)[key],
        (expected as Record<string, unknown>)[key],
        `${at}.${key}`,
      );
    }
    return;
  }
  assert.deepEqual(actual, expected, at);
}

async function snapshot(store: Store): Promise<unknown> {
  const strip = (rows: AggregateRow[]): unknown =>
    rows.map((r) => ({ ...r, costHist: [...r.costHist].sort(), wallHist: [...r.wallHist].sort() }));
  return {
    count: await store.sampleCount('api'),
    aggregates: strip(await store.aggregates({ service: 'api', flags: 'all', bucketMs: MINUTE })),
    endpoints: await store.endpoints({ service: 'api' }),
    commits: await store.commits('api'),
    counts: await store.counts({ service: 'api' }),
    users: await store.users({ service: 'api' }),
    samples: await store.samples({ service: 'api', limit: 100_000 }),
  };
}

/**
 * A conformance-suite `open` for ClickHouse: a fresh database per call. Cleanup closes the store
 * and leaves the database to the server's temp dir, removed with the server: on 18.16 a DROP
 * DATABASE right after many inserts can block for minutes.
 */
export function openFreshDatabase(target: () => Target, prefix: string): () => Promise<OpenedStore> {
  let counter = 0;
  return async () => {
    const database = `${prefix}_${process.pid}_${++counter}`;
    const store = openClickHouseStore(target().options(database));
    return {
      store,
      cleanup: async () => {
        await store.close();
      },
    };
  };
}

/** `target` is called once the servers are up (in the test file's top-level before()). */
export function clickHouseSuite(
  name: string,
  target: () => Target,
  /** Registers more tests inside the suite. */
  extraTests?: (target: () => Target) => void,
): void {
  describe(name, () => {
    let dbCounter = 0;
    const opened: Store[] = [];
    const open = async (database = `t_${process.pid}_${++dbCounter}`): Promise<Store> => {
      const store = openClickHouseStore(target().options(database));
      opened.push(store);
      await store.init();
      return store;
    };

    after(async () => {
      await Promise.allSettled(opened.map((s) => s.close()));
    });

    test('string literals round-trip any input byte for byte (no escaping way out)', async () => {
      const client = createClient({ url: target().nodeUrls[0] as string });
      try {
        const hostile = [
          "'",
          '\\',
          "\\'",
          "'; DROP TABLE x; --",
          '\u0000',
          '\n\r\t',
          '{x:String}',
          '\u00e9\u{1f600}',
          '',
        ];
        const inputs = [...hostile, ...fc.sample(fc.string({ unit: 'binary', maxLength: 40 }), 200)];
        // One query with every literal: the server returns each one's bytes in hex.
        const select = inputs.map((v, i) => `hex(${str(v).text}) AS c${i}`).join(', ');
        const result = await client.query({ query: `SELECT ${select}`, format: 'JSONEachRow' });
        const [row] = await result.json<Record<string, string>>();
        inputs.forEach((v, i) => {
          assert.equal(row?.[`c${i}`], Buffer.from(v, 'utf8').toString('hex').toUpperCase(), JSON.stringify(v));
        });
      } finally {
        await client.close();
      }
    });

    test('init is idempotent and refuses a schema newer than the code', async () => {
      const database = `t_${process.pid}_schema`;
      const store = await open(database);
      await store.init();
      assert.equal(await store.sampleCount(), 0);
      for (const url of target().nodeUrls) {
        const client = createClient({ url });
        await client.command({ query: `INSERT INTO ${database}.schema_version VALUES (99, 0)` });
        await client.close();
      }
      const newer = openClickHouseStore(target().options(database));
      opened.push(newer);
      await assert.rejects(
        newer.init(),
        (e: unknown) => e instanceof StoreError && e.code === 'ERGOMETER_SCHEMA_TOO_NEW',
      );
    });

    test('reads before init say to call init()', async () => {
      const store = openClickHouseStore(target().options(`t_${process.pid}_never`));
      opened.push(store);
      await assert.rejects(
        store.sampleCount(),
        (e: unknown) => e instanceof StoreError && e.code === 'ERGOMETER_STORE_CLOSED',
      );
    });

    test('aggregates equal the numbers computed from the input; a flagged sample counts in all and per flag', async () => {
      const store = await open();
      const batches = [1, 2, 3, 4, 5, 6].map((seed) => makeBatch(seed));
      for (const b of batches) assert.deepEqual(await store.ingest(b), { stored: true, samples: b.samples.length });
      assert.equal(await store.sampleCount('api'), 300);
      assert.equal(await store.sampleCount(), 300);
      assertAggregatesMatch(await store.aggregates({ service: 'api', flags: 'all' }), batches);

      const none = await store.aggregates({ service: 'api' });
      assert.ok(none.every((r) => r.flagKey === ''));
      const ranker = await store.aggregates({ service: 'api', flags: { key: 'new_ranker' } });
      assert.deepEqual([...new Set(ranker.map((r) => r.flagVariant))].sort(), ['off', 'on']);
      const flagged = batches.flatMap((b) => b.samples).filter((s) => s.flags.new_ranker !== undefined).length;
      assert.equal(
        ranker.reduce((sum, r) => sum + r.n, 0),
        flagged,
      );

      // Buckets and dropped dimensions merge exactly.
      const perMinute = await store.aggregates({ service: 'api', bucketMs: MINUTE, groupBy: [] });
      assert.ok(perMinute.every((r) => r.bucket % MINUTE === 0 && r.commit === '' && r.endpoint === ''));
      assert.equal(perMinute.length, 3);
      assert.equal(
        perMinute.reduce((sum, r) => sum + r.n, 0),
        300,
      );
      const ts = batches.flatMap((b) => b.samples.map((s) => s.ts));
      for (const r of perMinute) assert.equal(r.n, ts.filter((t) => t >= r.bucket && t < r.bucket + MINUTE).length);
      const oneCommit = await store.aggregates({ service: 'api', commit: 'abc123', groupBy: ['endpoint'] });
      assertAggregatesMatch(
        oneCommit.map((r) => ({ ...r, commit: 'abc123', hostClass: '' })),
        batches
          .filter((b) => b.commit === 'abc123')
          .map((b) => ({ ...b, hostClass: '', samples: b.samples.map((x) => ({ ...x, flags: {} })) })),
      );
      const ranged = await store.aggregates({ service: 'api', from: T0 + MINUTE, to: T0 + 2 * MINUTE, groupBy: [] });
      assert.equal(ranged[0]?.n, ts.filter((t) => t >= T0 + MINUTE && t < T0 + 2 * MINUTE).length);
    });

    test('endpoints: requests from counts, quantiles from histograms, shares add up to 1', async () => {
      const store = await open();
      const batches = [11, 12, 13].map((seed) => makeBatch(seed, { n: 200 }));
      await store.ingestMany(batches);
      const stats = await store.endpoints({ service: 'api' });
      assert.equal(stats.length, ENDPOINTS.length);
      close(
        stats.reduce((sum, s) => sum + s.share, 0),
        1,
        'sum of shares',
      );
      for (const s of stats) {
        const mine = batches.flatMap((b) => b.samples).filter((x) => x.endpoint === s.endpoint);
        assert.equal(s.samples, mine.length);
        const requests = batches
          .flatMap((b) => b.counts)
          .filter((c) => c.endpoint === s.endpoint)
          .reduce((sum, c) => sum + c.requests, 0);
        assert.equal(s.requests, requests);
        close(s.costMean, mine.reduce((sum, x) => sum + x.cost, 0) / mine.length, 'costMean');
        const hist = new Map<number, number>();
        for (const x of mine) hist.set(binOf(x.cost), (hist.get(binOf(x.cost)) ?? 0) + 1);
        assert.equal(s.costP95, quantile(hist, 0.95));
        const sorted = mine.map((x) => x.cost).sort((a, b) => a - b);
        const exactP50 = sorted[Math.ceil(0.5 * sorted.length) - 1] as number;
        assert.ok(Math.abs(s.costP50 / exactP50 - 1) < 0.025, `p50 ${s.costP50} vs exact ${exactP50}`);
        close(s.dbMs, mine.reduce((sum, x) => sum + x.db, 0) / mine.length, 'dbMs');
      }
    });

    test('a batch id seen before is not stored again, also inside one ingestMany', async () => {
      const store = await open();
      const b = makeBatch(21);
      assert.equal((await store.ingest(b)).stored, true);
      assert.equal((await store.ingest(b)).stored, false);
      const results = await store.ingestMany([makeBatch(22), makeBatch(22), b]);
      assert.deepEqual(
        results.map((r) => r.stored),
        [true, false, false],
      );
      assert.equal(await store.sampleCount('api'), 100);
    });

    test('concurrent ingest() calls are written together, and a bad batch among them fails alone', async () => {
      const store = await open();
      const good = [61, 62, 63, 64].map((seed) => makeBatch(seed, { n: 10 }));
      // A fractional count cannot be written to its UInt64 column: refused, never rounded.
      const bad = makeBatch(65, { n: 10, counts: [{ minute: T0, endpoint: 'GET /x', requests: 1.5 }] });
      const outcomes = await Promise.allSettled(
        [...good.slice(0, 2), bad, ...good.slice(2)].map((b) => store.ingest(b)),
      );
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
      );
      const refused = outcomes[2] as PromiseRejectedResult;
      assert.ok(refused.reason instanceof StoreError && refused.reason.code === 'ERGOMETER_STORE_QUERY_FAILED');
      assert.equal(await store.sampleCount('api'), 40);
      assert.deepEqual(
        (await store.counts({ service: 'api' })).filter((c) => c.endpoint === 'GET /x'),
        [],
      );
    });

    test('two collectors ingesting the same batches at the same moment: every read equals a single ingest', async () => {
      const database = `t_${process.pid}_race`;
      const a = await open(database);
      const b = openClickHouseStore(target().options(database));
      opened.push(b);
      await b.init();
      const batches = Array.from({ length: 12 }, (_, i) => makeBatch(100 + i, { n: 40 }));
      const results = await Promise.all(
        batches.flatMap((batch) => [
          a.ingest(batch),
          b.ingest(batch),
          a.ingestMany([batch]).then((r) => r[0]),
          b.ingestMany([batch]).then((r) => r[0]),
        ]),
      );
      // Every batch is acknowledged by someone as stored; none is lost.
      for (let i = 0; i < batches.length; i++) {
        assert.ok(
          results.slice(4 * i, 4 * i + 4).some((r) => r?.stored),
          `batch ${i} stored by one collector`,
        );
      }
      const single = await open();
      for (const batch of batches) await single.ingest(batch);
      assert.equal(await a.sampleCount('api'), 12 * 40);
      // Regression: exact deepEqual failed in CI on a last-bit difference of httpMs (2.472222222222222 vs
      // 2.4722222222222228) — the same sums added in another order.
      assertSameUpToRounding(await snapshot(a), await snapshot(single));
      assertSameUpToRounding(await snapshot(b), await snapshot(single));
    });

    test('a batch half-written by a collector that died is invisible, and its retry counts once', async () => {
      const database = `t_${process.pid}_crash`;
      const store = await open(database);
      const batch = makeBatch(31);
      // What a collector killed between the row inserts and the commit record leaves behind.
      const rows = rowsOfBatch(batch);
      const client = createClient({ url: target().nodeUrls[0] as string });
      const suffix = target().nodeUrls.length > 1 ? '' : '_local';
      const settings: ClickHouseSettings = target().nodeUrls.length > 1 ? { insert_distributed_sync: 1 } : {};
      const table = (name: string): Sql => sql`${ident(database)}.${ident(name + suffix)}`;
      await insertRows(client, table('samples'), 'samples', rows.samples, settings);
      await insertRows(client, table('aggregates'), 'aggregates', rows.aggregates, settings);
      await insertRows(client, table('counts'), 'counts', rows.counts, settings);
      await client.close();
      assert.equal(await store.sampleCount(), 0);
      assert.deepEqual(await store.aggregates({ service: 'api' }), []);
      assert.deepEqual(await store.counts({ service: 'api' }), []);
      // The agent retries: now every row exists twice on disk, and is read once.
      assert.equal((await store.ingest(batch)).stored, true);
      assert.equal(await store.sampleCount(), batch.samples.length);
      assertAggregatesMatch(await store.aggregates({ service: 'api', flags: 'all' }), [batch]);
      const counts = await store.counts({ service: 'api' });
      assert.deepEqual(counts, sortCounts(batch.counts));
      assert.equal((await store.samples({ service: 'api' })).length, batch.samples.length);
    });

    test('samples, services, commits, deploys, counts, users and profiles read back what was written', async () => {
      const store = await open();
      const first = makeBatch(40, { start: T0, n: 30 });
      const second = makeBatch(41, { start: T0 + 10 * MINUTE, n: 30 });
      const other = makeBatch(42, { service: "o'ther", metric: 'cpu_ns', n: 5 });
      await store.ingestMany([first, second, other]);
      await store.recordDeploy({ service: 'api', commit: 'def456', ts: T0 + 9 * MINUTE });
      await store.recordDeploy({ service: 'api', commit: 'def456', ts: T0 + 9 * MINUTE });

      const samples = await store.samples({ service: 'api', limit: 1000 });
      assert.equal(samples.length, 60);
      assert.ok(
        samples.every((s, i) => i === 0 || (samples[i - 1] as { ts: number }).ts >= s.ts),
        'newest first',
      );
      const input = [...first.samples, ...second.samples].sort((a, b) => b.ts - a.ts)[0];
      const newest = samples[0];
      assert.equal(newest?.ts, input?.ts);
      assert.equal((await store.samples({ service: 'api', limit: 7 })).length, 7);
      const byEndpoint = await store.samples({ service: 'api', endpoint: ENDPOINTS[2] as string });
      assert.equal(
        byEndpoint.length,
        [...first.samples, ...second.samples].filter((s) => s.endpoint === ENDPOINTS[2]).length,
      );
      const roundTrip = (await store.samples({ service: 'api', commit: 'abc123', from: T0, to: T0 + 5 * MINUTE })).sort(
        (a, b) => a.ts - b.ts || a.cost - b.cost,
      );
      const expected = first.samples
        .map((s) => ({
          ...s,
          service: 'api',
          commit: 'abc123',
          host: first.host,
          region: 'eu-1',
          hostClass: first.hostClass,
          metric: 'instructions',
        }))
        .sort((a, b) => a.ts - b.ts || a.cost - b.cost);
      assert.deepEqual(roundTrip, expected);

      const services = await store.services();
      assert.deepEqual(
        services.map((s) => [s.service, s.samples, s.metrics]),
        [
          ['api', 60, ['instructions']],
          ["o'ther", 5, ['cpu_ns']],
        ],
      );
      const allTs = [...first.samples, ...second.samples].map((s) => s.ts);
      assert.equal(services[0]?.firstSeen, Math.min(...allTs));
      assert.equal(services[0]?.lastSeen, Math.max(...allTs));

      const commits = await store.commits('api');
      assert.deepEqual(
        commits.map((c) => [c.commit, c.samples, c.requests, c.deployedAt]),
        [
          ['abc123', 30, first.samples.reduce((s, x) => s + x.weight, 0), null],
          ['def456', 30, second.samples.reduce((s, x) => s + x.weight, 0), T0 + 9 * MINUTE],
        ],
      );
      assert.deepEqual(await store.deploys('api'), [{ service: 'api', commit: 'def456', ts: T0 + 9 * MINUTE }]);
      assert.deepEqual(await store.deploys('api', { to: T0 + 9 * MINUTE }), []);

      const counts = await store.counts({ service: 'api', endpoint: ENDPOINTS[0] as string });
      assert.deepEqual(counts, [
        { minute: T0, endpoint: ENDPOINTS[0], requests: 1040 },
        { minute: T0 + 10 * MINUTE, endpoint: ENDPOINTS[0], requests: 1041 },
      ]);
      assert.deepEqual(await store.users({ service: 'api', from: T0 + MINUTE }), [
        { minute: T0 + 10 * MINUTE, sketches: ['sketch-41'] },
      ]);

      const pprof = Buffer.from([0x1f, 0x8b, 0x00, 0xff, 0x27, 0x5c]);
      const profile = await store.storeProfile(
        { service: 'api', commit: 'abc123', host: 'web-1', metric: 'instructions', from: T0, to: T0 + MINUTE },
        pprof,
        T0 + 2 * MINUTE,
      );
      assert.equal(profile.bytes, 6);
      assert.deepEqual(await store.getProfile(profile.id), pprof);
      assert.equal(await store.getProfile('no such id'), undefined);
      assert.deepEqual(await store.listProfiles({ service: 'api' }), [profile]);
      assert.deepEqual(await store.listProfiles({ service: 'api', commit: 'def456' }), []);
      assert.deepEqual(await store.listProfiles({ service: 'api', from: T0 + 1 }), []);
      assert.deepEqual(await store.listProfiles({ service: 'api', from: T0, to: T0 + 1 }), [profile]);
    });

    test('retention drops whole old partitions and deletes the rest of the cutoff day, counting what went', async () => {
      const store = await open();
      // Samples on five consecutive days at 06:00 and 18:00.
      const batches = [];
      for (let d = 0; d < 5; d++) {
        for (const hour of [6, 18])
          batches.push(makeBatch(500 + d * 24 + hour, { start: T0 + d * DAY + hour * 3_600_000, n: 10 }));
      }
      await store.ingestMany(batches);
      const profile = await store.storeProfile(
        { service: 'api', commit: 'abc123', host: 'h', metric: 'instructions', from: T0, to: T0 + 1 },
        Buffer.from('x'),
        T0,
      );
      // now = day 4 at 12:00; keep samples 2 days: cutoff day 2 at 12:00.
      const now = T0 + 4 * DAY + 12 * 3_600_000;
      const cutoff = now - 2 * DAY;
      const old = batches.flatMap((b) => b.samples).filter((s) => s.ts < cutoff).length;
      const result = await store.applyRetention({ samplesDays: 2, aggregatesDays: 400, profilesDays: 1 }, now);
      assert.equal(result.samplesDeleted, old);
      assert.equal(result.aggregatesDeleted, 0);
      assert.equal(result.profilesDeleted, 1);
      assert.equal(await store.sampleCount('api'), 100 - old);
      assert.ok((await store.samples({ service: 'api', limit: 1000 })).every((s) => s.ts >= cutoff));
      // Aggregates outlive the samples.
      assert.equal((await store.aggregates({ service: 'api', groupBy: [] }))[0]?.n, 100);
      assert.equal(await store.getProfile(profile.id), undefined);
      // A second run deletes nothing more.
      assert.deepEqual(await store.applyRetention({ samplesDays: 2, aggregatesDays: 400, profilesDays: 1 }, now), {
        samplesDeleted: 0,
        aggregatesDeleted: 0,
        profilesDeleted: 0,
      });
      const aggResult = await store.applyRetention({ samplesDays: 2, aggregatesDays: 3, profilesDays: 1 }, now);
      assert.ok(aggResult.aggregatesDeleted > 0);
      const left = await store.aggregates({ service: 'api', groupBy: [] });
      assert.equal(
        left[0]?.n,
        batches.flatMap((b) => b.samples).filter((s) => Math.floor(s.ts / MINUTE) * MINUTE >= now - 3 * DAY).length,
      );
    });

    extraTests?.(target);
  });
}
