/**
 * Processes of the same code differ (src/detect/processes.ts): a rollout compared on one process a
 * side must not read a slower process as a dearer commit, once the fleet has shown how much its
 * processes differ; a fleet whose processes agree loses nothing; a real regression still alerts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareGroups } from '../../src/detect/compare';
import { resolveDetectorConfig } from '../../src/detect/config';
import {
  concentration,
  learnProcessSpread,
  MIN_HOST_HOUR_SAMPLES,
  processSpreadFromRows,
  withProcessSpread,
} from '../../src/detect/processes';
import { runDetectors } from '../../src/detect/run';
import { answerRead } from '../../src/server/read-api';
import { logNormalSampler, seededRandom } from '../../src/stats/random';
import type { HostMomentsRow, Store } from '../../src/store/types';
import { comparisonOf, HOUR, type Phase, T0, withTempStore } from './scenario';

const FEED = 'GET /feed/:id';
const COST = 1_000_000;

/** One host's hour of log-normal (σ 0.5) costs around `median`, as the store returns it. */
function hostHour(random: () => number, host: string, bucket: number, median: number, n: number): HostMomentsRow {
  const draw = logNormalSampler(random, median, 0.5);
  let sum = 0;
  let sum2 = 0;
  for (let i = 0; i < n; i++) {
    const cost = draw();
    sum += cost;
    sum2 += cost * cost;
  }
  return {
    commit: 'v1',
    endpoint: FEED,
    metric: 'cpu_ns',
    hostClass: 'A',
    host,
    bucket,
    n,
    sumCost: sum,
    sumCost2: sum2,
    // Served the whole hour.
    firstTs: bucket + 1_000,
    lastTs: bucket + HOUR - 1_000,
  };
}

describe('how much processes of the same code differ, learnt from the fleet', () => {
  it('hosts that differ only by sampling error: next to nothing learnt', () => {
    const random = seededRandom(5);
    const rows: HostMomentsRow[] = [];
    for (let hour = 0; hour < 24; hour++) {
      for (const host of ['a', 'b', 'c', 'd']) rows.push(hostHour(random, host, hour * HOUR, COST, 800));
    }
    const spread = processSpreadFromRows(rows).get('cpu_ns');
    assert.ok(spread);
    assert.equal(spread.df, 24 * 3);
    // Sampling error alone: each host-hour's mean is ±1.9%, the moment estimator's own noise ~1%.
    assert.ok(Math.sqrt(spread.tau2) < 0.012, `τ = ${Math.sqrt(spread.tau2)}`);
  });

  it('hosts with their own cost levels: τ near the spread of those levels', () => {
    const random = seededRandom(6);
    // ln factors −0.06, −0.02, +0.02, +0.06: standard deviation 0.0516 (n − 1 denominator).
    const factors = { a: Math.exp(-0.06), b: Math.exp(-0.02), c: Math.exp(0.02), d: Math.exp(0.06) };
    const rows: HostMomentsRow[] = [];
    for (let hour = 0; hour < 24; hour++) {
      for (const [host, f] of Object.entries(factors)) rows.push(hostHour(random, host, hour * HOUR, COST * f, 800));
    }
    const spread = processSpreadFromRows(rows).get('cpu_ns');
    assert.ok(spread);
    const tau = Math.sqrt(spread.tau2);
    assert.ok(tau > 0.04 && tau < 0.065, `τ = ${tau}`);
  });

  it('cells with one host, or hosts below the sample floor, teach nothing', () => {
    const random = seededRandom(7);
    const rows = [
      hostHour(random, 'a', 0, COST, 800),
      hostHour(random, 'a', HOUR, COST, 800),
      hostHour(random, 'b', HOUR, COST * 1.5, MIN_HOST_HOUR_SAMPLES - 1),
    ];
    assert.equal(processSpreadFromRows(rows).size, 0);
  });

  it('a host that served only part of an hour (deployed or replaced in it) is not compared in that hour', () => {
    const random = seededRandom(8);
    const rows: HostMomentsRow[] = [];
    for (let hour = 0; hour < 12; hour++) {
      rows.push(hostHour(random, 'a', hour * HOUR, COST, 800));
      // b's hour 5 is its last ten minutes before a deploy, under another load: 20% dearer.
      const b = hostHour(random, 'b', hour * HOUR, hour === 5 ? COST * 1.2 : COST, 800);
      if (hour === 5) b.lastTs = hour * HOUR + 10 * 60_000;
      rows.push(b);
    }
    const spread = processSpreadFromRows(rows).get('cpu_ns');
    assert.ok(spread);
    assert.equal(spread.df, 11, 'hour 5 left out');
    assert.ok(Math.sqrt(spread.tau2) < 0.02, `τ = ${Math.sqrt(spread.tau2)}`);
    // The same rows with b's hour 5 taken as a whole hour: the 20% teaches a spread.
    const whole = rows.map((r) => ({ ...r, lastTs: r.bucket + HOUR - 1_000 }));
    assert.ok(Math.sqrt(processSpreadFromRows(whole).get('cpu_ns')?.tau2 ?? 0) > 0.03);
  });

  it('widening: one process a side adds 2τ², many processes a side almost nothing, τ² = 0 changes nothing', () => {
    const tau2 = 0.05 ** 2;
    const one = new Map([['web-1', 1000]]);
    const many = new Map(Array.from({ length: 50 }, (_, i) => [`web-${i}`, 100] as [string, number]));
    assert.equal(concentration(one), 1);
    assert.ok(Math.abs(concentration(many) - 1 / 50) < 1e-12);
    const base = comparisonOf(10, 0.02);
    const single = withProcessSpread(base, { tau2, df: 10 }, one, new Map([['web-2', 1000]]), 0.95);
    assert.ok(Math.abs(single.seLogRatio - Math.sqrt(0.02 ** 2 + 2 * tau2)) < 1e-12);
    assert.ok(single.pValue > 0.05, `p = ${single.pValue}: +10% is within two processes' difference`);
    assert.ok(single.ci[0] < 0 && single.ci[1] > 20, `${single.ci}`);
    assert.deepEqual(single.processes, { baseline: 1, candidate: 1, spreadPct: (Math.exp(0.05) - 1) * 100 });
    const fleet = withProcessSpread(base, { tau2, df: 10 }, many, many, 0.95);
    assert.ok(Math.abs(fleet.seLogRatio - Math.sqrt(0.02 ** 2 + (2 / 50) * tau2)) < 1e-12, `${fleet.seLogRatio}`);
    const none = withProcessSpread(base, { tau2: 0, df: 10 }, one, one, 0.95);
    assert.equal(none.seLogRatio, base.seLogRatio);
    assert.equal(none.pValue, base.pValue);
    assert.deepEqual(none.processes, { baseline: 1, candidate: 1 });
  });
});

/**
 * v1 serves 8 h on four processes of their own cost levels (ln spread ~4%), then a 2-hour canary:
 * v1 on one process, v2 on another that is `canaryHost`× as dear, its code `change`× as dear.
 */
function canaryOnOneProcess(canaryHost: number, change: number): Phase[] {
  const feed = (factor: number) => ({ [FEED]: COST * factor });
  const fleet = { 'web-1': 1, 'web-3': 1.06, 'web-4': 0.96, 'web-5': 1.03 };
  return [
    { commit: 'v1', from: T0 - 8 * HOUR, to: T0, endpoints: feed(1), perHour: 3000, shareB: 0, hosts: fleet },
    { commit: 'v1', from: T0, to: T0 + 2 * HOUR, endpoints: feed(1), perHour: 1500, shareB: 0, hosts: { 'web-1': 1 } },
    {
      commit: 'v2',
      from: T0,
      to: T0 + 2 * HOUR,
      endpoints: feed(change),
      perHour: 1500,
      shareB: 0,
      hosts: { 'web-6': canaryHost },
    },
  ];
}

describe('a canary of one process a side', () => {
  const now = T0 + 2 * HOUR + 60_000;
  const rolloutAlerts = async (phases: Phase[], learnProcessSpread: boolean) => {
    let alerts: Awaited<ReturnType<typeof runDetectors>>['alerts'] = [];
    await withTempStore(
      'ergometer-processes-',
      async (store) => {
        const config = resolveDetectorConfig({ learnProcessSpread });
        alerts = (await runDetectors(store, config, { now, service: 'pp' })).alerts.filter((a) => a.kind === 'rollout');
      },
      { service: 'pp', phases, seed: 21 },
    );
    return alerts;
  };

  it('a canary process 10% slower, the same code: an alert without the spread, none with it', async () => {
    const phases = canaryOnOneProcess(1.1, 1);
    const without = await rolloutAlerts(phases, false);
    assert.equal(without.length, 1, 'the comparison alone reads the slower process as a dearer commit');
    const withSpread = await rolloutAlerts(phases, true);
    assert.deepEqual(
      withSpread.map((a) => a.summary),
      [],
    );
  });

  it('the spread is learnt from the last day, each hour read once: the same as from all its rows at once', async () => {
    await withTempStore(
      'ergometer-processes-hours-',
      async (store) => {
        const reads: Array<{ from?: number; to?: number }> = [];
        const counting = new Proxy(store, {
          get(target, prop, receiver) {
            if (prop !== 'hostMoments') return Reflect.get(target, prop, receiver);
            return (q: Parameters<Store['hostMoments']>[0]) => {
              reads.push({ from: q.from, to: q.to });
              return target.hostMoments(q);
            };
          },
        });
        const config = resolveDetectorConfig();
        const first = await learnProcessSpread(counting, 'pp', T0 + 30 * 60_000, config);
        const all = processSpreadFromRows(
          await store.hostMoments({ service: 'pp', from: T0 - 24 * HOUR, to: T0, bucketMs: HOUR }),
        );
        assert.deepEqual(first, all);
        assert.ok((first.get('cpu_ns')?.tau2 ?? 0) > 0);
        assert.deepEqual(reads, [{ from: T0 - 24 * HOUR, to: T0 }]);
        // Within the same hour nothing is read; an hour later only that hour.
        await learnProcessSpread(counting, 'pp', T0 + 50 * 60_000, config);
        await learnProcessSpread(counting, 'pp', T0 + HOUR + 60_000, config);
        assert.deepEqual(reads.slice(1), [{ from: T0, to: T0 + HOUR }]);
      },
      { service: 'pp', phases: canaryOnOneProcess(1.1, 1), seed: 21 },
    );
  });

  it('GET /v1/compare of the two commits widens as the detector does and says on how many processes', async () => {
    await withTempStore(
      'ergometer-processes-compare-',
      async (store) => {
        const narrow = await compareGroups(store, 'pp', { commit: 'v1' }, { commit: 'v2' }, { minSamples: 2 });
        const answer = (await answerRead(
          store,
          '/v1/compare',
          new URLSearchParams('service=pp&base=v1&head=v2'),
          now,
        )) as Array<{
          endpoint: string;
          ci: [number, number];
          processes?: { baseline: number; candidate: number; spreadPct?: number };
        }>;
        const [row] = answer;
        const [plain] = narrow;
        assert.ok(row && plain);
        assert.ok(row.ci[1] - row.ci[0] > 1.5 * (plain.ci[1] - plain.ci[0]), `${row.ci} vs ${plain.ci}`);
        // Over all its time v1 ran on four hosts, web-1 longest (it was also the canary's baseline): over two processes.
        assert.ok(
          row.processes && row.processes.baseline > 2 && row.processes.candidate === 1,
          JSON.stringify(row.processes),
        );
        assert.ok(row.processes.spreadPct !== undefined && row.processes.spreadPct > 2);
      },
      { service: 'pp', phases: canaryOnOneProcess(1.1, 1), seed: 21 },
    );
  });

  it('a real +40% on the canary still alerts, and says how far it widened and on how many processes', async () => {
    const [alert, ...rest] = await rolloutAlerts(canaryOnOneProcess(1, 1.4), true);
    assert.ok(alert, 'alerted');
    assert.equal(rest.length, 0);
    assert.equal(alert.comparison, 'canary');
    assert.ok(alert.changePct > 30 && alert.changePct < 50, `${alert.changePct}`);
    assert.ok(
      alert.processes?.spreadPct !== undefined && alert.processes.spreadPct > 2,
      JSON.stringify(alert.processes),
    );
    assert.equal(alert.processes.baseline, 1);
    assert.equal(alert.processes.candidate, 1);
    assert.match(alert.summary, /processes of the same code differ by ~[\d.]+% \(1 vs 1 processes\)/);
  });
});
