/**
 * CPU time is correlated in time: a process sharing its core with a busy neighbour, a heap that grew,
 * makes a stretch of requests dearer together. Two processes of the same code then differ by more than
 * independent requests allow, and a canary that treats its requests as independent raises false
 * alerts (one quiet-story demo run of 14 did). Rollout comparisons read each side in time blocks
 * (src/stats/ratio.ts, relativeVarianceOfMean); on a real DuckDB file: an unchanged canary whose two
 * processes drift apart raises nothing, though the same data compared as independent requests is
 * "significant", and a real change through the same drift is still found.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Alert } from '../../src/detect/alert';
import { compareGroups } from '../../src/detect/compare';
import { resolveDetectorConfig } from '../../src/detect/config';
import { runDetectors } from '../../src/detect/run';
import type { Store } from '../../src/store/types';
import { HOUR, type Phase, T0, withTempStore } from './scenario';

const ENDPOINTS = { 'GET /feed/:id': 1_000_000, 'GET /profile/:id': 400_000, 'GET /search': 2_000_000 };
const config = resolveDetectorConfig();
/**
 * Each process's level moves by ~15% from one 5-minute stretch to the next, independently of the
 * other's. Over 40 pairs of drift seeds (100/101, 102/103, …) the canary's three endpoints compared as
 * independent requests gave p < α/3 in 14, compared in blocks in 1; 108/109 is the first pair where the
 * first fires and the second does not: the case this file pins.
 */
const drift = (seed: number) => ({ sigma: 0.15, periodMs: 5 * 60_000, seed });

/** v1 alone for 2 h, then v2 beside it for 2 h (a canary); v2 costs `factor` × v1 on the feed. */
function driftingCanary(factor: number): Phase[] {
  return [
    {
      commit: 'v1',
      from: T0 - 2 * HOUR,
      to: T0 + 2 * HOUR,
      endpoints: ENDPOINTS,
      perHour: 3000,
      shareB: 0,
      drift: drift(108),
    },
    {
      commit: 'v2',
      from: T0,
      to: T0 + 2 * HOUR,
      endpoints: { ...ENDPOINTS, 'GET /feed/:id': ENDPOINTS['GET /feed/:id'] * factor },
      perHour: 3000,
      shareB: 0,
      drift: drift(109),
    },
  ];
}

/** After the canary: both commits stopped, so the final look compares the whole 2 h canary. */
const NOW = T0 + 2 * HOUR + 30 * 60_000;

/** Writes a drifting canary with v2 `factor` × v1 on the feed, runs the detectors after it, hands `check` the rollout alerts. */
function withDriftingCanary(factor: number, check: (rollouts: Alert[], store: Store) => Promise<void>): Promise<void> {
  return withTempStore(
    'ergometer-drift-',
    async (store) => {
      const run = await runDetectors(store, config, { now: NOW });
      await check(
        run.alerts.filter((a) => a.kind === 'rollout'),
        store,
      );
    },
    { service: 'drift', phases: driftingCanary(factor), seed: 5 },
  );
}

describe('rollout comparisons under costs correlated in time', () => {
  it('an unchanged canary whose processes drift apart raises nothing; as independent requests it would', async () => {
    await withDriftingCanary(1, async (rollouts, store) => {
      assert.deepEqual(
        rollouts.map((a) => a.summary),
        [],
      );
      // The same two windows, every request taken as independent (no blocks): "significant".
      const naive = await compareGroups(
        store,
        'drift',
        { commit: 'v1', from: T0, to: T0 + 2 * HOUR },
        { commit: 'v2', from: T0, to: T0 + 2 * HOUR },
        { minSamples: config.minSamples },
      );
      const smallest = Math.min(...naive.map((c) => c.pValue));
      assert.ok(smallest < config.alpha / naive.length, `independent-request p-values: ${naive.map((c) => c.pValue)}`);
    });
  });

  it('a real +25% on one endpoint is still found through the same drift, with an interval that holds it', async () => {
    await withDriftingCanary(1.25, async (rollouts) => {
      assert.deepEqual(
        rollouts.map((a) => a.endpoint),
        ['GET /feed/:id'],
        rollouts.map((a) => a.summary).join('\n'),
      );
      const feed = rollouts[0];
      assert.ok(feed);
      assert.equal(feed.comparison, 'canary');
      assert.ok(feed.ci[0] < 25 && 25 < feed.ci[1], `interval ${feed.ci} holds +25%`);
      // The alert says its interval was widened for the drift.
      assert.equal(feed.varianceFrom, 'time-blocks');
      assert.match(feed.summary, /interval widened: costs varied in time/);
    });
  });
});
