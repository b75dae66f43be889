import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveDetectorConfig } from '../../src/detect/config';
import { runDetectors } from '../../src/detect/run';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import type { Store } from '../../src/store/types';
import { HOUR, type Phase, writeScenario } from './scenario';

const DAY = 24 * HOUR;
const NOW = Date.UTC(2026, 10, 20);

/** 15 days of one commit, one endpoint, the daily level given by `level(dayIndex)` (day 14 is the last). */
function days(level: (day: number) => number): Phase[] {
  return Array.from({ length: 15 }, (_, d) => ({
    commit: 'c1',
    from: NOW - (15 - d) * DAY,
    to: NOW - (14 - d) * DAY,
    endpoints: { 'GET /feed/:id': 1_000_000 * level(d) },
    perHour: 1000,
    shareB: 0,
  }));
}

describe('trend detector (daily data, no rollout)', () => {
  let dir: string;
  let store: Store;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ergometer-trend-'));
    store = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb') });
    await store.init();
    // +0.3% a day from day 8 on: each day below any threshold, +2.1% by the end of the week.
    await writeScenario(
      store,
      'creep',
      days((d) => (d < 8 ? 1 : 1 + 0.003 * (d - 7))),
      31,
    );
    // One day at +20% three days ago, then back: a spike, not a trend.
    await writeScenario(
      store,
      'spike',
      days((d) => (d === 11 ? 1.2 : 1)),
      32,
    );
    // Nothing at all.
    await writeScenario(
      store,
      'flat',
      days(() => 1),
      33,
    );
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds a creeping +0.3%/day within a week, and nothing for a one-day spike or a flat series', async () => {
    const run = await runDetectors(store, resolveDetectorConfig(), { now: NOW });
    const trends = run.alerts.filter((a) => a.kind === 'trend');
    assert.deepEqual(
      trends.map((a) => a.service),
      ['creep'],
      run.alerts.map((a) => a.summary).join('\n'),
    );
    const [creep] = trends;
    // Days 13 and 14 are +1.8% and +2.1%: the last two days hold about +1.95%.
    assert.ok(creep && creep.changePct > 1.2 && creep.changePct < 3, `${creep?.changePct}`);
    assert.ok(creep.ci[0] < 1.95 && 1.95 < creep.ci[1], `${creep.ci}`);
    assert.equal(creep.comparison, 'week-over-week');
    assert.match(creep.summary, /over the last two days against the week before the last seven, on each of both days/);
    assert.equal(run.alerts.length, 1);
  });
});
