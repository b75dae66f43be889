import { studentTwoSidedP } from './distributions';

/**
 * Change points in a series (e.g. daily mean cost per request of one endpoint): E-divisive
 * (Matteson & James, 2014) to find candidates, with the deterministic significance test Apache
 * Otava (ex-Hunter, MongoDB) uses instead of the original permutation test: a Welch t-test between
 * the two neighbouring segments a candidate splits. Deterministic, so a detector run gives the same
 * answer twice, and fast enough for the few hundred points of a daily or hourly series.
 *
 * Parts, as in Otava's change_point_divisive: {@link bestSplit} (candidate search on one
 * segment), {@link splitTest} (significance), {@link findChangePoints} (the loop).
 */

export interface ChangePoint {
  /** Index of the first point after the change. */
  index: number;
  meanBefore: number;
  meanAfter: number;
  /** (meanAfter / meanBefore − 1) × 100. */
  changePct: number;
  /** Welch t-test p-value between the neighbouring segments. */
  pValue: number;
  /** E-divisive statistic Q of the split (larger = clearer). */
  q: number;
}

export interface ChangePointOptions {
  /** Points on each side of a change, at least. Default 3. */
  minSegment?: number;
  /** A candidate is accepted when its p-value is below this. Default 0.001. */
  maxPValue?: number;
  /** Stop after this many change points. Default 32. */
  maxChangePoints?: number;
}

/**
 * Sums of pairwise distances |x_i − x_j| over index blocks in O(1), after O(n²) preparation:
 * prefix[a][b] = Σ_{i<a, j<b} |x_i − x_j|.
 */
class PairwiseDistances {
  private readonly prefix: Float64Array;
  private readonly width: number;

  constructor(values: readonly number[]) {
    const n = values.length;
    this.width = n + 1;
    this.prefix = new Float64Array(this.width * this.width);
    for (let i = 1; i <= n; i++) {
      let row = 0;
      for (let j = 1; j <= n; j++) {
        row += Math.abs((values[i - 1] as number) - (values[j - 1] as number));
        this.prefix[i * this.width + j] = (this.prefix[(i - 1) * this.width + j] as number) + row;
      }
    }
  }

  /** Σ |x_i − x_j| for i in [i0, i1), j in [j0, j1). */
  block(i0: number, i1: number, j0: number, j1: number): number {
    const w = this.width;
    const p = this.prefix;
    return (
      (p[i1 * w + j1] as number) - (p[i0 * w + j1] as number) - (p[i1 * w + j0] as number) + (p[i0 * w + j0] as number)
    );
  }
}

/**
 * The split of values[start, end) that maximises the E-divisive statistic (α = 1):
 *   Q(τ) = (m·k / (m+k)) · ( 2/(m·k) Σ|a−b| − 1/C(m,2) Σ_{a<a'}|a−a'| − 1/C(k,2) Σ_{b<b'}|b−b'| )
 * with m = τ − start, k = end − τ, both ≥ minSegment (≥ 2).
 */
export function bestSplit(
  distances: PairwiseDistances,
  start: number,
  end: number,
  minSegment: number,
): { index: number; q: number } | undefined {
  let best: { index: number; q: number } | undefined;
  const seg = Math.max(2, minSegment);
  for (let tau = start + seg; tau <= end - seg; tau++) {
    const m = tau - start;
    const k = end - tau;
    const cross = distances.block(start, tau, tau, end);
    // block over a square counts each unordered pair twice.
    const within1 = distances.block(start, tau, start, tau) / 2;
    const within2 = distances.block(tau, end, tau, end) / 2;
    const e = (2 / (m * k)) * cross - within1 / ((m * (m - 1)) / 2) - within2 / ((k * (k - 1)) / 2);
    const q = ((m * k) / (m + k)) * e;
    if (best === undefined || q > best.q) best = { index: tau, q };
  }
  return best;
}

function segmentStats(values: readonly number[], start: number, end: number): { n: number; mean: number; v: number } {
  const n = end - start;
  let sum = 0;
  for (let i = start; i < end; i++) sum += values[i] as number;
  const mean = sum / n;
  let ss = 0;
  for (let i = start; i < end; i++) ss += ((values[i] as number) - mean) ** 2;
  return { n, mean, v: n > 1 ? ss / (n - 1) : 0 };
}

/** Welch t-test between values[start, split) and values[split, end). */
export function splitTest(
  values: readonly number[],
  start: number,
  split: number,
  end: number,
): { pValue: number; meanBefore: number; meanAfter: number } {
  const a = segmentStats(values, start, split);
  const b = segmentStats(values, split, end);
  const va = a.v / a.n;
  const vb = b.v / b.n;
  const se = Math.sqrt(va + vb);
  if (se === 0) return { pValue: a.mean === b.mean ? 1 : 0, meanBefore: a.mean, meanAfter: b.mean };
  const df = (va + vb) ** 2 / ((va * va) / Math.max(1, a.n - 1) + (vb * vb) / Math.max(1, b.n - 1));
  return { pValue: studentTwoSidedP((b.mean - a.mean) / se, df), meanBefore: a.mean, meanAfter: b.mean };
}

/**
 * All significant change points of a series, in index order. Each round proposes the best split
 * of every current segment, accepts the clearest significant one (largest Q among those with
 * p < maxPValue), and repeats until no segment has a significant split. Finally every accepted
 * point is re-tested against its final neighbours (Otava does the same) so that a point made
 * redundant by later ones is dropped.
 */
export function findChangePoints(values: readonly number[], options: ChangePointOptions = {}): ChangePoint[] {
  const minSegment = Math.max(2, options.minSegment ?? 3);
  const maxPValue = options.maxPValue ?? 0.001;
  const maxPoints = options.maxChangePoints ?? 32;
  if (values.length < 2 * minSegment) return [];
  const distances = new PairwiseDistances(values);
  const points: Array<{ index: number; q: number }> = [];
  for (;;) {
    if (points.length >= maxPoints) break;
    const bounds = [0, ...points.map((p) => p.index).sort((a, b) => a - b), values.length];
    let accepted: { index: number; q: number } | undefined;
    for (let s = 0; s + 1 < bounds.length; s++) {
      const start = bounds[s] as number;
      const end = bounds[s + 1] as number;
      const candidate = bestSplit(distances, start, end, minSegment);
      if (candidate === undefined) continue;
      if (splitTest(values, start, candidate.index, end).pValue >= maxPValue) continue;
      if (accepted === undefined || candidate.q > accepted.q) accepted = candidate;
    }
    if (accepted === undefined) break;
    points.push(accepted);
  }
  points.sort((a, b) => a.index - b.index);
  // Re-test each point against its final neighbours; drop the weakest failing one and repeat.
  for (;;) {
    const results = points.map((p, i) => {
      const start = i === 0 ? 0 : (points[i - 1] as { index: number }).index;
      const end = i === points.length - 1 ? values.length : (points[i + 1] as { index: number }).index;
      return { point: p, ...splitTest(values, start, p.index, end) };
    });
    const failing = results.filter((r) => r.pValue >= maxPValue).sort((a, b) => b.pValue - a.pValue)[0];
    if (failing === undefined) {
      return results.map((r) => ({
        index: r.point.index,
        meanBefore: r.meanBefore,
        meanAfter: r.meanAfter,
        changePct: r.meanBefore !== 0 ? (r.meanAfter / r.meanBefore - 1) * 100 : Number.NaN,
        pValue: r.pValue,
        q: r.point.q,
      }));
    }
    points.splice(points.indexOf(failing.point), 1);
  }
}

export { PairwiseDistances };
