import { studentQuantile, studentTwoSidedP } from './distributions';
import { type Moments, mean, type RatioEstimate, ratioOfMeans, variance } from './ratio';

export interface Stratum {
  baseline: Moments;
  candidate: Moments;
}

export interface StratifiedEstimate {
  changePct: number;
  ci: [number, number];
  pValue: number;
  seLogRatio: number;
  /** Degrees of freedom of the t distribution behind ci and pValue. */
  df: number;
  /** Strata that could be estimated (both sides ≥ 2 samples, positive means). */
  used: number;
}

/**
 * One ratio of mean cost over several strata (host classes): the change common to all of them,
 * so that a shift of traffic between strata is not a change. Per stratum ln R̂_h and its delta-method
 * variance (ratioOfMeans); combined as Σ w_h ln R̂_h / Σ w_h with
 *
 *   w_h = 1 / (CV²_h · (1/n_bh + 1/n_ch)),   CV²_h from both sides pooled,
 *
 * i.e. inverse-variance weights computed from the pooled coefficient of variation rather than from
 * each side's own variance. With skewed costs a side's sample variance rises and falls with its
 * sample mean; weights taken from it would favour the strata whose candidate happened to be cheap
 * (or whose baseline happened to be dear) and make the test anti-conservative. Pooled weights do not
 * depend on which side drew what. The variance of the combination is Σ w_h² se_h² / (Σ w_h)² with
 * each stratum's own se_h, and Student t with Satterthwaite's df over the strata (each stratum's own
 * Welch df: large unless a stratum's variance comes from few time blocks). One stratum: exactly
 * ratioOfMeans.
 */
export function stratifiedRatio(strata: readonly Stratum[], confidence = 0.95): StratifiedEstimate | undefined {
  const estimates: Array<{ e: RatioEstimate; w: number }> = [];
  for (const { baseline, candidate } of strata) {
    const e = ratioOfMeans(baseline, candidate, confidence);
    if (!e) continue;
    const pooled: Moments = {
      n: baseline.n + candidate.n,
      sum: baseline.sum + candidate.sum,
      sum2: baseline.sum2 + candidate.sum2,
    };
    const cv2 = variance(pooled) / mean(pooled) ** 2;
    const w = cv2 > 0 ? 1 / (cv2 * (1 / baseline.n + 1 / candidate.n)) : 1e12;
    estimates.push({ e, w });
  }
  const only = estimates.length === 1 ? estimates[0] : undefined;
  if (only) {
    return {
      changePct: only.e.changePct,
      ci: only.e.ci,
      pValue: only.e.pValue,
      seLogRatio: only.e.seLogRatio,
      df: only.e.df,
      used: 1,
    };
  }
  if (estimates.length === 0) return undefined;
  let weightSum = 0;
  let weighted = 0;
  let variancePart = 0;
  let dfDenominator = 0;
  for (const { e, w } of estimates) {
    weightSum += w;
    weighted += w * Math.log(e.ratio);
    const part = w * w * e.seLogRatio * e.seLogRatio;
    variancePart += part;
    dfDenominator += (part * part) / e.df;
  }
  const logRatio = weighted / weightSum;
  const se = Math.sqrt(variancePart) / weightSum;
  const df = dfDenominator > 0 ? (variancePart * variancePart) / dfDenominator : 1e9;
  const t = studentQuantile(1 - (1 - confidence) / 2, df);
  return {
    changePct: (Math.exp(logRatio) - 1) * 100,
    ci: [(Math.exp(logRatio - t * se) - 1) * 100, (Math.exp(logRatio + t * se) - 1) * 100],
    pValue: se > 0 ? studentTwoSidedP(logRatio / se, df) : logRatio === 0 ? 1 : 0,
    seLogRatio: se,
    df,
    used: estimates.length,
  };
}
