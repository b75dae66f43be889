import { chiSquareQuantile, studentQuantile, studentTwoSidedP } from './distributions';

/**
 * What the store's aggregates give for one group of samples: count, sum and sum of squares of
 * the per-request cost. Enough for the mean, its variance and everything below.
 */
export interface Moments {
  n: number;
  sum: number;
  sum2: number;
  /**
   * The same samples cut into consecutive time blocks, when the caller has them: then the variance
   * of the mean also allows for costs that are correlated in time ({@link relativeVarianceOfMean}).
   */
  blocks?: BlockSums;
}

/**
 * Sums over the time blocks of one group: block b holds n_b samples costing S_b in all. Enough for
 * the between-block (cluster-robust) variance of the group's mean, and additive over disjoint blocks.
 */
export interface BlockSums {
  /** Blocks holding at least one sample. */
  count: number;
  /** Σ S_b² */
  sumS2: number;
  /** Σ S_b·n_b */
  sumSN: number;
  /** Σ n_b² */
  sumN2: number;
}

/** Blocks a group needs before their variance is used: fewer say too little about it (df = blocks − 1). */
export const MIN_BLOCKS = 8;

/** The block sums of (n_b, S_b) pairs, one per non-empty block. */
export function blockSums(blocks: Iterable<{ n: number; sum: number }>): BlockSums {
  const out: BlockSums = { count: 0, sumS2: 0, sumSN: 0, sumN2: 0 };
  for (const { n, sum } of blocks) {
    if (!(n > 0)) continue;
    out.count++;
    out.sumS2 += sum * sum;
    out.sumSN += sum * n;
    out.sumN2 += n * n;
  }
  return out;
}

/**
 * Var(x̄)/x̄², the relative variance of a group's mean cost, and its degrees of freedom.
 *
 * Treating requests as independent gives s²/(n·x̄²) with n − 1 df. Costs measured in CPU time are
 * not independent in time: a process that shares its core with a busy neighbour, a garbage
 * collector's heap state, a cache that warms — each makes every request of a stretch dearer or
 * cheaper together, and the window sampler takes requests in bursts by design. Then s²/n
 * understates the variance of the mean: on the demo's two-core machine by 2–7× (docs/MATH.md,
 * "Costs correlated in time"), enough for two processes of one commit to differ "significantly".
 * With block sums the between-block (cluster-robust, ratio-estimator) variance
 *
 *   V_B = B/(B−1) · Σ_b (S_b − x̄·n_b)² / (n·x̄)²,   B − 1 df
 *
 * measures the noise at the blocks' time scale whatever its source. It is used where the blocks
 * differ more than independent samples let them: (B−1)·V_B/V > χ²_{B−1}(0.99), the heterogeneity test
 * learnThresholds uses too. Always taking the larger of the two would cost power on independent costs
 * (V_B from 20 blocks scatters by ±30%, so the max is biased up, and has B − 1 df): it moved a +6%
 * change across the line in the detector tests, and a test at 0.90 took the rollout test's power at
 * its design sample size from 91% to 88%; at 0.99 it stays at 90% (docs/MATH.md). Fewer than
 * MIN_BLOCKS blocks: V.
 */
export function relativeVarianceOfMean(m: Moments): { relVar: number; df: number; blocked: boolean } {
  const mu = mean(m);
  const independent = variance(m) / (m.n * mu * mu);
  const b = m.blocks;
  if (b === undefined || b.count < MIN_BLOCKS) return { relVar: independent, df: m.n - 1, blocked: false };
  const spread = Math.max(0, b.sumS2 - 2 * mu * b.sumSN + mu * mu * b.sumN2);
  const between = ((b.count / (b.count - 1)) * spread) / (m.n * m.n * mu * mu);
  const heterogeneous = (b.count - 1) * between > chiSquareQuantile(0.99, b.count - 1) * independent;
  return heterogeneous
    ? { relVar: between, df: b.count - 1, blocked: true }
    : { relVar: independent, df: m.n - 1, blocked: false };
}

export function mean(m: Moments): number {
  return m.n > 0 ? m.sum / m.n : Number.NaN;
}

/** Unbiased sample variance from sums (clamped at 0 against rounding). */
export function variance(m: Moments): number {
  if (m.n < 2) return Number.NaN;
  return Math.max(0, (m.sum2 - (m.sum * m.sum) / m.n) / (m.n - 1));
}

/** Combines moments (sums add; block sums are not kept: the two groups' blocks may overlap in time). */
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
 * with Welch–Satterthwaite degrees of freedom; a side with block sums may use its between-block
 * variance instead ({@link relativeVarianceOfMean}). It estimates exactly the quantity capacity is paid
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
  // Relative variance of each mean: Var(x̄)/x̄², from blocks where they say it is larger.
  const b = relativeVarianceOfMean(baseline);
  const c = relativeVarianceOfMean(candidate);
  const relVarB = b.relVar;
  const relVarC = c.relVar;
  const varLog = relVarB + relVarC;
  const logRatio = Math.log(meanC / meanB);
  const se = Math.sqrt(varLog);
  // Welch–Satterthwaite on the two relative variances.
  const df =
    varLog > 0
      ? (varLog * varLog) / ((relVarB * relVarB) / b.df + (relVarC * relVarC) / c.df)
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
