import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Moments, minimumDetectableChangePct, ratioOfMeans } from '../../src/stats/ratio';
import { logNormalSampler, paretoSampler, seededRandom } from './random';

function momentsOf(values: number[]): Moments {
  let sum = 0;
  let sum2 = 0;
  for (const v of values) {
    sum += v;
    sum2 += v * v;
  }
  return { n: values.length, sum, sum2 };
}

/**
 * Runs `repetitions` seeded experiments of two groups of `n` costs each, the candidate's costs
 * multiplied by `shift`, and returns how often the 95% test rejected and how often the interval
 * covered the true change.
 */
function simulate(draw: () => number, n: number, shift: number, repetitions: number) {
  let rejected = 0;
  let covered = 0;
  const truePct = (shift - 1) * 100;
  for (let r = 0; r < repetitions; r++) {
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < n; i++) {
      a.push(draw());
      b.push(draw() * shift);
    }
    const estimate = ratioOfMeans(momentsOf(a), momentsOf(b));
    assert.ok(estimate);
    if (estimate.pValue < 0.05) rejected++;
    if (estimate.ci[0] <= truePct && truePct <= estimate.ci[1]) covered++;
  }
  return { rejectRate: rejected / repetitions, coverage: covered / repetitions };
}

describe('ratio of mean costs (delta method on the log ratio)', () => {
  it('golden: two small groups, worked by hand in docs/MATH.md', () => {
    // baseline 10, 12, 14: mean 12, s² 4; candidate 13, 15, 17: mean 15, s² 4.
    const e = ratioOfMeans({ n: 3, sum: 36, sum2: 440 }, { n: 3, sum: 45, sum2: 683 });
    assert.ok(e);
    assert.ok(Math.abs(e.ratio - 1.25) < 1e-12);
    assert.ok(Math.abs(e.changePct - 25) < 1e-9);
    // Var(ln R) = 4/(3·144) + 4/(3·225) = 0.0151851…
    assert.ok(Math.abs(e.seLogRatio - Math.sqrt(4 / 432 + 4 / 675)) < 1e-12);
    assert.ok(e.ci[0] < 25 && e.ci[1] > 25 && e.ci[1] - 25 > 25 - e.ci[0], 'the interval of a ratio leans up');
  });

  it('is calibrated on skewed and heavy-tailed costs: ~5% false alarms at α = 0.05, ~95% coverage', () => {
    const cases = [
      { name: 'log-normal σ=1.5', draw: logNormalSampler(seededRandom(1), 1e6, 1.5), n: 400 },
      { name: 'Pareto α=2.5', draw: paretoSampler(seededRandom(2), 1e6, 2.5), n: 1000 },
      {
        name: '5% slow path ×20',
        draw: (() => {
          const random = seededRandom(3);
          const fast = logNormalSampler(random, 1e6, 0.5);
          const slow = logNormalSampler(random, 2e7, 0.3);
          return () => (random() < 0.05 ? slow() : fast());
        })(),
        n: 400,
      },
    ];
    for (const c of cases) {
      const nullRun = simulate(c.draw, c.n, 1, 2000);
      // Binomial sd at p = 0.05, 2000 runs ≈ 0.005: [0.03, 0.075] fails a badly calibrated test
      // (the log-normal Cox estimator rejects 15–25% on the last two, see MATH.md).
      assert.ok(nullRun.rejectRate >= 0.03 && nullRun.rejectRate <= 0.075, `${c.name}: ${nullRun.rejectRate}`);
      const shifted = simulate(c.draw, c.n, 1.05, 2000);
      assert.ok(shifted.coverage >= 0.92, `${c.name}: coverage ${shifted.coverage}`);
      assert.ok(shifted.rejectRate > nullRun.rejectRate, `${c.name}: a 5% shift is found more often than none`);
    }
  });

  it('finds a 1% change with enough samples', () => {
    const draw = logNormalSampler(seededRandom(7), 1e6, 0.8);
    const a: number[] = [];
    const b: number[] = [];
    // σ = 0.8: CV ≈ 0.95, so se(ln R) ≈ 0.95·√(2/n) ≈ 0.0013 at n = 10⁶: a 1% change is ~7 se.
    for (let i = 0; i < 1_000_000; i++) {
      a.push(draw());
      b.push(draw() * 1.01);
    }
    const e = ratioOfMeans(momentsOf(a), momentsOf(b));
    assert.ok(e);
    assert.ok(e.pValue < 1e-4, String(e.pValue));
    assert.ok(e.ci[0] > 0 && e.ci[0] < 1 && e.ci[1] > 1, `ci ${e.ci}`);
  });

  it('swapping groups inverts the ratio; scaling both leaves it; the interval holds the estimate', () => {
    const group = fc.array(fc.double({ min: 1, max: 1e9, noNaN: true }), { minLength: 2, maxLength: 40 });
    fc.assert(
      fc.property(group, group, fc.double({ min: 1e-3, max: 1e3, noNaN: true }), (xs, ys, scale) => {
        const ab = ratioOfMeans(momentsOf(xs), momentsOf(ys));
        const ba = ratioOfMeans(momentsOf(ys), momentsOf(xs));
        const scaled = ratioOfMeans(momentsOf(xs.map((x) => x * scale)), momentsOf(ys.map((y) => y * scale)));
        assert.ok(ab && ba && scaled);
        assert.ok(Math.abs(ab.ratio * ba.ratio - 1) < 1e-9);
        assert.ok(Math.abs(ab.pValue - ba.pValue) < 1e-9);
        assert.ok(Math.abs(scaled.ratio / ab.ratio - 1) < 1e-9);
        assert.ok(ab.ci[0] <= ab.changePct + 1e-9 && ab.changePct <= ab.ci[1] + 1e-9);
      }),
    );
  });

  it('refuses what it cannot estimate', () => {
    assert.equal(ratioOfMeans({ n: 1, sum: 5, sum2: 25 }, { n: 10, sum: 50, sum2: 300 }), undefined);
    assert.equal(ratioOfMeans({ n: 3, sum: 0, sum2: 0 }, { n: 3, sum: 3, sum2: 3 }), undefined);
  });

  it('minimum detectable change shrinks as 1/√n', () => {
    const small = minimumDetectableChangePct(0.02);
    const large = minimumDetectableChangePct(0.01);
    assert.ok(small > large * 1.9 && small < large * 2.1);
    // (1.96 + 0.84) × 0.01 ≈ 2.8% → e^0.028 − 1
    assert.ok(Math.abs(large - (Math.exp(2.8016 * 0.01) - 1) * 100) < 0.01);
  });
});
