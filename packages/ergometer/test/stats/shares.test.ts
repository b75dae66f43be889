import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { costPerRequest, functionChange, shareOfSums } from '../../src/stats/shares';
import { seededRandom } from './random';

describe('profile share statistics', () => {
  it('ratio of sums with the cluster variance on a fixed series (worked by hand)', () => {
    // R = 6/60 = 0.1; residuals y − R·x: 1−1 = 0, 2−2 = 0, 3−3 = 0 → cluster variance 0 → binomial floor.
    const exact = shareOfSums([1, 2, 3], [10, 20, 30], 60, 600);
    assert.equal(exact.share, 0.1);
    const p = 60.5 / 601;
    assert.ok(Math.abs(exact.variance - (p * (1 - p)) / 600) < 1e-15);
    // residuals 2−1.5 = 0.5, 1−1.5 = −0.5 (R = 3/30): 2/1 · 0.5 / 900
    const noisy = shareOfSums([2, 1], [15, 15], 3000, 30000);
    assert.ok(Math.abs(noisy.share - 0.1) < 1e-15);
    assert.ok(Math.abs(noisy.variance - (2 * 0.5) / 900) < 1e-15);
  });

  it('the interval covers the true change at about its nominal rate under overdispersed counts', () => {
    const random = seededRandom(7);
    const trueShare = 0.1;
    let covered = 0;
    const runs = 400;
    for (let run = 0; run < runs; run++) {
      const side = () => {
        const ys: number[] = [];
        const xs: number[] = [];
        let countY = 0;
        let countX = 0;
        for (let p = 0; p < 10; p++) {
          // bursts: each profile's share wanders (beta-like) around the true share
          const share = trueShare * (0.6 + 0.8 * random());
          const n = 2000;
          let y = 0;
          for (let i = 0; i < n; i++) if (random() < share) y++;
          ys.push(y);
          xs.push(n);
          countY += y;
          countX += n;
        }
        return costPerRequest(shareOfSums(ys, xs, countY, countX), 1000, 0);
      };
      const change = functionChange(side(), side());
      if (change.ci[0] <= 0 && 0 <= change.ci[1]) covered++;
    }
    // 95% nominal; the binomial variance alone would cover far less (the profiles wander ±40%).
    assert.ok(covered / runs > 0.9, `coverage ${covered / runs}`);
  });

  it('invariants: share in [0, 1] for sub-counts, variance > 0, p in [0, 1], symmetric change', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 1000 }), fc.double({ min: 0, max: 1, noNaN: true })), {
          minLength: 1,
          maxLength: 20,
        }),
        fc.double({ min: 1, max: 1e9, noNaN: true }),
        (profiles, mean) => {
          const xs = profiles.map(([x]) => x);
          const ys = profiles.map(([x, f]) => Math.floor(x * f));
          const sumY = ys.reduce((a, b) => a + b, 0);
          const sumX = xs.reduce((a, b) => a + b, 0);
          const s = shareOfSums(ys, xs, sumY, sumX);
          assert.ok(s.share >= 0 && s.share <= 1);
          assert.ok(s.variance > 0);
          const a = costPerRequest(s, mean, mean);
          const b = costPerRequest(
            shareOfSums(
              xs.map((x, i) => x - (ys[i] as number)),
              xs,
              sumX - sumY,
              sumX,
            ),
            mean,
            0,
          );
          const ab = functionChange(a, b);
          const ba = functionChange(b, a);
          assert.ok(ab.pValue >= 0 && ab.pValue <= 1);
          assert.ok(Math.abs(ab.delta + ba.delta) < 1e-6 * Math.max(1, Math.abs(ab.delta)));
          assert.equal(ab.pValue, ba.pValue);
        },
      ),
    );
  });
});
