import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mannWhitneyFromHistograms } from '../../src/stats/rank';

describe('Mann–Whitney from histograms', () => {
  it('matches SciPy on tied data (mannwhitneyu, asymptotic, no continuity correction)', () => {
    const baseline = new Map([
      [3, 5],
      [4, 10],
      [5, 3],
      [8, 1],
    ]);
    const candidate = new Map([
      [4, 2],
      [5, 9],
      [6, 7],
      [9, 2],
    ]);
    const result = mannWhitneyFromHistograms(baseline, candidate);
    assert.ok(result);
    assert.equal(result.u, 332.5);
    assert.ok(Math.abs(result.pValue - 3.438939375808975e-5) / 3.438939375808975e-5 < 1e-5, String(result.pValue));
    assert.ok(result.z > 0 && result.probabilityOfSuperiority > 0.5);
  });

  it('is symmetric: swapping the groups flips z and keeps p', () => {
    const a = new Map([
      [10, 40],
      [11, 30],
      [12, 5],
    ]);
    const b = new Map([
      [10, 20],
      [11, 35],
      [13, 9],
    ]);
    const ab = mannWhitneyFromHistograms(a, b);
    const ba = mannWhitneyFromHistograms(b, a);
    assert.ok(ab && ba);
    assert.ok(Math.abs(ab.z + ba.z) < 1e-12);
    assert.ok(Math.abs(ab.pValue - ba.pValue) < 1e-12);
  });

  it('identical histograms give z = 0 and p = 1; an empty group gives undefined', () => {
    const a = new Map([
      [1, 3],
      [2, 4],
    ]);
    const r = mannWhitneyFromHistograms(a, new Map(a));
    assert.ok(r);
    assert.equal(r.z, 0);
    assert.equal(r.pValue, 1);
    assert.equal(mannWhitneyFromHistograms(a, new Map()), undefined);
  });
});
