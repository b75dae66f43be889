import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WindowSampler } from '../../src/sampling/window-sampler';

/** Deterministic uniform [0,1) source (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function simulate(rate: number, arrivals: number[], windowMs = 50, seed = 1) {
  let now = 0;
  const sampler = new WindowSampler(rate, windowMs, () => now, seeded(seed));
  let sampled = 0;
  for (const t of arrivals) {
    now = t;
    if (sampler.shouldSample()) sampled++;
  }
  return sampled / arrivals.length;
}

test('rate 0 never samples, rate 1 always does', () => {
  const arrivals = Array.from({ length: 1000 }, (_, i) => i * 3);
  assert.equal(simulate(0, arrivals), 0);
  assert.equal(simulate(1, arrivals), 1);
});

/**
 * The fraction sampled estimates `rate` without bias whatever the arrival
 * pattern (PASTA). Its spread has two sources: the windows (N cycles of fixed
 * window + exponential gap cover a fraction of time with relative standard
 * error ≈ sqrt(2/N)) and the arrivals (M independent units — single requests,
 * or whole bursts when requests come in bursts shorter than a window — give a
 * binomial sqrt(r(1-r)/M)). We accept 5 combined standard errors, i.e. a bias
 * of more than 5% (rate 0.5) to 16% (rate 0.01) of the rate fails — the fixed
 * seed makes the run deterministic.
 */
const WINDOW_MS = 50;
for (const pattern of ['Poisson arrivals', 'periodic bursts'] as const) {
  test(`fraction sampled ≈ rate under ${pattern}`, () => {
    for (const rate of [0.01, 0.1, 0.5]) {
      const cycles = 20_000;
      const durationMs = (cycles * WINDOW_MS) / rate;
      const random = seeded(7);
      const { arrivals, units } =
        pattern === 'Poisson arrivals'
          ? poisson(random, durationMs, durationMs / 400_000)
          : bursts(durationMs, durationMs / 100_000, 20);
      const fraction = simulate(rate, arrivals, WINDOW_MS, 11);
      const standardError = Math.sqrt((2 * rate * rate) / cycles + (rate * (1 - rate)) / units);
      assert.ok(
        Math.abs(fraction - rate) < 5 * standardError,
        `rate ${rate}: sampled ${fraction.toFixed(5)} (±${(5 * standardError).toFixed(5)})`,
      );
    }
  });
}

test('windows have the configured length and everything inside one is sampled', () => {
  let now = 0;
  const sampler = new WindowSampler(0.1, 50, () => now, seeded(3));
  const runs: number[] = [];
  let start: number | undefined;
  for (now = 0; now < 200_000; now += 1) {
    const inside = sampler.shouldSample();
    if (inside && start === undefined) start = now;
    if (!inside && start !== undefined) {
      runs.push(now - start);
      start = undefined;
    }
  }
  assert.ok(runs.length > 100);
  // Windows are 50 ms; with 1 ms steps a run spans 50 or 51 steps (two back-to-back windows are rare).
  const typical = runs.filter((r) => r >= 49 && r <= 51).length / runs.length;
  assert.ok(typical > 0.9, `run lengths ${runs.slice(0, 20)}`);
});

function poisson(random: () => number, spanMs: number, meanGapMs: number) {
  const arrivals: number[] = [];
  for (let t = 0; t < spanMs; t += -Math.log(1 - random()) * meanGapMs) arrivals.push(t);
  return { arrivals, units: arrivals.length };
}

/**
 * `size` requests 0.1 ms apart every `periodMs`: a traffic pattern that periodic
 * (non-random) windows would alias with. Each burst is shorter than a window, so
 * it is sampled whole or not at all: a burst is one unit.
 */
function bursts(spanMs: number, periodMs: number, size: number) {
  const arrivals: number[] = [];
  let units = 0;
  for (let t = 0; t < spanMs; t += periodMs, units++) for (let i = 0; i < size; i++) arrivals.push(t + i * 0.1);
  return { arrivals, units };
}
