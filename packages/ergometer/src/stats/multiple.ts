/**
 * Multiple-testing control. Every detector run tests many endpoints and flag variants at once;
 * at 200 tests and α = 0.05 about ten would "fire" on noise alone without this.
 */

/**
 * Benjamini–Hochberg adjusted p-values (step-up; controls the false discovery rate under
 * independence or positive dependence). Same order as the input; matches R's p.adjust(p, "BH").
 */
export function benjaminiHochberg(pValues: readonly number[]): number[] {
  const m = pValues.length;
  const order = pValues.map((p, i) => [p, i] as const).sort((a, b) => b[0] - a[0]);
  const adjusted = new Array<number>(m);
  let running = 1;
  order.forEach(([p, index], k) => {
    const rank = m - k;
    running = Math.min(running, (p * m) / rank);
    adjusted[index] = Math.min(1, running);
  });
  return adjusted;
}

/**
 * Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error rate under any
 * dependence). Same order as the input; matches R's p.adjust(p, "holm").
 */
export function holm(pValues: readonly number[]): number[] {
  const m = pValues.length;
  const order = pValues.map((p, i) => [p, i] as const).sort((a, b) => a[0] - b[0]);
  const adjusted = new Array<number>(m);
  let running = 0;
  order.forEach(([p, index], k) => {
    running = Math.max(running, Math.min(1, (m - k) * p));
    adjusted[index] = running;
  });
  return adjusted;
}
