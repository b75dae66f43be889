import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  binomialUpperBound,
  normalQuantile,
  normalTwoSidedP,
  studentQuantile,
  studentTwoSidedP,
} from '../../src/stats/distributions';

// Golden values: SciPy 1.17 (stats.norm.ppf, 2*stats.norm.sf, 2*stats.t.sf, stats.t.ppf).
function close(actual: number, expected: number, relative: number): void {
  const error = Math.abs(actual - expected) / Math.max(Math.abs(expected), 1e-300);
  assert.ok(error <= relative || actual === expected, `${actual} vs ${expected} (relative error ${error})`);
}

describe('distributions (golden values from SciPy)', () => {
  it('normal quantile', () => {
    close(normalQuantile(1e-10), -6.361340902404056, 1e-12);
    close(normalQuantile(0.001), -3.090232306167813, 1e-12);
    close(normalQuantile(0.025), -1.9599639845400545, 1e-12);
    assert.equal(normalQuantile(0.5), 0);
    close(normalQuantile(0.975), 1.959963984540054, 1e-12);
    close(normalQuantile(0.999999), 4.753424308817087, 1e-12);
    assert.ok(Number.isNaN(normalQuantile(1.5)));
  });

  it('normal two-sided p keeps relative accuracy far into the tail', () => {
    assert.equal(normalTwoSidedP(0), 1);
    close(normalTwoSidedP(1.96), 0.04999579029644087, 1e-6);
    close(normalTwoSidedP(-5), 5.733031437583866e-7, 1e-6);
    close(normalTwoSidedP(10), 1.523970604832094e-23, 1e-6);
    close(normalTwoSidedP(30), 9.813427854295816e-198, 1e-5);
  });

  it('Student t two-sided p, integer and fractional degrees of freedom', () => {
    close(studentTwoSidedP(2, 5), 0.10193947882985835, 1e-9);
    close(studentTwoSidedP(-1.5, 12.3), 0.1588388467655109, 1e-9);
    close(studentTwoSidedP(10, 3), 0.0021283990584141503, 1e-9);
    close(studentTwoSidedP(0.3, 100), 0.7647998803003035, 1e-9);
    close(studentTwoSidedP(4, 1e6), 6.33470340100481e-5, 1e-5);
  });

  it('Student t quantile', () => {
    close(studentQuantile(0.975, 7.5), 2.333039626864974, 1e-9);
    close(studentQuantile(0.995, 30), 2.7499956535672254, 1e-9);
    close(studentQuantile(0.9, 2), 1.8856180831641272, 1e-9);
    close(studentQuantile(0.1, 2), -1.8856180831641272, 1e-9);
  });

  it('Clopper–Pearson upper bound (golden: exact binomial sums in Python)', () => {
    close(binomialUpperBound(0, 3000), 0.000998079011996611, 1e-9);
    close(binomialUpperBound(3, 2000), 0.003872223150157505, 1e-9);
    close(binomialUpperBound(10, 20000), 0.0008479633438665535, 1e-9);
    close(binomialUpperBound(5, 40), 0.24503051264971193, 1e-9);
    assert.equal(binomialUpperBound(4, 4), 1);
    assert.ok(Number.isNaN(binomialUpperBound(1, 0)));
  });
});
