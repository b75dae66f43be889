import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findChangePoints } from '../../src/stats/changepoint';
import { normalSampler, seededRandom } from './random';

function series(segments: Array<{ length: number; level: number }>, noise: number, seed: number): number[] {
  const normal = normalSampler(seededRandom(seed));
  return segments.flatMap(({ length, level }) => Array.from({ length }, () => level * (1 + noise * normal())));
}

describe('E-divisive change points with a t-test significance', () => {
  it('finds one step where it is', () => {
    const values = series(
      [
        { length: 30, level: 100 },
        { length: 30, level: 104 },
      ],
      0.01,
      11,
    );
    const points = findChangePoints(values);
    assert.equal(points.length, 1);
    assert.equal(points[0]?.index, 30);
    assert.ok(Math.abs((points[0]?.changePct ?? 0) - 4) < 1, String(points[0]?.changePct));
  });

  it('finds a rise and its return: two points, the second undoing the first', () => {
    const values = series(
      [
        { length: 25, level: 100 },
        { length: 20, level: 105 },
        { length: 25, level: 100 },
      ],
      0.01,
      12,
    );
    const points = findChangePoints(values);
    assert.deepEqual(
      points.map((p) => p.index),
      [25, 45],
    );
    assert.ok((points[0]?.changePct ?? 0) > 3 && (points[1]?.changePct ?? 0) < -3);
  });

  it('finds nothing in noise, on many seeds', () => {
    let found = 0;
    for (let seed = 100; seed < 150; seed++) {
      found += findChangePoints(series([{ length: 60, level: 100 }], 0.02, seed)).length;
    }
    // maxPValue 0.001 on ~50 series: a handful of false points at most.
    assert.ok(found <= 2, `found ${found} change points in pure noise`);
  });

  it('is deterministic and ignores series too short to split', () => {
    const values = series(
      [
        { length: 20, level: 10 },
        { length: 20, level: 12 },
      ],
      0.02,
      13,
    );
    assert.deepEqual(findChangePoints(values), findChangePoints(values));
    assert.deepEqual(findChangePoints([1, 2, 3, 4, 5]), []);
  });
});
