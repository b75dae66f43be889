import { studentQuantile, studentTwoSidedP } from './distributions';

/**
 * What the store's aggregates give for one group of samples: count, sum and sum of squares of
 * the per-request cost. Enough for the mean, its variance and everything below.
 */
export interface Moments {
  n: number;
  sum: number;
  sum2: number;
}

export function mean(m: Moments): number {
  return m.n > 0 ? m.sum / m.n : Number.NaN;
}

/** Unbiased sample variance from sums (clamped at 0 against rounding). */
export function variance(m: Moments): number {
  if (m.n < 2) return Number.NaN;
  return Math.max(0, (m.sum2 - (m.sum * m.sum) / m.n) / (m.n - 1));
}

/** Combines moments (sums add). */
export function addMoments(a: Moments, b: Moments): Moments {
  return { n: a.n + b.n, sum: a.sum + b.sum, sum2: a.sum2 + b.sum2 };
}

export interface RatioEstimate {
  /** mean(candidate) / mean(baseline). */
  ratio: number;
  /** (ratio − 1) × 100. */
  changePct: number;
  /** Confidence interval of changePct at `confidence`. */
  ci: [number, number];
  /** Two-sided p-value of "the means are equal". */
  pValue: number;
  /** Standard error of ln(ratio). */
  seLogRatio: number;
  /** Welch–Satterthwaite degrees of freedom used for the t quantile and the p-value. */
  df: number;
  confidence: number;
}

/**
 * Ratio of mean cost per request, candidate over baseline, with a confidence interval and a
 * p-value. Delta method on the log of the ratio:
 *
 *   ln R̂ = ln x̄_c − ln x̄_b,   Var(ln R̂) ≈ s_c² / (n_c x̄_c²) + s_b² / (n_b x̄_b²)
 *
 * with Welch–Satterthwaite degrees of freedom. It estimates exactly the quantity capacity is paid
 * in (mean cost per request, not a median or a geometric mean), needs only count/sum/sum² (so it
 * runs on the store's aggregates), and working on the log scale keeps the interval asymmetric the
 * way a ratio's is. docs/MATH.md shows its calibration on skewed, heavy-tailed simulated costs and
 * why it was chosen over a log-normal (Cox) estimator and the bootstrap.
 *
 * Returns undefined when either group has fewer than two samples or a non-positive mean.
 */
export function ratioOfMeans(baseline: Moments, candidate: Moments, confidence = 0.95): RatioEstimate | undefined {
  if (baseline.n < 2 || candidate.n < 2) return undefined;
  const meanB = mean(baseline);
  const meanC = mean(candidate);
  if (!(meanB > 0 && meanC > 0)) return undefined;
  // Relative variance of each mean: Var(x̄)/x̄².
  const relVarB = variance(baseline) / (baseline.n * meanB * meanB);
  const relVarC = variance(candidate) / (candidate.n * meanC * meanC);
  const varLog = relVarB + relVarC;
  const logRatio = Math.log(meanC / meanB);
  const se = Math.sqrt(varLog);
  // Welch–Satterthwaite on the two relative variances.
  const df =
    varLog > 0
      ? (varLog * varLog) / ((relVarB * relVarB) / (baseline.n - 1) + (relVarC * relVarC) / (candidate.n - 1))
      : Number.POSITIVE_INFINITY;
  const dfUsed = Number.isFinite(df) ? df : 1e9;
  let pValue: number;
  let half: number;
  if (se === 0) {
    pValue = logRatio === 0 ? 1 : 0;
    half = 0;
  } else {
    pValue = studentTwoSidedP(logRatio / se, dfUsed);
    half = studentQuantile(1 - (1 - confidence) / 2, dfUsed) * se;
  }
  const ratio = Math.exp(logRatio);
  return {
    ratio,
    changePct: (ratio - 1) * 100,
    ci: [(Math.exp(logRatio - half) - 1) * 100, (Math.exp(logRatio + half) - 1) * 100],
    pValue,
    seLogRatio: se,
    df: dfUsed,
    confidence,
  };
}

/**
 * The smallest change (in %) the test can detect with the given power at significance `alpha`,
 * for groups like these: |ln(1 + δ)| = (z_{1−α/2} + z_{power}) · se. Used to say "no alert, but
 * also not enough samples to see a change below X%", and to learn thresholds from noise.
 */
export function minimumDetectableChangePct(seLogRatio: number, alpha = 0.05, power = 0.8): number {
  const zAlpha = studentQuantile(1 - alpha / 2, 1e9);
  const zPower = studentQuantile(power, 1e9);
  return (Math.exp((zAlpha + zPower) * seLogRatio) - 1) * 100;
}
