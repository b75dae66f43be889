import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { benjaminiHochberg, holm } from '../../src/stats/multiple';

// Golden values from the textbook definitions, computed independently (brute force over j):
// BH: p̃_(i) = min_{j ≥ i} m·p_(j)/j;  Holm: p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)).
const P = [0.01, 0.04, 0.03, 0.005, 0.2, 0.5, 0.049];

function closeAll(actual: number[], expected: number[]): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) => {
    assert.ok(Math.abs(a - (expected[i] as number)) < 1e-12, `${i}: ${a} vs ${expected[i]}`);
  });
}

describe('multiple-testing control', () => {
  it('Benjamini–Hochberg matches the definition', () => {
    closeAll(benjaminiHochberg(P), [0.035, 0.0686, 0.0686, 0.035, 0.23333333333333336, 0.5, 0.0686]);
  });

  it('Holm matches the definition', () => {
    closeAll(holm(P), [0.06, 0.16, 0.15, 0.035, 0.4, 0.5, 0.16]);
  });

  it('adjusted p-values are ≥ the raw ones, ≤ 1, and keep their order', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 50 }), (p) => {
        for (const adjust of [benjaminiHochberg, holm]) {
          const a = adjust(p);
          a.forEach((v, i) => {
            assert.ok(v >= (p[i] as number) - 1e-15 && v <= 1);
            a.forEach((w, j) => {
              if ((p[i] as number) < (p[j] as number)) assert.ok(v <= w + 1e-15);
            });
          });
        }
        // Holm is never less conservative than BH.
        const bh = benjaminiHochberg(p);
        holm(p).forEach((h, i) => {
          assert.ok(h >= (bh[i] as number) - 1e-15);
        });
      }),
    );
  });
});
