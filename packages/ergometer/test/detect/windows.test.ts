/**
 * Detector windows are whole minutes (src/detect/window.ts): the store answers [from, to) with the
 * per-minute rows whose minute start lies in it, so a window that starts mid-minute drops the
 * rollout's own minute. On a real DuckDB file, with rollouts and flags that start mid-minute.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveDetectorConfig } from '../../src/detect/config';
import { detectFlags } from '../../src/detect/flag';
import { detectRollouts, INTERIM_LOOKS } from '../../src/detect/rollout';
import { runDetectors } from '../../src/detect/run';
import type { Store } from '../../src/store/types';
import { BASE, HOUR, type Phase, T0, withTempStore } from './scenario';

const MINUTE = 60_000;
const FEED = 'GET /feed/:id';

function withStore(phases: Phase[], run: (store: Store) => Promise<void>): Promise<void> {
  return withTempStore('ergometer-windows-', run, { service: 'win', phases, seed: 5 });
}

function assertWholeMinutes(w: { from?: number; to?: number }, what: string): void {
  assert.ok(w.from !== undefined && w.to !== undefined, what);
  assert.equal(w.from % MINUTE, 0, `${what}: from ${new Date(w.from).toISOString()} is not a minute boundary`);
  assert.equal(w.to % MINUTE, 0, `${what}: to ${new Date(w.to).toISOString()} is not a minute boundary`);
  assert.ok(w.to > w.from, `${what}: empty window`);
}

describe('detector windows are whole minutes', () => {
  // Regression: the window started at the deploy's millisecond, so the minute that holds a canary
  // of a few seconds was left out and the rollout had no data at all (the profile e2e test had to
  // deploy at a minute boundary).
  it('a 10-second rollout that starts mid-minute is compared with all of its samples, and the alert says the windows are minutes', async () => {
    const start = T0 + 30_000;
    const phases: Phase[] = [
      { commit: 'v1', from: T0 - 2 * HOUR, to: T0 + HOUR, endpoints: { [FEED]: BASE[FEED] }, perHour: 3000, shareB: 0 },
      // ~560 samples in 10 s, all in the minute [T0, T0 + 1 min).
      {
        commit: 'v2',
        from: start,
        to: start + 10_000,
        endpoints: { [FEED]: BASE[FEED] * 1.3 },
        perHour: 200_000,
        shareB: 0,
      },
    ];
    await withStore(phases, async (store) => {
      await store.recordDeploy({ service: 'win', commit: 'v2', ts: start });
      const now = T0 + 30 * MINUTE;
      const config = resolveDetectorConfig({ learnThresholds: false });
      const tested = await detectRollouts(store, 'win', now, config);
      const feed = tested.find((t) => t.comparison.endpoint === FEED);
      assert.ok(feed, 'the rollout was compared');
      assert.equal(feed.comparison.n.candidate, Math.round((200_000 * 10_000) / HOUR), 'every candidate sample');
      assertWholeMinutes(feed.candidate, 'candidate');
      assertWholeMinutes(feed.baseline, 'baseline');
      assert.equal(feed.candidate.from, T0, 'from the start of the minute of the deploy');
      assert.equal(feed.candidate.to, T0 + MINUTE, 'to the end of the minute of the last sample');
      assert.equal(feed.baseline.to, feed.candidate.to);

      const run = await runDetectors(store, config, { now, service: 'win' });
      const alert = run.alerts.find((a) => a.kind === 'rollout' && a.endpoint === FEED);
      assert.ok(alert, run.alerts.map((a) => a.summary).join('\n'));
      assert.equal(alert.bucketMs, MINUTE);
      assertWholeMinutes(alert.candidate, 'alert candidate');
      assert.ok(alert.ci[0] < 30 && 30 < alert.ci[1], `${alert.ci}`);
    });
  });

  it('interim looks end at a passed minute boundary: runs every 7 min see 6 windows, all whole minutes', async () => {
    const start = T0 + 17_500;
    await withStore(
      [
        { commit: 'a', from: T0 - 6 * HOUR, to: start, endpoints: BASE, perHour: 3000, shareB: 0 },
        { commit: 'b', from: start, to: T0 + 8 * HOUR, endpoints: BASE, perHour: 3000, shareB: 0 },
      ],
      async (store) => {
        const config = resolveDetectorConfig();
        const windows = new Set<string>();
        for (let now = start; now <= T0 + 8 * HOUR; now += 419_000) {
          for (const t of await detectRollouts(store, 'win', now, config)) {
            assertWholeMinutes(t.candidate, 'candidate');
            assertWholeMinutes(t.baseline, 'baseline');
            assert.equal(t.candidate.from, T0);
            assert.ok((t.candidate.to as number) <= now, 'the window ends at a minute that has passed');
            windows.add(`${t.candidate.from}-${t.candidate.to}-${t.alphaShare}`);
          }
        }
        assert.equal(windows.size, INTERIM_LOOKS + 1, [...windows].join('\n'));
      },
    );
  });

  it('the flag detector reads whole minutes, with every sample of the commit', async () => {
    const from = T0 + 42_000;
    const to = T0 + 95 * MINUTE + 13_000;
    const phases: Phase[] = [
      {
        commit: 'f1',
        from,
        to,
        endpoints: { [FEED]: BASE[FEED] },
        perHour: 3000,
        shareB: 0,
        flag: { key: 'ranker', variant: 'on', control: 'off', share: 0.3, factor: {} },
      },
    ];
    await withStore(phases, async (store) => {
      const tested = await detectFlags(store, 'win', T0 + 3 * HOUR, resolveDetectorConfig());
      const feed = tested.find((t) => t.comparison.endpoint === FEED);
      assert.ok(feed);
      assertWholeMinutes(feed.candidate, 'flag window');
      const total = (await store.aggregates({ service: 'win', groupBy: ['endpoint'] })).reduce((s, r) => s + r.n, 0);
      assert.equal(feed.comparison.n.baseline + feed.comparison.n.candidate, total, 'no sample left out');
    });
  });
});
