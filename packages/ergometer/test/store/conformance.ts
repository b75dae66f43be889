/**
 * The storage conformance suite: every backend (DuckDB file, ClickHouse single node and cluster)
 * must pass it. The expected numbers are computed here, independently, from the generated raw
 * samples; nothing is hard-coded and nothing is read back from the store to build an expectation.
 *
 * Semantics fixed by this suite (see also docs/storage.md):
 * - Aggregate sums (`n`, `sumCost`, `sumCost2`, `sumLogCost`, `sumLogCost2`, `sumWall`, `sumDb`,
 *   `sumCache`, `sumHttp`) and the histograms are over samples, unweighted; `weight` is the sum of
 *   sample weights (the requests the samples stand for).
 * - Time ranges on aggregates, counts, users and `endpoints()` select minute buckets whose start is
 *   in [from, to); on raw samples they select `ts` in [from, to).
 * - `endpoints()`: `costMean` = sumCost / n, `dbMs`/`cacheMs`/`httpMs` are means per sample,
 *   `requests` = summed counts of that endpoint (service, metric, commit when given) when any count
 *   row exists in the range, else the sum of weights; `share` = costMean × requests over the sum of
 *   that product across the endpoints of the same metric.
 *
 * Usage: `runStoreConformance('duckdb', async () => ({ store, cleanup }))`. `open` returns a store
 * on empty storage; the suite calls `init()`; `cleanup` closes the store and removes its data.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  decodeUsersSketch,
  encodeUsersSketch,
  mergeUsersSketches,
  type UsersSketch,
} from '@ergometer/agent/users-sketch';
import { decodeProfile, summarizeProfile } from '../../src/profile/decode';
import { binOf, quantile } from '../../src/store/histogram';
import type {
  AggregateQuery,
  AggregateRow,
  HostMomentsQuery,
  IngestBatch,
  Metric,
  ProfileQuery,
  Store,
  StoredSample,
} from '../../src/store/types';
import { buildPprof, type FixtureSample } from '../profile/pprof';
import {
  DAY_MS,
  ENDPOINT_WITHOUT_COUNTS,
  generateDataset,
  HOUR_MS,
  MINUTE_MS,
  seededRandom,
  T0_MS,
  toStored,
  type WireSample,
} from './dataset';

export { generateDataset, seededRandom, T0_MS } from './dataset';

export interface OpenedStore {
  store: Store;
  cleanup: () => Promise<void>;
}

/** Relative error bound of a histogram quantile: half a bin of width 2^(1/16), plus rounding. */
const HISTOGRAM_REL_ERROR = 2 ** (1 / 32) - 1 + 1e-9;

type Dim = 'commit' | 'endpoint' | 'hostClass' | 'flag';

interface ExpectedAggregate extends Omit<AggregateRow, 'costHist' | 'wallHist'> {
  costHist: Map<number, number>;
  wallHist: Map<number, number>;
}

function minuteOf(ts: number): number {
  return Math.floor(ts / MINUTE_MS) * MINUTE_MS;
}

function inRange(value: number, q: { from?: number; to?: number }): boolean {
  return (q.from === undefined || value >= q.from) && (q.to === undefined || value < q.to);
}

/** The aggregate rows a query must return, computed from raw samples. */
export function expectedAggregates(
  samples: readonly StoredSample[],
  q: AggregateQuery,
): Map<string, ExpectedAggregate> {
  const groupBy = new Set<Dim>(q.groupBy ?? ['commit', 'endpoint', 'hostClass', 'flag']);
  const flags = q.flags ?? 'none';
  const out = new Map<string, ExpectedAggregate>();
  for (const s of samples) {
    if (s.service !== q.service) continue;
    if (q.commit !== undefined && s.commit !== q.commit) continue;
    if (q.endpoint !== undefined && s.endpoint !== q.endpoint) continue;
    if (q.metric !== undefined && s.metric !== q.metric) continue;
    const minute = minuteOf(s.ts);
    if (!inRange(minute, q)) continue;
    const flagRows: Array<[string, string]> = [];
    if (flags === 'none' || flags === 'all') flagRows.push(['', '']);
    for (const [key, variant] of Object.entries(s.flags)) {
      if (flags === 'all' || (typeof flags === 'object' && flags.key === key)) flagRows.push([key, variant]);
    }
    const bucket = q.bucketMs ? Math.floor(minute / q.bucketMs) * q.bucketMs : 0;
    for (const [flagKey, flagVariant] of flagRows) {
      const row: ExpectedAggregate = {
        service: s.service,
        commit: groupBy.has('commit') ? s.commit : '',
        endpoint: groupBy.has('endpoint') ? s.endpoint : '',
        metric: s.metric,
        hostClass: groupBy.has('hostClass') ? s.hostClass : '',
        flagKey: groupBy.has('flag') ? flagKey : '',
        flagVariant: groupBy.has('flag') ? flagVariant : '',
        bucket,
        n: 0,
        weight: 0,
        sumCost: 0,
        sumCost2: 0,
        sumLogCost: 0,
        sumLogCost2: 0,
        sumWall: 0,
        sumDb: 0,
        sumCache: 0,
        sumHttp: 0,
        costHist: new Map(),
        wallHist: new Map(),
      };
      const key = aggregateKey(row);
      const acc = out.get(key) ?? row;
      out.set(key, acc);
      const logCost = Math.log(Math.max(s.cost, 1));
      acc.n += 1;
      acc.weight += s.weight;
      acc.sumCost += s.cost;
      acc.sumCost2 += s.cost * s.cost;
      acc.sumLogCost += logCost;
      acc.sumLogCost2 += logCost * logCost;
      acc.sumWall += s.wallMs;
      acc.sumDb += s.db;
      acc.sumCache += s.cache;
      acc.sumHttp += s.http;
      const cb = binOf(s.cost);
      acc.costHist.set(cb, (acc.costHist.get(cb) ?? 0) + 1);
      const wb = binOf(s.wallMs);
      acc.wallHist.set(wb, (acc.wallHist.get(wb) ?? 0) + 1);
    }
  }
  return out;
}

function aggregateKey(
  r: Pick<AggregateRow, 'commit' | 'endpoint' | 'metric' | 'hostClass' | 'flagKey' | 'flagVariant' | 'bucket'>,
): string {
  return JSON.stringify([r.commit, r.endpoint, r.metric, r.hostClass, r.flagKey, r.flagVariant, r.bucket]);
}

function assertClose(actual: number, expected: number, what: string, relTol = 1e-9): void {
  const scale = Math.max(Math.abs(expected), 1e-9);
  assert.ok(
    Math.abs(actual - expected) <= relTol * scale,
    `${what}: expected ${expected}, got ${actual} (relative tolerance ${relTol})`,
  );
}

function histObject(h: ReadonlyMap<number, number>): Record<string, number> {
  const o: Record<string, number> = {};
  for (const [bin, count] of [...h.entries()].sort((a, b) => a[0] - b[0])) if (count !== 0) o[String(bin)] = count;
  return o;
}

/** Compares a store's aggregate answer with the independently computed one, row by row. */
export function assertAggregatesEqual(
  actual: readonly AggregateRow[],
  expected: Map<string, ExpectedAggregate>,
  what: string,
): void {
  const seen = new Set<string>();
  for (const row of actual) {
    const key = aggregateKey(row);
    assert.ok(!seen.has(key), `${what}: row ${key} returned twice`);
    seen.add(key);
    const exp = expected.get(key);
    assert.ok(exp, `${what}: unexpected row ${key}`);
    assert.equal(row.service, exp.service, `${what} ${key}: service`);
    assert.equal(row.n, exp.n, `${what} ${key}: n`);
    assertClose(row.weight, exp.weight, `${what} ${key}: weight`);
    assertClose(row.sumCost, exp.sumCost, `${what} ${key}: sumCost`);
    assertClose(row.sumCost2, exp.sumCost2, `${what} ${key}: sumCost2`);
    assertClose(row.sumLogCost, exp.sumLogCost, `${what} ${key}: sumLogCost`);
    assertClose(row.sumLogCost2, exp.sumLogCost2, `${what} ${key}: sumLogCost2`);
    assertClose(row.sumWall, exp.sumWall, `${what} ${key}: sumWall`);
    assertClose(row.sumDb, exp.sumDb, `${what} ${key}: sumDb`);
    assertClose(row.sumCache, exp.sumCache, `${what} ${key}: sumCache`);
    assertClose(row.sumHttp, exp.sumHttp, `${what} ${key}: sumHttp`);
    assert.deepEqual(histObject(row.costHist), histObject(exp.costHist), `${what} ${key}: costHist`);
    assert.deepEqual(histObject(row.wallHist), histObject(exp.wallHist), `${what} ${key}: wallHist`);
  }
  const missing = [...expected.keys()].filter((k) => !seen.has(k));
  assert.deepEqual(missing, [], `${what}: rows missing from the store's answer`);
}

/** Nearest-rank quantile: the value a histogram quantile must be within one half-bin of. */
function exactQuantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1] as number;
}

function assertQuantileClose(actual: number, exact: number, what: string): void {
  if (exact < 1) {
    // Bin 0 holds [0, 1): its representative value is 0.5.
    assert.ok(actual <= 1, `${what}: exact ${exact} is in bin 0, got ${actual}`);
    return;
  }
  assert.ok(
    Math.abs(actual - exact) <= HISTOGRAM_REL_ERROR * exact,
    `${what}: histogram quantile ${actual} is not within ${(HISTOGRAM_REL_ERROR * 100).toFixed(2)}% of exact ${exact}`,
  );
}

/** Strings a hostile or sloppy client may send; each must be stored and returned literally. */
export const UNTRUSTED_STRINGS = [
  "it's",
  'say "hi"',
  "x'; DROP TABLE samples; --",
  'x"); DROP TABLE aggregates; --',
  '<script>alert(1)</script>',
  'ünïcødé ✓ 日本語 🚀',
  'ctl\u0001\u0007\t\n\r\u001f\u007f',
  'back\\slash %_ like',
  '$1 ? :name {placeholder}',
];

async function ingestAll(store: Store, batches: readonly IngestBatch[]): Promise<void> {
  // Mix single ingests and group commits, as a collector would.
  for (let i = 0; i < batches.length; ) {
    if (i % 3 === 0) {
      const result = await store.ingest(batches[i] as IngestBatch);
      assert.equal(result.stored, true);
      i += 1;
    } else {
      const group = batches.slice(i, i + 7);
      const results = await store.ingestMany(group);
      assert.deepEqual(
        results.map((r) => r.stored),
        group.map(() => true),
      );
      i += group.length;
    }
  }
}

/**
 * Declares the conformance tests for one backend. `open` gives a store on empty storage; it may be
 * called several times (tests that need an empty store open their own).
 */
export function runStoreConformance(name: string, open: () => Promise<OpenedStore>): void {
  describe(`store conformance: ${name}`, () => {
    const data = generateDataset(20261127, 90);
    let opened: OpenedStore | undefined;
    const store = (): Store => {
      assert.ok(opened, 'store was not opened');
      return opened.store;
    };

    before(async () => {
      opened = await open();
      await opened.store.init();
      await opened.store.init(); // idempotent
      await ingestAll(opened.store, data.batches);
    });

    after(async () => {
      await opened?.cleanup();
    });

    it('stores every sample once', async () => {
      assert.equal(await store().sampleCount(), data.samples.length);
      for (const service of ['api', 'web']) {
        assert.equal(await store().sampleCount(service), data.samples.filter((s) => s.service === service).length);
      }
      assert.equal(await store().sampleCount('no-such-service'), 0);
    });

    it('a batchId seen before is acknowledged, not stored again (samples, aggregates, counts, users unchanged)', async () => {
      const q = { service: 'api' };
      const before = {
        samples: await store().sampleCount(),
        endpoints: await store().endpoints(q),
        aggregates: await store().aggregates({ ...q, flags: 'all' }),
        counts: await store().counts(q),
        users: await store().users(q),
      };
      const first = data.batches.find((b) => b.service === 'api') as IngestBatch;
      const again = await store().ingest(first);
      assert.equal(again.stored, false);
      // Same id with different content is still the same batch: nothing is written.
      const altered = { ...first, samples: [...first.samples, ...first.samples] };
      assert.equal((await store().ingest(altered)).stored, false);
      const many = await store().ingestMany([first, data.batches[1] as IngestBatch]);
      assert.deepEqual(
        many.map((r) => r.stored),
        [false, false],
      );
      assert.equal(await store().sampleCount(), before.samples);
      assert.deepEqual(await store().endpoints(q), before.endpoints);
      assertAggregatesEqual(
        await store().aggregates({ ...q, flags: 'all' }),
        expectedAggregates(data.samples, { ...q, flags: 'all' }),
        'after duplicates',
      );
      assert.equal((await store().aggregates({ ...q, flags: 'all' })).length, before.aggregates.length);
      assert.deepEqual(await store().counts(q), before.counts);
      assert.deepEqual(sortUsers(await store().users(q)), sortUsers(before.users));
    });

    it('ingestMany with a duplicate inside stores it once and says which one was new', async () => {
      const extra = generateDataset(7, 3, T0_MS + 10 * HOUR_MS);
      const [a, b, c] = extra.batches.map((batch, i) => ({ ...batch, batchId: `dup-${i}`, service: 'dup-svc' })) as [
        IngestBatch,
        IngestBatch,
        IngestBatch,
      ];
      const results = await store().ingestMany([a, b, a, c, b]);
      assert.deepEqual(
        results.map((r) => r.stored),
        [true, true, false, true, false],
      );
      assert.deepEqual(
        results.map((r) => r.samples),
        [a, b, a, c, b].map((batch) => batch.samples.length),
      );
      assert.equal(await store().sampleCount('dup-svc'), a.samples.length + b.samples.length + c.samples.length);
      const stored = [a, b, c].flatMap((batch) => batch.samples.map((s) => toStored(batch, s)));
      assertAggregatesEqual(
        await store().aggregates({ service: 'dup-svc', flags: 'all' }),
        expectedAggregates(stored, { service: 'dup-svc', flags: 'all' }),
        'dup-svc',
      );
      // An empty group commit is fine.
      assert.deepEqual(await store().ingestMany([]), []);
    });

    it('concurrent ingests of the same batches store each batch exactly once', async () => {
      // The contract is about the data: stored once, whatever the interleaving. Which concurrent call
      // answers stored: true is the backend's business, as long as at least one does.
      const extra = generateDataset(8, 6, T0_MS + 20 * HOUR_MS);
      const batches = extra.batches.map((batch, i) => ({ ...batch, batchId: `conc-${i}`, service: 'conc-svc' }));
      const [a, b, c, d, e, f] = batches as [
        IngestBatch,
        IngestBatch,
        IngestBatch,
        IngestBatch,
        IngestBatch,
        IngestBatch,
      ];
      const calls: Array<Promise<Array<{ id: string; stored: boolean }>>> = [
        [a],
        [b, a],
        [a],
        [c, d],
        [d, e, b],
        [f],
        [f, c],
      ].map((group) =>
        store()
          .ingestMany(group)
          .then((results) => results.map((r, i) => ({ id: (group[i] as IngestBatch).batchId, stored: r.stored }))),
      );
      calls.push(
        store()
          .ingest(e)
          .then((r) => [{ id: e.batchId, stored: r.stored }]),
      );
      const results = (await Promise.all(calls)).flat();
      for (const batch of batches) {
        const stored = results.filter((r) => r.id === batch.batchId && r.stored).length;
        assert.ok(stored >= 1, `${batch.batchId}: some call says it was stored`);
      }
      const all = batches.flatMap((batch) => batch.samples.map((s) => toStored(batch, s)));
      assert.equal(await store().sampleCount('conc-svc'), all.length);
      const q: AggregateQuery = { service: 'conc-svc', flags: 'all' };
      assertAggregatesEqual(await store().aggregates(q), expectedAggregates(all, q), 'conc-svc');
    });

    it('aggregates equal sums computed from the raw samples (all groups, all flag rows)', async () => {
      for (const service of ['api', 'web']) {
        for (const flags of ['none', 'all'] as const) {
          const q: AggregateQuery = { service, flags };
          assertAggregatesEqual(
            await store().aggregates(q),
            expectedAggregates(data.samples, q),
            `${service} ${flags}`,
          );
        }
      }
    });

    it('aggregates honour bucketMs and groupBy (dropped dimensions merged, returned as "")', async () => {
      const queries: AggregateQuery[] = [
        { service: 'api', bucketMs: HOUR_MS, groupBy: ['endpoint'] },
        { service: 'api', bucketMs: 5 * MINUTE_MS, groupBy: ['commit', 'endpoint'] },
        { service: 'api', bucketMs: MINUTE_MS, groupBy: [] },
        { service: 'web', bucketMs: 30 * MINUTE_MS, groupBy: ['hostClass', 'flag'], flags: 'all' },
        { service: 'api', bucketMs: 0, groupBy: ['flag'], flags: { key: 'new_ranker' } },
      ];
      for (const q of queries) {
        const rows = await store().aggregates(q);
        for (const row of rows) if (q.bucketMs) assert.equal(row.bucket % q.bucketMs, 0, 'bucket is a multiple');
        assertAggregatesEqual(rows, expectedAggregates(data.samples, q), JSON.stringify(q));
      }
    });

    it('aggregates merge only the histograms asked for (histograms: cost | none), with the same sums', async () => {
      const queries: AggregateQuery[] = [
        { service: 'api', bucketMs: HOUR_MS, groupBy: ['endpoint'] },
        { service: 'api', bucketMs: 5 * MINUTE_MS, groupBy: ['endpoint'], from: T0_MS + 90 * MINUTE_MS },
        { service: 'web', groupBy: ['hostClass', 'flag'], flags: 'all' },
      ];
      for (const q of queries) {
        const expected = expectedAggregates(data.samples, q);
        for (const histograms of ['cost', 'none'] as const) {
          const rows = await store().aggregates({ ...q, histograms });
          const what = `${JSON.stringify(q)} histograms=${histograms}`;
          // Same rows and sums as with both histograms; the histograms left out come back empty.
          const withHistograms = new Map(
            [...expected].map(([key, row]) => [
              key,
              { ...row, costHist: histograms === 'cost' ? row.costHist : new Map(), wallHist: new Map() },
            ]),
          );
          assert.ok(rows.length > 0, what);
          assertAggregatesEqual(rows, withHistograms, what);
        }
      }
    });

    it('aggregates filter by flag key, commit, endpoint, metric and range', async () => {
      const queries: AggregateQuery[] = [
        { service: 'api', flags: { key: 'new_ranker' } },
        { service: 'api', flags: { key: 'cache_v2' }, commit: 'c2' },
        { service: 'api', flags: { key: 'no_such_flag' } },
        { service: 'api', endpoint: 'GET /search', commit: 'c1' },
        { service: 'web', metric: 'cpu_ns', flags: 'all' },
        { service: 'web', metric: 'instructions' },
        { service: 'api', from: T0_MS + HOUR_MS, to: T0_MS + 2 * HOUR_MS, flags: 'all' },
        { service: 'api', from: T0_MS + 90 * MINUTE_MS, bucketMs: 10 * MINUTE_MS },
        { service: 'api', to: T0_MS + 30 * MINUTE_MS, groupBy: ['commit'] },
        { service: 'no-such-service' },
      ];
      for (const q of queries) {
        const expected = expectedAggregates(data.samples, q);
        assertAggregatesEqual(await store().aggregates(q), expected, JSON.stringify(q));
      }
      const variants = await store().aggregates({ service: 'api', flags: { key: 'new_ranker' }, groupBy: ['flag'] });
      assert.deepEqual(variants.map((r) => r.flagVariant).sort(), ['off', 'on']);
    });

    it('endpoints(): counts, means, histogram quantiles within the histogram error, share summing to 1', async () => {
      const cases = [
        { service: 'api' },
        { service: 'api', commit: 'c2' },
        { service: 'api', from: T0_MS + HOUR_MS, to: T0_MS + 2 * HOUR_MS },
        { service: 'web', metric: 'cpu_ns' as Metric },
        { service: 'web' },
      ];
      for (const q of cases) {
        const what = JSON.stringify(q);
        const rows = await store().endpoints(q);
        const selected = data.samples.filter(
          (s) =>
            s.service === q.service &&
            (q.commit === undefined || s.commit === q.commit) &&
            (q.metric === undefined || s.metric === q.metric) &&
            inRange(minuteOf(s.ts), q),
        );
        const groups = new Map<string, StoredSample[]>();
        for (const s of selected) {
          const key = JSON.stringify([s.endpoint, s.metric]);
          groups.set(key, [...(groups.get(key) ?? []), s]);
        }
        assert.deepEqual(
          rows.map((r) => JSON.stringify([r.endpoint, r.metric])).sort(),
          [...groups.keys()].sort(),
          `${what}: endpoint rows`,
        );
        const batchesInScope = data.batches.filter(
          (b) =>
            b.service === q.service &&
            (q.commit === undefined || b.commit === q.commit) &&
            (q.metric === undefined || b.metric === q.metric),
        );
        const totals = new Map<Metric, number>();
        const products = new Map<string, number>();
        for (const row of rows) {
          const group = groups.get(JSON.stringify([row.endpoint, row.metric])) as StoredSample[];
          const w = `${what} ${row.endpoint} ${row.metric}`;
          assert.equal(row.samples, group.length, `${w}: samples`);
          const counts = batchesInScope
            .filter((b) => b.metric === row.metric)
            .flatMap((b) => b.counts)
            .filter((c) => c.endpoint === row.endpoint && inRange(c.minute, q));
          const expectedRequests =
            counts.length > 0 ? counts.reduce((a, c) => a + c.requests, 0) : group.reduce((a, s) => a + s.weight, 0);
          if (row.endpoint === ENDPOINT_WITHOUT_COUNTS) assert.equal(counts.length, 0);
          assertClose(row.requests, expectedRequests, `${w}: requests`);
          const mean = (f: (s: StoredSample) => number): number => group.reduce((a, s) => a + f(s), 0) / group.length;
          assertClose(
            row.costMean,
            mean((s) => s.cost),
            `${w}: costMean`,
          );
          assertClose(
            row.dbMs,
            mean((s) => s.db),
            `${w}: dbMs`,
          );
          assertClose(
            row.cacheMs,
            mean((s) => s.cache),
            `${w}: cacheMs`,
          );
          assertClose(
            row.httpMs,
            mean((s) => s.http),
            `${w}: httpMs`,
          );
          const costs = group.map((s) => s.cost);
          const walls = group.map((s) => s.wallMs);
          assertQuantileClose(row.costP50, exactQuantile(costs, 0.5), `${w}: costP50`);
          assertQuantileClose(row.costP95, exactQuantile(costs, 0.95), `${w}: costP95`);
          assertQuantileClose(row.wallP50, exactQuantile(walls, 0.5), `${w}: wallP50`);
          assertQuantileClose(row.wallP95, exactQuantile(walls, 0.95), `${w}: wallP95`);
          const product = mean((s) => s.cost) * expectedRequests;
          products.set(`${row.endpoint}\u0000${row.metric}`, product);
          totals.set(row.metric, (totals.get(row.metric) ?? 0) + product);
        }
        for (const metric of new Set(rows.map((r) => r.metric))) {
          const shares = rows.filter((r) => r.metric === metric);
          assertClose(
            shares.reduce((a, r) => a + r.share, 0),
            1,
            `${what}: shares of ${metric} sum to 1`,
            1e-9,
          );
          for (const r of shares) {
            const expected =
              (products.get(`${r.endpoint}\u0000${r.metric}`) as number) / (totals.get(metric) as number);
            assertClose(r.share, expected, `${what} ${r.endpoint}: share`, 1e-6);
          }
        }
      }
      assert.deepEqual(await store().endpoints({ service: 'no-such-service' }), []);
    });

    it('the quantile helper over aggregate histograms agrees with endpoints()', async () => {
      const rows = await store().aggregates({ service: 'api', groupBy: ['endpoint'] });
      const stats = await store().endpoints({ service: 'api' });
      for (const row of rows) {
        const s = stats.find((e) => e.endpoint === row.endpoint);
        assert.ok(s);
        assertClose(s.costP95, quantile(row.costHist, 0.95), `${row.endpoint} p95`, 1e-12);
      }
    });

    it('services() and commits() describe what was stored', async () => {
      const services = await store().services();
      for (const service of ['api', 'web']) {
        const own = data.samples.filter((s) => s.service === service);
        const info = services.find((s) => s.service === service);
        assert.ok(info, `service ${service} listed`);
        assert.equal(info.samples, own.length);
        assert.equal(info.firstSeen, Math.min(...own.map((s) => s.ts)));
        assert.equal(info.lastSeen, Math.max(...own.map((s) => s.ts)));
        assert.deepEqual([...info.metrics].sort(), [...new Set(own.map((s) => s.metric))].sort());
      }
      await store().recordDeploy({ service: 'api', commit: 'c2', ts: T0_MS + HOUR_MS });
      const commits = await store().commits('api');
      const own = data.samples.filter((s) => s.service === 'api');
      assert.deepEqual(commits.map((c) => c.commit).sort(), [...new Set(own.map((s) => s.commit))].sort());
      for (const c of commits) {
        const mine = own.filter((s) => s.commit === c.commit);
        assert.equal(c.samples, mine.length, `${c.commit} samples`);
        assert.equal(c.firstSeen, Math.min(...mine.map((s) => s.ts)), `${c.commit} firstSeen`);
        assert.equal(c.lastSeen, Math.max(...mine.map((s) => s.ts)), `${c.commit} lastSeen`);
        assertClose(
          c.requests,
          mine.reduce((a, s) => a + s.weight, 0),
          `${c.commit} requests`,
        );
        assert.equal(c.deployedAt, c.commit === 'c2' ? T0_MS + HOUR_MS : null, `${c.commit} deployedAt`);
      }
      const windowed = await store().commits('api', { from: T0_MS + 2 * HOUR_MS + 30 * MINUTE_MS });
      const late = own.filter((s) => minuteOf(s.ts) >= T0_MS + 2 * HOUR_MS + 30 * MINUTE_MS);
      assert.deepEqual(windowed.map((c) => c.commit).sort(), [...new Set(late.map((s) => s.commit))].sort());
      assert.deepEqual(await store().commits('no-such-service'), []);
    });

    it('counts round-trip, summed per minute and endpoint', async () => {
      for (const q of [
        { service: 'api' },
        { service: 'api', endpoint: 'GET /search' },
        { service: 'web', from: T0_MS + HOUR_MS, to: T0_MS + 2 * HOUR_MS },
      ]) {
        const expected = new Map<string, number>();
        for (const b of data.batches) {
          if (b.service !== q.service) continue;
          for (const c of b.counts) {
            if ('endpoint' in q && c.endpoint !== q.endpoint) continue;
            if (!inRange(c.minute, q)) continue;
            const key = `${c.minute} ${c.endpoint}`;
            expected.set(key, (expected.get(key) ?? 0) + c.requests);
          }
        }
        const rows = await store().counts(q);
        const actual = new Map(rows.map((r) => [`${r.minute} ${r.endpoint}`, r.requests]));
        assert.equal(actual.size, rows.length, 'one row per minute and endpoint');
        assert.deepEqual(actual, expected, JSON.stringify(q));
      }
    });

    it('users round-trip: the union of every sketch of every minute', async () => {
      const q = { service: 'web', from: T0_MS + 30 * MINUTE_MS };
      const expected = new Map<number, string[]>();
      for (const b of data.batches) {
        if (b.service !== q.service) continue;
        for (const u of b.users) {
          if (!inRange(u.minute, q)) continue;
          expected.set(u.minute, [...(expected.get(u.minute) ?? []), u.sketch]);
        }
      }
      const rows = await store().users(q);
      assert.deepEqual(sortUsers(rows), sortUsers([...expected].map(([minute, sketches]) => ({ minute, sketches }))));
    });

    it('samples(): newest first, filtered, capped, every field as ingested', async () => {
      const all = await store().samples({ service: 'api', limit: 100_000 });
      const own = data.samples.filter((s) => s.service === 'api');
      assert.equal(all.length, own.length);
      for (let i = 1; i < all.length; i++) assert.ok((all[i - 1] as StoredSample).ts >= (all[i] as StoredSample).ts);
      assert.deepEqual(canonicalSamples(all), canonicalSamples(own));
      assert.equal((await store().samples({ service: 'api' })).length, Math.min(1000, own.length));
      const filtered = await store().samples({
        service: 'api',
        commit: 'c2',
        endpoint: 'POST /like',
        from: T0_MS + HOUR_MS,
        to: T0_MS + 2 * HOUR_MS,
        limit: 5,
      });
      const expected = own
        .filter(
          (s) =>
            s.commit === 'c2' &&
            s.endpoint === 'POST /like' &&
            inRange(s.ts, { from: T0_MS + HOUR_MS, to: T0_MS + 2 * HOUR_MS }),
        )
        .sort((a, b) => b.ts - a.ts);
      assert.equal(filtered.length, Math.min(5, expected.length));
      assert.deepEqual(
        filtered.map((s) => s.ts),
        expected.slice(0, 5).map((s) => s.ts),
      );
    });

    it('hostMoments(): per host sums from the raw samples, bucketed and filtered', async () => {
      const queries: HostMomentsQuery[] = [
        { service: 'api' },
        { service: 'api', bucketMs: HOUR_MS },
        { service: 'web', bucketMs: HOUR_MS },
        { service: 'api', commit: 'c2', bucketMs: 30 * MINUTE_MS, from: T0_MS + HOUR_MS, to: T0_MS + 2 * HOUR_MS + 1 },
        { service: 'api', endpoint: data.samples.find((s) => s.service === 'api')?.endpoint as string },
      ];
      for (const q of queries) {
        const expected = new Map<string, { n: number; sum: number; sum2: number; first: number; last: number }>();
        for (const s of data.samples) {
          if (
            s.service !== q.service ||
            (q.commit !== undefined && s.commit !== q.commit) ||
            (q.endpoint !== undefined && s.endpoint !== q.endpoint) ||
            !inRange(s.ts, q)
          )
            continue;
          const bucket = q.bucketMs ? Math.floor(s.ts / q.bucketMs) * q.bucketMs : 0;
          const key = [s.commit, s.endpoint, s.metric, s.hostClass, s.host, bucket].join('|');
          const e = expected.get(key) ?? { n: 0, sum: 0, sum2: 0, first: s.ts, last: s.ts };
          e.n += 1;
          e.sum += s.cost;
          e.sum2 += s.cost * s.cost;
          e.first = Math.min(e.first, s.ts);
          e.last = Math.max(e.last, s.ts);
          expected.set(key, e);
        }
        const rows = await store().hostMoments(q);
        const what = JSON.stringify(q);
        assert.ok(expected.size > 1, `the dataset has several hosts for ${what}`);
        assert.deepEqual(
          rows.map((r) => [r.commit, r.endpoint, r.metric, r.hostClass, r.host, r.bucket].join('|')).sort(),
          [...expected.keys()].sort(),
          what,
        );
        for (const r of rows) {
          const e = expected.get([r.commit, r.endpoint, r.metric, r.hostClass, r.host, r.bucket].join('|'));
          assert.ok(e);
          assert.equal(r.n, e.n, what);
          assert.equal(r.firstTs, e.first, what);
          assert.equal(r.lastTs, e.last, what);
          assertClose(r.sumCost, e.sum, `${what} sumCost`);
          assertClose(r.sumCost2, e.sum2, `${what} sumCost2`);
        }
      }
      assert.deepEqual(await store().hostMoments({ service: 'no-such-service' }), []);
    });

    it('deploys round-trip, per service and range', async () => {
      const deploys = [
        { service: 'deploy-svc', commit: 'd1', ts: T0_MS },
        { service: 'deploy-svc', commit: 'd2', ts: T0_MS + HOUR_MS },
        { service: 'deploy-svc', commit: 'd3', ts: T0_MS + 2 * HOUR_MS },
        { service: 'other-svc', commit: 'o1', ts: T0_MS + HOUR_MS },
      ];
      for (const d of deploys) await store().recordDeploy(d);
      const all = await store().deploys('deploy-svc');
      assert.deepEqual(
        [...all].sort((a, b) => a.ts - b.ts),
        deploys.filter((d) => d.service === 'deploy-svc'),
      );
      const some = await store().deploys('deploy-svc', { from: T0_MS + HOUR_MS, to: T0_MS + 2 * HOUR_MS });
      assert.deepEqual(some, [{ service: 'deploy-svc', commit: 'd2', ts: T0_MS + HOUR_MS }]);
      assert.deepEqual(await store().deploys('nobody'), []);
    });

    it('profiles round-trip byte-exact, listed by service, commit and range', async () => {
      const bytes = [randomBytes(70_000), Buffer.from([0, 255, 0, 1, 0xc3, 0x28, 0]), Buffer.alloc(0)];
      const metas = [
        {
          service: 'prof-svc',
          commit: 'p1',
          host: 'h1',
          metric: 'instructions' as Metric,
          from: T0_MS,
          to: T0_MS + MINUTE_MS,
        },
        {
          service: 'prof-svc',
          commit: 'p2',
          host: 'h2',
          metric: 'cpu_ns' as Metric,
          from: T0_MS + HOUR_MS,
          to: T0_MS + HOUR_MS + MINUTE_MS,
        },
        {
          service: 'prof-svc',
          commit: 'p2',
          host: "h'3",
          metric: 'cpu_ns' as Metric,
          from: T0_MS + 2 * HOUR_MS,
          to: T0_MS + 2 * HOUR_MS + 10_000,
        },
      ];
      const stored = [];
      for (let i = 0; i < metas.length; i++) {
        const p = await store().storeProfile(
          metas[i] as (typeof metas)[number],
          bytes[i] as Buffer,
          T0_MS + 3 * HOUR_MS + i,
        );
        assert.equal(p.bytes, (bytes[i] as Buffer).length);
        assert.equal(p.receivedAt, T0_MS + 3 * HOUR_MS + i);
        assert.deepEqual(
          { ...p, id: undefined, bytes: undefined, receivedAt: undefined },
          { ...metas[i], id: undefined, bytes: undefined, receivedAt: undefined },
        );
        stored.push(p);
      }
      assert.equal(new Set(stored.map((p) => p.id)).size, 3, 'ids are unique');
      for (let i = 0; i < stored.length; i++) {
        const got = await store().getProfile((stored[i] as (typeof stored)[number]).id);
        assert.ok(got, 'profile found');
        assert.ok(Buffer.from(got).equals(bytes[i] as Buffer), 'bytes identical');
      }
      assert.equal(await store().getProfile('no-such-id'), undefined);
      const listed = await store().listProfiles({ service: 'prof-svc' });
      assert.deepEqual(listed.map((p) => p.id).sort(), stored.map((p) => p.id).sort());
      const p2 = await store().listProfiles({ service: 'prof-svc', commit: 'p2' });
      assert.deepEqual(
        p2.map((p) => p.commit),
        ['p2', 'p2'],
      );
      const ranged = await store().listProfiles({
        service: 'prof-svc',
        from: T0_MS + HOUR_MS,
        to: T0_MS + 2 * HOUR_MS,
      });
      assert.deepEqual(
        ranged.map((p) => p.id),
        [(stored[1] as (typeof stored)[number]).id],
      );
      assert.deepEqual(ranged[0], stored[1]);
    });

    it('profile sums: per endpoint, function and flag variant, merged or per profile, equal the decoded samples', async () => {
      const random = seededRandom(4242);
      const frames = Array.from({ length: 8 }, (_, i) => ({
        name: `fn${i}`,
        file: `/srv/app/src/m${i % 3}.js`,
        line: i * 10,
      }));
      const endpoints = ['GET /a', 'POST /b'];
      type Fx = { commit: string; from: number; samples: FixtureSample[]; id?: string };
      const profiles: Fx[] = [];
      for (let p = 0; p < 5; p++) {
        const samples: FixtureSample[] = [];
        for (let i = 0; i < 60; i++) {
          const depth = 1 + Math.floor(random() * 5);
          const stack = Array.from(
            { length: depth },
            () => frames[Math.floor(random() * frames.length)] as FixtureSample['stack'][number],
          );
          const sample: FixtureSample = {
            stack,
            cost: 1 + Math.floor(random() * 1000),
            count: 1 + Math.floor(random() * 3),
          };
          if (random() < 0.9) sample.endpoint = endpoints[Math.floor(random() * endpoints.length)] as string;
          if (random() < 0.5) sample.flags = { ranker: random() < 0.5 ? 'on' : 'off' };
          samples.push(sample);
        }
        profiles.push({ commit: p < 3 ? 'pc1' : 'pc2', from: T0_MS + p * MINUTE_MS, samples });
      }
      for (const fx of profiles) {
        const pprof = buildPprof('cpu_ns', fx.samples);
        const stored = await store().storeProfile(
          {
            service: 'prof-sums',
            commit: fx.commit,
            host: 'h',
            metric: 'cpu_ns',
            from: fx.from,
            to: fx.from + MINUTE_MS,
          },
          pprof,
          fx.from + MINUTE_MS,
          summarizeProfile(decodeProfile(pprof, 'cpu_ns')),
        );
        fx.id = stored.id;
      }
      // Expected sums, computed here from the fixture samples (not by the code under test).
      const expect = (
        select: (fx: Fx) => boolean,
        endpoint: string | undefined,
        flag?: { key: string; variant?: string },
        byProfile = false,
      ) => {
        const ends = new Map<string, { samples: number; cost: number; profiles: Set<string> }>();
        const fns = new Map<string, { self: number; total: number; selfSamples: number; totalSamples: number }>();
        for (const fx of profiles.filter(select)) {
          for (const s of fx.samples) {
            const e = s.endpoint ?? '(no request)';
            if (endpoint !== undefined && e !== endpoint) continue;
            let variant = '';
            if (flag) {
              const v = s.flags?.[flag.key];
              if (v === undefined || (flag.variant !== undefined && v !== flag.variant)) continue;
              variant = v;
            }
            const group = `${fx.commit}|${e}|${variant}|${byProfile ? fx.id : ''}`;
            const end = ends.get(group) ?? { samples: 0, cost: 0, profiles: new Set<string>() };
            end.samples += s.count ?? 1;
            end.cost += s.cost;
            end.profiles.add(fx.id as string);
            ends.set(group, end);
            const leaf = s.stack[s.stack.length - 1];
            for (const f of new Set(s.stack)) {
              const key = `${group}|${f.name}|${f.file}|${f.line}`;
              const acc = fns.get(key) ?? { self: 0, total: 0, selfSamples: 0, totalSamples: 0 };
              acc.total += s.cost;
              acc.totalSamples += s.count ?? 1;
              if (f === leaf) {
                acc.self += s.cost;
                acc.selfSamples += s.count ?? 1;
              }
              fns.set(key, acc);
            }
          }
        }
        return { ends, fns };
      };
      const check = async (q: ProfileQuery, select: (fx: Fx) => boolean, label: string) => {
        const want = expect(select, q.endpoint, q.flag, q.byProfile);
        const gotEnds = await store().profileEndpoints(q);
        assert.deepEqual(
          new Map(
            gotEnds.map((r) => [
              `${r.commit}|${r.endpoint}|${r.flagVariant}|${r.profileId}`,
              { samples: r.samples, cost: r.cost, profiles: r.profiles },
            ]),
          ),
          new Map([...want.ends].map(([k, v]) => [k, { samples: v.samples, cost: v.cost, profiles: v.profiles.size }])),
          `${label}: endpoints`,
        );
        for (const r of gotEnds) assert.equal(r.flagKey, q.flag?.key ?? '', `${label}: flag key`);
        const gotFns = await store().profileFunctions(q);
        assert.deepEqual(
          new Map(
            gotFns.map((r) => [
              `${r.commit}|${r.endpoint}|${r.flagVariant}|${r.profileId}|${r.function}|${r.file}|${r.line}`,
              { self: r.selfCost, total: r.totalCost, selfSamples: r.selfSamples, totalSamples: r.totalSamples },
            ]),
          ),
          want.fns,
          `${label}: functions`,
        );
      };
      await check({ service: 'prof-sums' }, () => true, 'all');
      await check(
        { service: 'prof-sums', commit: 'pc1', endpoint: 'GET /a' },
        (fx) => fx.commit === 'pc1',
        'commit+endpoint',
      );
      await check({ service: 'prof-sums', byProfile: true, metric: 'cpu_ns' }, () => true, 'by profile');
      await check({ service: 'prof-sums', flag: { key: 'ranker' } }, () => true, 'flag key');
      await check(
        { service: 'prof-sums', flag: { key: 'ranker', variant: 'on' }, commit: 'pc2' },
        (fx) => fx.commit === 'pc2',
        'flag variant',
      );
      await check(
        { service: 'prof-sums', from: T0_MS + MINUTE_MS, to: T0_MS + 3 * MINUTE_MS },
        (fx) => fx.from >= T0_MS + MINUTE_MS && fx.from < T0_MS + 3 * MINUTE_MS,
        'range',
      );
      assert.deepEqual(await store().profileEndpoints({ service: 'prof-sums', metric: 'instructions' }), []);
      assert.deepEqual(await store().profileFunctions({ service: 'no-such-service' }), []);
    });

    it('untrusted strings are stored and returned literally', async () => {
      const random = seededRandom(99);
      let i = 0;
      for (const text of UNTRUSTED_STRINGS) {
        const batch: IngestBatch = {
          batchId: `${text}#${i}`,
          service: `svc ${text}`,
          host: text,
          region: text,
          commit: text,
          hostClass: text,
          metric: 'instructions',
          agentVersion: text,
          runtime: text,
          dropped: 0,
          receivedAt: T0_MS,
          samples: [
            {
              ts: T0_MS + 12 * HOUR_MS + i,
              endpoint: `GET ${text}`,
              status: 200,
              cost: 1000 + Math.floor(random() * 1000),
              wallMs: 2,
              db: 0,
              cache: 0,
              http: 0,
              flags: { [text]: text, plain: text },
              user: text,
              weight: 1,
              aborted: false,
            },
          ],
          counts: [{ minute: T0_MS + 12 * HOUR_MS, endpoint: `GET ${text}`, requests: 3 }],
          users: [{ minute: T0_MS + 12 * HOUR_MS, sketch: text }],
        };
        i++;
        assert.equal((await store().ingest(batch)).stored, true, `stored ${JSON.stringify(text)}`);
        assert.equal((await store().ingest(batch)).stored, false, `deduplicated ${JSON.stringify(text)}`);
        const service = batch.service;
        const [sample] = await store().samples({ service });
        const sent = batch.samples[0] as WireSample;
        assert.deepEqual(sample, toStored(batch, sent), `sample of ${JSON.stringify(text)}`);
        assert.deepEqual(
          (await store().samples({ service, commit: text, endpoint: `GET ${text}` })).length,
          1,
          'filters match the literal strings',
        );
        const rows = await store().aggregates({ service, flags: { key: text }, commit: text, endpoint: `GET ${text}` });
        assert.deepEqual(
          rows.map((r) => [r.service, r.commit, r.endpoint, r.hostClass, r.flagKey, r.flagVariant]),
          [[service, text, `GET ${text}`, text, text, text]],
        );
        assert.deepEqual(
          (await store().endpoints({ service, commit: text })).map((e) => [e.endpoint, e.requests]),
          [[`GET ${text}`, 3]],
        );
        assert.deepEqual(await store().counts({ service, endpoint: `GET ${text}` }), [
          { minute: T0_MS + 12 * HOUR_MS, endpoint: `GET ${text}`, requests: 3 },
        ]);
        assert.deepEqual(await store().users({ service }), [{ minute: T0_MS + 12 * HOUR_MS, sketches: [text] }]);
        assert.deepEqual(
          (await store().commits(service)).map((c) => c.commit),
          [text],
        );
        await store().recordDeploy({ service, commit: text, ts: T0_MS });
        assert.deepEqual(await store().deploys(service), [{ service, commit: text, ts: T0_MS }]);
        const profile = await store().storeProfile(
          { service, commit: text, host: text, metric: 'cpu_ns', from: T0_MS, to: T0_MS + 1 },
          Buffer.from(text),
          T0_MS,
        );
        assert.deepEqual(await store().listProfiles({ service, commit: text }), [profile]);
        const pprof = buildPprof('cpu_ns', [
          { stack: [{ name: text, file: text, line: 7 }], endpoint: `GET ${text}`, flags: { [text]: text }, cost: 11 },
        ]);
        await store().storeProfile(
          { service, commit: text, host: text, metric: 'cpu_ns', from: T0_MS + 5, to: T0_MS + 6 },
          pprof,
          T0_MS,
          summarizeProfile(decodeProfile(pprof, 'cpu_ns')),
        );
        const q = { service, commit: text, endpoint: `GET ${text}`, flag: { key: text, variant: text } };
        assert.deepEqual(
          (await store().profileFunctions(q)).map((f) => [
            f.commit,
            f.endpoint,
            f.flagKey,
            f.flagVariant,
            f.function,
            f.file,
            f.line,
            f.selfCost,
          ]),
          [[text, `GET ${text}`, text, text, text, text, 7, 11]],
          `profile function named ${JSON.stringify(text)}`,
        );
        assert.deepEqual(
          (await store().profileEndpoints(q)).map((e) => [e.endpoint, e.cost, e.profiles]),
          [[`GET ${text}`, 11, 1]],
        );
      }
      const names = (await store().services()).map((s) => s.service);
      for (const text of UNTRUSTED_STRINGS)
        assert.ok(names.includes(`svc ${text}`), `service ${JSON.stringify(text)} listed`);
      // The tables named in the injection attempts are still there and whole.
      assert.equal(await store().sampleCount('api'), data.samples.filter((s) => s.service === 'api').length);
      assertAggregatesEqual(
        await store().aggregates({ service: 'api' }),
        expectedAggregates(data.samples, { service: 'api' }),
        'api after untrusted strings',
      );
    });
  });

  describe(`store conformance: ${name} (retention, on its own store)`, () => {
    let opened: OpenedStore | undefined;
    after(async () => {
      await opened?.cleanup();
    });

    it('applyRetention deletes only what is older than each horizon', async () => {
      opened = await open();
      const store = opened.store;
      await store.init();
      const now = T0_MS + 1000 * DAY_MS;
      const policy = { samplesDays: 14, aggregatesDays: 400, profilesDays: 30 };
      const ages = [1, 13, 20, 100, 399, 401, 800];
      const batches: IngestBatch[] = [];
      const samples: StoredSample[] = [];
      for (const age of ages) {
        const start = minuteOf(now - age * DAY_MS - 5 * MINUTE_MS);
        const set = generateDataset(1000 + age, 2, start);
        for (const [k, b] of set.batches.entries()) {
          // Samples of a batch stay inside one minute-aligned window 3 minutes long: shift them to start.
          const shifted = { ...b, batchId: `ret-${age}-${k}`, service: 'ret' };
          batches.push(shifted);
          for (const s of shifted.samples) samples.push(toStored(shifted, s));
        }
        await store.recordDeploy({ service: 'ret', commit: `age-${age}`, ts: now - age * DAY_MS });
        await store.storeProfile(
          {
            service: 'ret',
            commit: `age-${age}`,
            host: 'h',
            metric: 'cpu_ns',
            from: now - age * DAY_MS - 1000,
            to: now - age * DAY_MS,
          },
          Buffer.from(`profile ${age}`),
          now - age * DAY_MS,
        );
      }
      await store.ingestMany(batches);
      const result = await store.applyRetention(policy, now);

      const samplesHorizon = now - policy.samplesDays * DAY_MS;
      const aggregatesHorizon = now - policy.aggregatesDays * DAY_MS;
      const profilesHorizon = now - policy.profilesDays * DAY_MS;
      const keptSamples = samples.filter((s) => s.ts >= samplesHorizon);
      assert.equal(result.samplesDeleted, samples.length - keptSamples.length);
      assert.equal(await store.sampleCount('ret'), keptSamples.length);
      const remaining = await store.samples({ service: 'ret', limit: 100_000 });
      assert.deepEqual(canonicalSamples(remaining), canonicalSamples(keptSamples));

      assert.ok(result.aggregatesDeleted > 0, 'some aggregate rows were old enough to go');
      const q: AggregateQuery = { service: 'ret', flags: 'all', bucketMs: DAY_MS };
      const keptForAggregates = samples.filter((s) => minuteOf(s.ts) >= aggregatesHorizon);
      assertAggregatesEqual(
        await store.aggregates(q),
        expectedAggregates(keptForAggregates, q),
        'aggregates after retention',
      );

      const counts = await store.counts({ service: 'ret' });
      assert.ok(counts.length > 0);
      assert.ok(
        counts.every((c) => c.minute >= aggregatesHorizon),
        'old counts deleted',
      );
      const expectedCountMinutes = new Set(
        batches.flatMap((b) => b.counts.map((c) => c.minute)).filter((m) => m >= aggregatesHorizon),
      );
      assert.deepEqual(new Set(counts.map((c) => c.minute)), expectedCountMinutes, 'recent counts kept');
      const users = await store.users({ service: 'ret' });
      assert.deepEqual(
        new Set(users.map((u) => u.minute)),
        new Set(batches.flatMap((b) => b.users.map((u) => u.minute)).filter((m) => m >= aggregatesHorizon)),
      );
      assert.deepEqual(
        (await store.deploys('ret')).map((d) => d.commit).sort(),
        ages
          .filter((a) => a < policy.aggregatesDays)
          .map((a) => `age-${a}`)
          .sort(),
      );
      const profiles = await store.listProfiles({ service: 'ret' });
      assert.deepEqual(
        profiles.map((p) => p.commit).sort(),
        ages
          .filter((a) => now - a * DAY_MS >= profilesHorizon)
          .map((a) => `age-${a}`)
          .sort(),
      );
      assert.equal(result.profilesDeleted, ages.length - profiles.length);

      // A batch within the samples horizon is still recognised as seen after retention, so a retry
      // cannot double-count it. (Batch ids need not be remembered longer than the samples.)
      const recent = batches.find((b) => b.batchId.startsWith('ret-13-')) as IngestBatch;
      assert.equal((await store.ingest(recent)).stored, false);
      // Running it again deletes nothing more.
      assert.deepEqual(await store.applyRetention(policy, now), {
        samplesDeleted: 0,
        aggregatesDeleted: 0,
        profilesDeleted: 0,
      });
    });
  });
}

/**
 * Users rows in a form every backend must match: per minute, the union of the sketches that decode
 * (a store may return every sketch received or its merge of them: same union), then the others as text.
 */
function sortUsers(rows: Array<{ minute: number; sketches: string[] }>): Array<{ minute: number; sketches: string[] }> {
  return rows
    .map((r) => {
      const decoded: UsersSketch[] = [];
      const raw: string[] = [];
      for (const text of r.sketches) {
        try {
          decoded.push(decodeUsersSketch(text));
        } catch {
          raw.push(text);
        }
      }
      const union =
        decoded.length > 0
          ? [encodeUsersSketch(mergeUsersSketches(decoded[0] as UsersSketch, ...decoded.slice(1)))]
          : [];
      return { minute: r.minute, sketches: [...union, ...[...new Set(raw)].sort()] };
    })
    .sort((a, b) => a.minute - b.minute);
}

function canonicalSamples(samples: readonly StoredSample[]): string[] {
  return samples
    .map((s) =>
      JSON.stringify([
        s.service,
        s.commit,
        s.host,
        s.region,
        s.hostClass,
        s.metric,
        s.ts,
        s.endpoint,
        s.status,
        s.cost,
        s.wallMs,
        s.db,
        s.cache,
        s.http,
        Object.entries(s.flags).sort(),
        s.user,
        s.weight,
        s.aborted,
      ]),
    )
    .sort();
}
