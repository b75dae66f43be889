/**
 * The looks past a canary's end compare before/after, which compares different hours. The canary of
 * the same rollout checks them (src/detect/rollout.ts, disagreesWithCanary): on a real DuckDB file,
 * a cost that moved with the hour after an unchanged canary must not alert, a real change must still
 * alert on the before/after's samples, and a canary whose old commit stopped a moment before the new
 * one stays a canary.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveDetectorConfig } from '../../src/detect/config';
import { CANARY_CHECK_Z, canarySlackMs, detectRollouts, disagreesWithCanary } from '../../src/detect/rollout';
import { runDetectors } from '../../src/detect/run';
import type { Store } from '../../src/store/types';
import { comparisonOf, HOUR, type Phase, T0, withTempStore } from './scenario';

const FEED = 'GET /feed/:id';
const COST = 1_000_000;
const config = resolveDetectorConfig();

function withStore(phases: Phase[], run: (store: Store) => Promise<void>): Promise<void> {
  return withTempStore('ergometer-canary-check-', run, { service: 'cc', phases, seed: 11 });
}

/** v1 for 6 h, then v2 beside it for 2 h (the canary), then v2 alone; v2 costs `during` × v1 in the canary, `after` × after it. */
function canaryThenAlone(during: number, after: number): Phase[] {
  const feed = (factor: number) => ({ [FEED]: COST * factor });
  return [
    { commit: 'v1', from: T0 - 6 * HOUR, to: T0 + 2 * HOUR, endpoints: feed(1), perHour: 3000, shareB: 0 },
    { commit: 'v2', from: T0, to: T0 + 2 * HOUR, endpoints: feed(during), perHour: 3000, shareB: 0 },
    { commit: 'v2', from: T0 + 2 * HOUR, to: T0 + 8 * HOUR, endpoints: feed(after), perHour: 3000, shareB: 0 },
  ];
}

describe('the canary checks the before/after looks past its end', () => {
  it('disagreement is a difference of ln-ratios beyond z·√(se² + se²), either way', () => {
    const se = 0.02;
    const limit = CANARY_CHECK_Z * Math.hypot(se, se);
    const pctAt = (ln: number) => (Math.exp(ln) - 1) * 100;
    assert.equal(disagreesWithCanary(comparisonOf(pctAt(limit * 0.95), se), comparisonOf(0, se)), false);
    assert.equal(disagreesWithCanary(comparisonOf(pctAt(limit * 1.05), se), comparisonOf(0, se)), true);
    assert.equal(disagreesWithCanary(comparisonOf(0, se), comparisonOf(pctAt(limit * 1.05), se)), true);
    // A wide canary (few samples) overrules nothing it cannot tell apart.
    assert.equal(disagreesWithCanary(comparisonOf(25, se), comparisonOf(0, 0.2)), false);
  });

  it('an unchanged canary, then a cost that moved with the hour once the new commit was alone: no alert, the canary decides', async () => {
    await withStore(canaryThenAlone(1, 1.25), async (store) => {
      const now = T0 + 6 * HOUR + 60_000;
      const tested = (await detectRollouts(store, 'cc', now, config)).filter((t) => t.comparison.endpoint === FEED);
      assert.equal(tested.length, 1);
      const [t] = tested as [(typeof tested)[number]];
      assert.equal(t.method, 'canary');
      assert.ok(t.overruled && t.overruled.changePct > 10, `before/after estimate ${t.overruled?.changePct}`);
      assert.ok(Math.abs(t.comparison.changePct) < 5, `canary estimate ${t.comparison.changePct}`);
      // The canary's window: the two hours both served, nothing after.
      assert.equal(t.candidate.from, T0);
      assert.equal(t.candidate.to, T0 + 2 * HOUR);
      const run = await runDetectors(store, config, { now, service: 'cc' });
      assert.deepEqual(
        run.alerts.filter((a) => a.kind === 'rollout').map((a) => a.summary),
        [],
      );
    });
  });

  it('a real change seen by the canary and after it: before/after agrees, keeps its samples, and alerts', async () => {
    await withStore(canaryThenAlone(1.25, 1.25), async (store) => {
      const now = T0 + 6 * HOUR + 60_000;
      const run = await runDetectors(store, config, { now, service: 'cc' });
      const alert = run.alerts.find((a) => a.kind === 'rollout' && a.endpoint === FEED);
      assert.ok(alert, run.alerts.map((a) => a.summary).join('\n'));
      assert.equal(alert.comparison, 'before-after');
      assert.equal(alert.beforeAfterOverruled, undefined);
      assert.ok(alert.changePct > 20 && alert.changePct < 30, `${alert.changePct}`);
      assert.ok(alert.n.candidate > 6 * 3000 * 0.9, `${alert.n.candidate} samples: the whole rollout's`);
    });
  });

  it('a regression that shows after the canary but is washed out by the hour in the canary is overruled the other way and still alerts', async () => {
    // The canary saw +25%; after it, the hour made v2 cheaper again (×0.8 of its canary cost).
    await withStore(canaryThenAlone(1.25, 1.0), async (store) => {
      const now = T0 + 6 * HOUR + 60_000;
      const run = await runDetectors(store, config, { now, service: 'cc' });
      const alert = run.alerts.find((a) => a.kind === 'rollout' && a.endpoint === FEED);
      assert.ok(alert, run.alerts.map((a) => a.summary).join('\n'));
      assert.equal(alert.comparison, 'canary');
      assert.ok(alert.beforeAfterOverruled, 'says the before/after was overruled');
      assert.match(alert.summary, /out of line with the canary/);
      assert.ok(alert.changePct > 20, `${alert.changePct}`);
    });
  });

  // Regression: the demo's quiet canary was compared before/after at its final look whenever the old
  // commit's last sample came a few milliseconds before the new one's.
  it('a canary whose old commit stopped a moment before the new one, in the same minute, is compared as a canary', async () => {
    const phases: Phase[] = [
      {
        commit: 'v1',
        from: T0 - 6 * HOUR,
        to: T0 + HOUR + 25_000,
        endpoints: { [FEED]: COST },
        perHour: 3000,
        shareB: 0,
      },
      { commit: 'v2', from: T0, to: T0 + HOUR + 55_000, endpoints: { [FEED]: COST }, perHour: 3000, shareB: 0 },
    ];
    await withStore(phases, async (store) => {
      const [v1, v2] = ['v1', 'v2'].map((c) => store.commits('cc').then((all) => all.find((x) => x.commit === c)));
      assert.ok(((await v1)?.lastSeen ?? 0) < ((await v2)?.lastSeen ?? 0), 'v1 stopped first');
      const tested = await detectRollouts(store, 'cc', T0 + 3 * HOUR, config);
      assert.ok(tested.length > 0);
      for (const t of tested) {
        assert.equal(t.method, 'canary');
        assert.equal(t.baseline.from, T0, 'only the canary hour of v1, not the 6 h before');
      }
    });
  });

  it('a canary whose new commit served a few minutes longer is still the canary, over the minutes both served', async () => {
    // v2 runs 4 minutes past v1's end (a tenth of the 64-minute look is 6): the look is the canary's, not a
    // before/after against v1's six hours before (where the demo's quiet canary found +21% on a cost
    // that had moved with the hour).
    const phases: Phase[] = [
      { commit: 'v1', from: T0 - 6 * HOUR, to: T0 + HOUR, endpoints: { [FEED]: COST }, perHour: 3000, shareB: 0 },
      { commit: 'v2', from: T0, to: T0 + HOUR + 4 * 60_000, endpoints: { [FEED]: COST }, perHour: 3000, shareB: 0 },
    ];
    await withStore(phases, async (store) => {
      const tested = await detectRollouts(store, 'cc', T0 + 3 * HOUR, config);
      assert.ok(tested.length > 0);
      for (const t of tested) {
        assert.equal(t.method, 'canary');
        assert.deepEqual([t.baseline.from, t.baseline.to], [T0, T0 + HOUR], 'the minutes both served');
        assert.deepEqual([t.candidate.from, t.candidate.to], [T0, T0 + HOUR]);
      }
    });
  });

  it('canarySlackMs: a tenth of the look in whole minutes, at least two', () => {
    assert.equal(canarySlackMs({ from: 0, to: 10 * 60_000 }), 2 * 60_000);
    assert.equal(canarySlackMs({ from: 0, to: 64 * 60_000 }), 6 * 60_000);
    assert.equal(canarySlackMs({ from: 0, to: 6 * HOUR }), 36 * 60_000);
  });
});
