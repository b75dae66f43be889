/**
 * False alerts of the rollout detector when nothing changed (A/A rollouts), two ways:
 *  1. tens of thousands of simulated rollouts through the detector's statistics (per-endpoint,
 *     per-host-class, stratified, Benjamini–Hochberg over the rollout's endpoints, the default α and
 *     threshold, the sequential looks), with heavy-tailed costs, unequal traffic and a shift of
 *     traffic between host classes — enough rollouts for an exact upper bound below 1 per 1000;
 *  2. the A/A rollouts of the detection simulator (simulator.ts): every part real, HTTP ingest to
 *     DuckDB to `runDetectors` on `serve`'s schedule.
 */
import {
  benjaminiHochberg,
  binomialUpperBound,
  DEFAULT_DETECTOR_CONFIG,
  type Moments,
  rolloutLook,
  type Stratum,
  seededRandom,
  stratifiedRatio,
} from 'ergometer';
import type { BenchTable } from '../report';
import { simulateOnce } from './simulator';

type Shape = 'log-normal σ=1' | '5% slow path ×20';

/**
 * Standard normal draws from a uniform source, two per pair of uniforms (Box–Muller, both halves):
 * the simulations are draw-bound.
 */
export function normalSampler(random: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const z = spare;
      spare = undefined;
      return z;
    }
    const r = Math.sqrt(-2 * Math.log(1 - random()));
    const theta = 2 * Math.PI * random();
    spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
}

/** Cost draws of one shape. */
function costSampler(random: () => number, shape: Shape): () => number {
  const normal = normalSampler(random);
  if (shape === 'log-normal σ=1') return () => Math.exp(normal());
  return () => (random() < 0.05 ? 20 * Math.exp(0.3 * normal()) : Math.exp(0.5 * normal()));
}

/** Samples per arm of endpoint i of 20 over the whole window: Zipf-like, from 20 000·scale down to 1 000·scale. */
function trafficOf(i: number, scale: number): number {
  return Math.round((20_000 * scale) / (i + 1));
}

/** How the rollout detector is run: every detector run at full alpha on the data so far, or the sequential looks. */
type Schedule = 'every run, full α' | 'sequential looks';

/**
 * A/A rollouts through the detector's statistics (per endpoint and host class, stratified,
 * Benjamini–Hochberg over the rollout's endpoints, the default α and threshold), with the
 * candidate's data arriving over the window in 32 steps (every 11¼ minutes of a 6 h window):
 *  - 'every run, full α': the test at each step on everything so far (the detector before the
 *    sequential looks; `serve` runs every minute, so this undercounts what it did);
 *  - 'sequential looks': only at the steps {@link rolloutLook} looks at, each p divided by its
 *    alpha share (what the detector does now).
 * Returns how many rollouts alerted under each.
 */
export function statisticalRollouts(rollouts: number, shape: Shape, seed: number): Record<Schedule, number> {
  const random = seededRandom(seed);
  const draw = costSampler(random, shape);
  const { alpha, minEffectPct: threshold, minSamples, rolloutWindowMs: windowMs } = DEFAULT_DETECTOR_CONFIG;
  const steps = 32;
  const looks = new Map<number, number>();
  for (let step = 1; step <= steps; step++) {
    const look = rolloutLook((step * windowMs) / steps, windowMs);
    if (look && Math.abs(look.lengthMs - (step * windowMs) / steps) < 1) looks.set(step, look.alphaShare);
  }
  const endpoints = 20;
  // Host class B costs 1.5×; its share moves from 30% before the rollout to 70% after (a mix shift).
  const classes = [
    { before: 0.7, after: 0.3, factor: 1 },
    { before: 0.3, after: 0.7, factor: 1.5 },
  ];
  const moments = (count: number, factor: number, into: Moments) => {
    for (let i = 0; i < count; i++) {
      const x = factor * draw();
      into.sum += x;
      into.sum2 += x * x;
    }
    into.n += count;
  };
  const counts: Record<Schedule, number> = { 'every run, full α': 0, 'sequential looks': 0 };
  for (let r = 0; r < rollouts; r++) {
    const before: Moments[][] = [];
    const after: Moments[][] = [];
    for (let e = 0; e < endpoints; e++) {
      const n = trafficOf(e, 0.1);
      before.push(
        classes.map((c) => {
          const m = { n: 0, sum: 0, sum2: 0 };
          moments(Math.round(n * c.before), c.factor, m);
          return m;
        }),
      );
      after.push(classes.map(() => ({ n: 0, sum: 0, sum2: 0 })));
    }
    let alertedEveryRun = false;
    let alertedSequential = false;
    for (let step = 1; step <= steps; step++) {
      const pValues: number[] = [];
      const changes: number[] = [];
      for (let e = 0; e < endpoints; e++) {
        const n = trafficOf(e, 0.1);
        const strata: Stratum[] = [];
        classes.forEach((c, k) => {
          const target = Math.round((n * c.after * step) / steps);
          const sofar = after[e]?.[k] as Moments;
          moments(target - sofar.n, c.factor, sofar);
          const base = before[e]?.[k] as Moments;
          // As compareGroups: a host class is compared only with minSamples on both sides.
          if (base.n >= minSamples && sofar.n >= minSamples) strata.push({ baseline: base, candidate: sofar });
        });
        const estimate = stratifiedRatio(strata);
        if (!estimate) continue;
        pValues.push(estimate.pValue);
        changes.push(estimate.changePct);
      }
      const alerts = (share: number) =>
        benjaminiHochberg(pValues.map((p) => Math.min(1, p / share))).some(
          (p, i) => p < alpha && (changes[i] as number) >= threshold,
        );
      if (!alertedEveryRun && alerts(1)) alertedEveryRun = true;
      const share = looks.get(step);
      if (share !== undefined && !alertedSequential && alerts(share)) alertedSequential = true;
    }
    if (alertedEveryRun) counts['every run, full α']++;
    if (alertedSequential) counts['sequential looks']++;
  }
  return counts;
}

function boundPer1000(events: number, trials: number): string {
  return (1000 * binomialUpperBound(events, trials)).toFixed(2);
}

export async function benchFalseAlerts(): Promise<BenchTable> {
  const quick = process.env.BENCH_QUICK === '1';
  const rows: (string | number)[][] = [];
  const started = performance.now();
  for (const [i, shape] of (['log-normal σ=1', '5% slow path ×20'] as const).entries()) {
    const rollouts = quick ? 1_000 : shape === 'log-normal σ=1' ? 20_000 : 10_000;
    const counts = statisticalRollouts(rollouts, shape, 1000 + i);
    for (const schedule of ['every run, full α', 'sequential looks'] as const) {
      rows.push([
        `detector statistics, ${shape}, 20 endpoints, mix shift — ${schedule}`,
        rollouts.toLocaleString('en-US'),
        counts[schedule],
        ((1000 * counts[schedule]) / rollouts).toFixed(2),
        boundPer1000(counts[schedule], rollouts),
      ]);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  const statisticsSeconds = (performance.now() - started) / 1000;
  const report = await simulateOnce();
  const aa = report.rollouts.filter((r) => !r.rollout.effect);
  const falseRollouts = aa.filter((r) => r.falseAlerts.length > 0).length;
  rows.push([
    `detection simulator: HTTP ingest → DuckDB → runDetectors at every look, ${report.world.services} services, 20–50 endpoints, diurnal mix shifts, canary and all-at-once`,
    aa.length,
    falseRollouts,
    ((1000 * falseRollouts) / aa.length).toFixed(2),
    boundPer1000(falseRollouts, aa.length),
  ]);
  // All rollouts, those with a regression elsewhere too: an alert on an endpoint that did not change.
  const anyFalse = report.rollouts.filter((r) => r.falseAlerts.length > 0).length;
  rows.push([
    '… the same, every rollout (also those with a regression elsewhere), alerts on unchanged endpoints',
    report.rollouts.length,
    anyFalse,
    ((1000 * anyFalse) / report.rollouts.length).toFixed(2),
    boundPer1000(anyFalse, report.rollouts.length),
  ]);
  const lognormal = rows[1] as (string | number)[];
  return {
    title: 'False alerts on A/A rollouts (nothing changed)',
    description:
      'Rollouts in which the commit changed nothing. The statistics rows run the rollout comparison the detector makes ' +
      '(per endpoint and host class, stratified, Benjamini–Hochberg over the rollout’s endpoints, ' +
      `α = ${DEFAULT_DETECTOR_CONFIG.alpha}, minimum effect ${DEFAULT_DETECTOR_CONFIG.minEffectPct}%, regressions only) on ` +
      'simulated samples of independent costs (the detector also reads each side in 20 time blocks and takes their variance ' +
      'where they vary more than independent samples allow — docs/MATH.md, “Costs correlated in time”; on independent costs ' +
      'that is ~1% of groups, and it only ever widens an interval, so these rows bound the detector’s rate), ' +
      'with traffic moving from 30% to 70% on a 1.5× dearer host class at the rollout and the new commit’s ' +
      'data arriving over the 6 h window in 32 steps; “every run, full α” tests at every step (the detector before this change; ' +
      '`serve` runs every minute, so it did worse), “sequential looks” only at the 6 looks, each with its share of α (the ' +
      `detector now: docs/detectors.md) — ${statisticsSeconds.toFixed(0)} s. The simulator row is the world of the tables above, ` +
      'every part real. Goal: ≤ 1 false alert per 1000 rollouts. The last column is the exact one-sided 95% upper bound ' +
      '(Clopper–Pearson) on the rate.',
    columns: ['how', 'rollouts', 'rollouts with a false alert', 'per 1000', '95% upper bound per 1000'],
    rows,
    notes: [
      `With sequential looks, log-normal σ = 1: ${lognormal[2]} in ${lognormal[1]} rollouts, so the rate is below ` +
        `${lognormal[4]} per 1000 with 95% confidence${Number(lognormal[4]) <= 1 ? ' — the goal is met' : ' — the goal is not shown'}. ` +
        'Bonferroni over the looks bounds the chance that a rollout without change alerts by α, and only regressions alert, ' +
        'so the expected rate is at most about α/2 = 0.5 per 1000.',
      'The simulator row holds too few rollouts to measure a rate that small (each costs tens of thousands of samples through ' +
        'HTTP and six detector runs); it checks that the real path — diurnal load and mix, host classes, canaries, flags, ' +
        'validation, storage, aggregates, learnt thresholds — adds no false alerts of its own.',
    ],
  };
}
