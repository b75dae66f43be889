import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import type { EndpointComparison } from '../../src/detect/compare';
import { HOUR, type Phase, scenarioBatches, toWire } from '../../src/sim/scenario';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import type { Store } from '../../src/store/types';

export { HOUR, type Phase, scenarioBatches, toWire };

/**
 * Writes the phases through the real store's ingest (one batch per phase-hour), seeded, so the
 * detectors see realistic skewed costs with known injected changes.
 */
export async function writeScenario(store: Store, service: string, phases: Phase[], seed: number): Promise<number> {
  let written = 0;
  for (const batch of scenarioBatches(service, phases, seed)) {
    await store.ingest(batch);
    written += batch.samples.length;
  }
  return written;
}

/**
 * Runs `run` on a fresh DuckDB file in a temp folder (with `scenario`'s phases written first, when
 * given), then closes and removes it, whether `run` passed or not.
 */
export async function withTempStore(
  prefix: string,
  run: (store: Store) => Promise<void>,
  scenario?: { service: string; phases: Phase[]; seed: number },
): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  const store = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb') });
  try {
    await store.init();
    if (scenario) await writeScenario(store, scenario.service, scenario.phases, scenario.seed);
    await run(store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const NOW = Date.UTC(2026, 10, 20, 12);
export const T0 = NOW - 12 * HOUR;
export const BASE = { 'GET /feed/:id': 1_000_000, 'GET /profile/:id': 400_000, 'GET /search': 2_000_000 };

/**
 * The story the demo tells, on a real DuckDB file:
 *   v1 (4 h) → v2 canary beside v1 for 1 h, then alone: GET /feed/:id +6% (a rollout regression)
 *   → v3 (before/after, no overlap): feed fixed; flag new_ranker "on" for 20% of requests makes
 *     GET /search 30% dearer for them (so +6% on the endpoint's mean at v3's rollout: one regression,
 *     reported once, as the flag's); and traffic moves to the dearer host class B (a mix shift
 *     that must not look like a regression) → v4: changes nothing.
 */
export function storyPhases(): Phase[] {
  return [
    // A 6% change needs a few thousand samples a side to be sure of (docs/MATH.md §1).
    { commit: 'v1', from: T0, to: T0 + 4 * HOUR, endpoints: BASE, perHour: 3000, shareB: 0.3 },
    {
      commit: 'v2',
      from: T0 + 3 * HOUR,
      to: T0 + 6 * HOUR,
      endpoints: { ...BASE, 'GET /feed/:id': BASE['GET /feed/:id'] * 1.06 },
      perHour: 3000,
      shareB: 0.3,
    },
    {
      commit: 'v3',
      from: T0 + 6 * HOUR,
      to: T0 + 9 * HOUR,
      endpoints: BASE,
      perHour: 1500,
      shareB: 0.7,
      flag: { key: 'new_ranker', variant: 'on', control: 'off', share: 0.2, factor: { 'GET /search': 1.3 } },
    },
    {
      commit: 'v4',
      from: T0 + 9 * HOUR,
      to: T0 + 12 * HOUR,
      endpoints: BASE,
      perHour: 1500,
      shareB: 0.7,
      flag: { key: 'new_ranker', variant: 'on', control: 'off', share: 0.2, factor: { 'GET /search': 1.3 } },
    },
  ];
}

/**
 * For the suite it is called in: a DuckDB file in a temp folder with the story (storyPhases, seed 1)
 * of service `shop`, written before the suite's tests, closed and removed after them.
 */
export function storyStoreForSuite(prefix: string): { readonly store: Store } {
  let dir: string | undefined;
  let store: Store | undefined;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), prefix));
    store = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb') });
    await store.init();
    await writeScenario(store, 'shop', storyPhases(), 1);
  });
  after(async () => {
    await store?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get store(): Store {
      if (store === undefined) throw new Error("the story store is opened in the suite's before hook");
      return store;
    },
  };
}

/** A comparison of GET /feed/:id with the given change and standard error (the rest placeholder). */
export function comparisonOf(changePct: number, seLogRatio: number): EndpointComparison {
  return {
    endpoint: 'GET /feed/:id',
    metric: 'cpu_ns',
    n: { baseline: 1000, candidate: 1000 },
    costMean: { baseline: 1, candidate: 1 + changePct / 100 },
    changePct,
    ci: [changePct - 1, changePct + 1],
    pValue: 0.5,
    seLogRatio,
    df: 1e9,
    hostClasses: ['a'],
    varianceFrom: 'requests',
    rank: undefined,
  };
}
