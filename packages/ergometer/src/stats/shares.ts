/**
 * The statistics of profile shares (docs/MATH.md §"Function cost per request").
 *
 * A profile's samples are counts, and the samples of one process over one interval are not
 * independent draws (a slow request contributes a burst of consecutive samples to one stack), so a
 * plain binomial variance on the sample counts understates the noise: the data are overdispersed.
 * We treat each profile as a replicate (a cluster) and estimate the share of a function as a ratio
 * of sums, R = Σ y_p / Σ x_p (y: the function's cost in profile p, x: the endpoint's cost in p), with
 * the cluster (linearisation) variance of a ratio estimator, which absorbs any overdispersion between
 * profiles. With few profiles that variance is itself noisy and can come out near zero, so it is
 * floored by the binomial variance of the pooled sample counts (the least noise counts can have).
 */
import { normalQuantile, normalTwoSidedP } from './distributions';

/** A share (ratio of sums over replicates) and its variance. */
export interface ShareEstimate {
  share: number;
  variance: number;
  /** Replicates (profiles) used. */
  replicates: number;
}

/**
 * R = Σy/Σx with variance max(cluster variance, binomial floor).
 * Cluster variance: k/(k−1) · Σ (y_p − R·x_p)² / (Σx)² (Cochran, Sampling Techniques §6.3; the k/(k−1)
 * is the usual small-sample correction). Binomial floor: p̃(1−p̃)/N on the pooled counts
 * (countY of countX samples), with p̃ = (countY + ½)/(countX + 1) so that a function absent on one
 * side still has a variance.
 */
export function shareOfSums(
  ys: readonly number[],
  xs: readonly number[],
  countY: number,
  countX: number,
): ShareEstimate {
  const k = Math.min(ys.length, xs.length);
  let sumX = 0;
  let sumY = 0;
  for (let i = 0; i < k; i++) {
    sumX += xs[i] as number;
    sumY += ys[i] as number;
  }
  if (!(sumX > 0)) return { share: 0, variance: Number.POSITIVE_INFINITY, replicates: k };
  const share = sumY / sumX;
  let cluster = 0;
  if (k >= 2) {
    let ss = 0;
    for (let i = 0; i < k; i++) {
      const residual = (ys[i] as number) - share * (xs[i] as number);
      ss += residual * residual;
    }
    cluster = ((k / (k - 1)) * ss) / (sumX * sumX);
  }
  const p = (countY + 0.5) / (countX + 1);
  const binomial = countX > 0 ? (p * (1 - p)) / countX : Number.POSITIVE_INFINITY;
  return { share, variance: Math.max(cluster, binomial), replicates: k };
}

/** Cost per request of a function on one side: share × mean endpoint cost, with its variance (delta method). */
export interface FunctionCostEstimate {
  cost: number;
  variance: number;
}

/**
 * c = R·m where R is the function's share (from profiles) and m the endpoint's mean cost per request
 * (from request samples, variance varMean = s²/n). The two come from independent data, so
 * Var(c) ≈ m²·Var(R) + R²·Var(m) (+ Var(R)·Var(m), kept: it matters when both are noisy).
 */
export function costPerRequest(share: ShareEstimate, mean: number, varMean: number): FunctionCostEstimate {
  return {
    cost: share.share * mean,
    variance: mean * mean * share.variance + share.share * share.share * varMean + share.variance * varMean,
  };
}

/** The change of a function's cost per request between two sides, with a normal interval and p-value. */
export interface FunctionChange {
  delta: number;
  se: number;
  ci: [number, number];
  /** Two-sided p-value of delta = 0. */
  pValue: number;
}

export function functionChange(
  base: FunctionCostEstimate,
  head: FunctionCostEstimate,
  confidence = 0.95,
): FunctionChange {
  const delta = head.cost - base.cost;
  const se = Math.sqrt(base.variance + head.variance);
  const z = normalQuantile(1 - (1 - confidence) / 2);
  if (!(se > 0) || !Number.isFinite(se)) {
    return { delta, se, ci: [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY], pValue: 1 };
  }
  return { delta, se, ci: [delta - z * se, delta + z * se], pValue: normalTwoSidedP(delta / se) };
}
