/**
 * What a detector run asks of the store (docs/benchmarks.md: a run took 1–2 s per service, most
 * of it in aggregate queries merging histograms): the flag detector reads each commit's flags with
 * one query, the function detector looks for profiles once per window (not per endpoint), and
 * queries that need no wall-time histogram do not merge one. Counted on a real DuckDB file.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { resolveDetectorConfig } from '../../src/detect/config';
import { detectFlags } from '../../src/detect/flag';
import { detectRollouts } from '../../src/detect/rollout';
import { runDetectors } from '../../src/detect/run';
import type { Store } from '../../src/store/types';
import { NOW, storyStoreForSuite } from './scenario';

/** The store, counting the calls of each method. */
function counting(store: Store): { store: Store; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const proxy = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.set(String(property), (calls.get(String(property)) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store: proxy, calls };
}

describe('what a detector run asks of the store', () => {
  const story = storyStoreForSuite('ergometer-queries-');
  let store: Store;
  before(() => {
    store = story.store;
  });

  it('the flag detector makes one aggregates query per commit, and still finds the flag', async () => {
    const c = counting(store);
    const commits = (await store.commits('shop')).length;
    const tested = await detectFlags(c.store, 'shop', NOW, resolveDetectorConfig());
    assert.ok(tested.some((t) => t.flag?.key === 'new_ranker' && t.comparison.endpoint === 'GET /search'));
    assert.equal(c.calls.get('aggregates'), commits);
  });

  it('the function detector looks for profiles once per compared window, not once per endpoint', async () => {
    const config = resolveDetectorConfig();
    const rollouts = await detectRollouts(store, 'shop', NOW, config);
    const windows = new Set(rollouts.flatMap((t) => [JSON.stringify(t.baseline), JSON.stringify(t.candidate)]));
    const c = counting(store);
    const run = await runDetectors(c.store, config, { now: NOW });
    // Root cause reads the profiles of each rollout and flag alert's two sides.
    const explained = run.alerts.filter((a) => a.kind === 'rollout' || a.kind === 'flag').length;
    const profileQueries = c.calls.get('profileEndpoints') ?? 0;
    assert.ok(rollouts.length > windows.size, 'several endpoints per window');
    assert.ok(
      profileQueries <= windows.size + 2 * explained,
      `${profileQueries} queries for ${windows.size} windows, ${rollouts.length} comparisons, ${explained} alerts`,
    );
  });

  it("aggregates with histograms: 'cost' has the default's sums and cost histograms and no wall histograms", async () => {
    const q = { service: 'shop', groupBy: ['endpoint', 'hostClass'] as Array<'endpoint' | 'hostClass'> };
    const all = await store.aggregates(q);
    const cost = await store.aggregates({ ...q, histograms: 'cost' });
    const none = await store.aggregates({ ...q, histograms: 'none' });
    assert.ok(all.length > 0);
    assert.deepEqual(
      cost.map((r) => ({ ...r, wallHist: undefined })),
      all.map((r) => ({ ...r, wallHist: undefined })),
    );
    assert.ok(cost.every((r) => r.wallHist.size === 0));
    assert.ok(all.every((r) => r.wallHist.size > 0));
    assert.deepEqual(
      none.map((r) => ({ ...r, costHist: undefined, wallHist: undefined })),
      all.map((r) => ({ ...r, costHist: undefined, wallHist: undefined })),
    );
    assert.ok(none.every((r) => r.costHist.size === 0));
  });
});
