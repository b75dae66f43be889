import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Moments, ratioOfMeans } from '../../src/stats/ratio';
import { stratifiedRatio } from '../../src/stats/stratified';
import { logNormalSampler, seededRandom } from './random';

function moments(draw: () => number, n: number, factor = 1): Moments {
  let sum = 0;
  let sum2 = 0;
  for (let i = 0; i < n; i++) {
    const x = draw() * factor;
    sum += x;
    sum2 += x * x;
  }
  return { n, sum, sum2 };
}

describe('stratified ratio over host classes', () => {
  it('one stratum is exactly ratioOfMeans', () => {
    const a = { n: 3, sum: 36, sum2: 440 };
    const b = { n: 3, sum: 45, sum2: 683 };
    const s = stratifiedRatio([{ baseline: a, candidate: b }]);
    const r = ratioOfMeans(a, b);
    assert.ok(s && r);
    assert.deepEqual([s.changePct, s.ci, s.pValue], [r.changePct, r.ci, r.pValue]);
  });

  it('a move of traffic to a dearer class is no change; a real +5% in both classes is +5%', () => {
    const draw = logNormalSampler(seededRandom(3), 1000, 0.5);
    // Class B costs 1.5×; traffic moves from 30% to 70% on B.
    const mixOnly = stratifiedRatio(
      [
        { baseline: moments(draw, 7000), candidate: moments(draw, 3000) },
        { baseline: moments(draw, 3000, 1.5), candidate: moments(draw, 7000, 1.5) },
      ],
      0.999,
    );
    // Pooled, the same data is +~14%: the mix shift alone.
    assert.ok(mixOnly && mixOnly.ci[0] < 0 && mixOnly.ci[1] > 0, `${mixOnly?.ci}`);
    const real = stratifiedRatio([
      { baseline: moments(draw, 7000), candidate: moments(draw, 3000, 1.05) },
      { baseline: moments(draw, 3000, 1.5), candidate: moments(draw, 7000, 1.5 * 1.05) },
    ]);
    assert.ok(real && real.ci[0] < 5 && real.ci[1] > 5 && real.pValue < 1e-6, `${real?.ci}`);
  });

  it('keeps ~5% false alarms at α = 0.05 on skewed costs with unequal strata', () => {
    const random = seededRandom(11);
    const fast = logNormalSampler(random, 1, 0.5);
    const slow = logNormalSampler(random, 20, 0.3);
    const draw = () => (random() < 0.05 ? slow() : fast());
    let rejected = 0;
    const runs = 2000;
    for (let r = 0; r < runs; r++) {
      const e = stratifiedRatio([
        { baseline: moments(draw, 700), candidate: moments(draw, 300) },
        { baseline: moments(draw, 300, 1.5), candidate: moments(draw, 700, 1.5) },
      ]);
      assert.ok(e);
      if (e.pValue < 0.05) rejected++;
    }
    assert.ok(rejected / runs >= 0.03 && rejected / runs <= 0.075, `${rejected / runs}`);
  });
});
