/**
 * Flag and trend windows do not slide with every detector run (`serve` runs them every minute):
 * flags are tested on windows that end at a whole hour (or where the commit's data stopped), trends
 * on complete UTC days. On a real DuckDB file, with data arriving while the detectors run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveDetectorConfig } from '../../src/detect/config';
import { detectFlags, flagLookAlphaShare } from '../../src/detect/flag';
import { detectTrends } from '../../src/detect/trend';
import { endOfMinute } from '../../src/detect/window';
import type { Store } from '../../src/store/types';
import { HOUR, type Phase, scenarioBatches, T0, withTempStore, writeScenario } from './scenario';

const MINUTE = 60_000;
const DAY = 24 * HOUR;
const FEED = 'GET /feed/:id';

function withStore(run: (store: Store) => Promise<void>): Promise<void> {
  return withTempStore('ergometer-settled-', run);
}

describe('flag and trend windows do not slide with every run', () => {
  // Regression: the flag window ended at the commit's latest sample, so each run of `serve` (every
  // minute) tested a slightly different window of almost the same data.
  it('flags: runs every 10 minutes while data arrives test one window per whole hour, then the whole commit once', async () => {
    const start = T0 + 20 * MINUTE;
    const stop = T0 + 3 * HOUR + 5 * MINUTE + 13_000;
    const phase: Phase = {
      commit: 'f1',
      from: start,
      to: stop,
      endpoints: { [FEED]: 1_000_000 },
      perHour: 6000,
      shareB: 0,
      flag: { key: 'ranker', variant: 'on', control: 'off', share: 0.3, factor: {} },
    };
    await withStore(async (store) => {
      const config = resolveDetectorConfig();
      const ends = new Set<number>();
      let runs = 0;
      for (let now = start + 10 * MINUTE, k = 0; now <= T0 + 5 * HOUR; now += 10 * MINUTE, k++) {
        // What arrived since the last run.
        const from = Math.max(phase.from, now - 10 * MINUTE);
        const to = Math.min(phase.to, now);
        if (from < to)
          for (const batch of scenarioBatches('flags', [{ ...phase, from, to }], 100 + k)) await store.ingest(batch);
        for (const t of await detectFlags(store, 'flags', now, config)) {
          assert.equal(t.candidate.from, T0 + 20 * MINUTE, 'from the minute of the first sample');
          assert.ok((t.candidate.to as number) <= now);
          ends.add(t.candidate.to as number);
        }
        runs++;
      }
      const [commit] = await store.commits('flags');
      assert.ok(commit);
      assert.equal(runs, 28);
      // Whole hours while the commit ran, then where its data stopped.
      assert.deepEqual(
        [...ends].sort((a, b) => a - b),
        [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR, endOfMinute(commit.lastSeen)],
      );
    });
  });

  it('flags: a commit that ran for half an hour within one hour and stopped is tested on all of its data, the same on every later run', async () => {
    const phase: Phase = {
      commit: 'short',
      from: T0 + 5 * MINUTE,
      to: T0 + 40 * MINUTE,
      endpoints: { [FEED]: 1_000_000 },
      perHour: 12_000,
      shareB: 0,
      flag: { key: 'ranker', variant: 'on', control: 'off', share: 0.3, factor: {} },
    };
    await withStore(async (store) => {
      await writeScenario(store, 'short', [phase], 3);
      const config = resolveDetectorConfig();
      const [commit] = await store.commits('short');
      assert.ok(commit);
      // Still sending 5 minutes ago: no whole hour yet, nothing tested.
      assert.deepEqual(await detectFlags(store, 'short', commit.lastSeen + 5 * MINUTE, config), []);
      const windows = new Set<string>();
      for (const now of [commit.lastSeen + 15 * MINUTE, T0 + 59 * MINUTE, T0 + 2 * HOUR]) {
        const tested = await detectFlags(store, 'short', now, config);
        assert.equal(tested.length, 1, `at ${new Date(now).toISOString()}`);
        windows.add(JSON.stringify([tested[0]?.candidate, tested[0]?.comparison.n]));
      }
      assert.equal(windows.size, 1, [...windows].join('\n'));
      assert.match([...windows][0] as string, new RegExp(`"to":${endOfMinute(commit.lastSeen)}`));
    });
  });

  // Regression: trend windows ended at `now`, so every run compared a slightly different two days.
  it('trends: every run within one UTC day compares the same complete days', async () => {
    const dayStart = Date.UTC(2026, 10, 20);
    const phases: Phase[] = Array.from({ length: 16 }, (_, d) => ({
      commit: 'c1',
      from: dayStart - (15 - d) * DAY,
      // The current day too, up to its last run.
      to: Math.min(dayStart + 23 * HOUR, dayStart - (14 - d) * DAY),
      endpoints: { [FEED]: 1_000_000 * (d < 8 ? 1 : 1 + 0.003 * (d - 7)) * (d === 15 ? 1.3 : 1) },
      perHour: 300,
      shareB: 0,
    }));
    await withStore(async (store) => {
      await writeScenario(store, 'trend', phases, 7);
      const config = resolveDetectorConfig();
      const seen: string[] = [];
      for (const now of [dayStart + HOUR, dayStart + 9 * HOUR + 17_000, dayStart + 23 * HOUR]) {
        const tested = await detectTrends(store, 'trend', now, config, () => 1);
        assert.equal(tested.length, 1);
        const [t] = tested;
        assert.ok(t);
        assert.equal(t.candidate.to, dayStart, 'ends at the start of the current UTC day');
        assert.equal(t.candidate.from, dayStart - 2 * DAY);
        assert.deepEqual(t.baseline, { commit: '*', from: dayStart - 14 * DAY, to: dayStart - 7 * DAY });
        seen.push(JSON.stringify([t.comparison.n, t.comparison.changePct, t.comparison.pValue]));
      }
      assert.equal(new Set(seen).size, 1, seen.join('\n'));
    });
  });
});

describe('flag looks split alpha over each day (Haybittle–Peto)', () => {
  const DAY_MS = 24 * 3_600_000;
  const start = Date.UTC(2026, 10, 20, 9, 17);
  it('the look that completes a day spends 0.9 of alpha, the other hourly looks of the day share 0.1', () => {
    const hour = (h: number) => Date.UTC(2026, 10, 20, 10) + h * 3_600_000;
    const shares = Array.from({ length: 49 }, (_, h) => flagLookAlphaShare(start, hour(h), DAY_MS, false));
    const daily = shares.filter((s) => s === 0.9);
    assert.equal(daily.length, 2, 'one daily look per day of the commit');
    // The first whole hour after 24 h of the commit: 10:00 the next day (09:17 + 24 h = 09:17).
    assert.equal(shares[24], 0.9);
    assert.equal(shares[48], 0.9);
    assert.notEqual(shares[0], 0.9, 'the first look of a commit is not a daily one');
    for (const s of shares.filter((x) => x !== 0.9)) assert.ok(Math.abs(s - 0.1 / 23) < 1e-12);
    // By Bonferroni a day's looks spend at most alpha.
    const firstDay = shares.slice(1, 25).reduce((a, b) => a + b, 0);
    assert.ok(firstDay <= 1 + 1e-9, `${firstDay}`);
  });
  it('the final look of a stopped commit spends the daily share', () => {
    assert.equal(flagLookAlphaShare(start, start + 3_600_000 * 5, DAY_MS, true), 0.9);
  });
});
