import { normalTwoSidedP } from './distributions';

export interface RankTestResult {
  /** Mann–Whitney U of the candidate group. */
  u: number;
  /** P(candidate > baseline) + ½ P(equal): 0.5 means no shift. */
  probabilityOfSuperiority: number;
  z: number;
  pValue: number;
}

/**
 * Mann–Whitney U (Wilcoxon rank-sum) test computed from two binned histograms, as stored by the
 * aggregates (bin → count). Values in the same bin are ties and get mid-ranks; the variance uses
 * the tie correction. Normal approximation (the detectors only run it with dozens of samples or
 * more). A robustness check beside {@link ratioOfMeans}: a shift of the whole distribution, not
 * a few extreme requests, moves it.
 */
export function mannWhitneyFromHistograms(
  baseline: ReadonlyMap<number, number>,
  candidate: ReadonlyMap<number, number>,
): RankTestResult | undefined {
  const bins = [...new Set([...baseline.keys(), ...candidate.keys()])].sort((a, b) => a - b);
  let nB = 0;
  let nC = 0;
  for (const c of baseline.values()) nB += c;
  for (const c of candidate.values()) nC += c;
  if (nB === 0 || nC === 0) return undefined;
  const total = nB + nC;
  let rankBase = 0;
  let rankSumC = 0;
  let tieTerm = 0;
  for (const bin of bins) {
    const b = baseline.get(bin) ?? 0;
    const c = candidate.get(bin) ?? 0;
    const t = b + c;
    if (t === 0) continue;
    const midRank = rankBase + (t + 1) / 2;
    rankSumC += c * midRank;
    tieTerm += t * t * t - t;
    rankBase += t;
  }
  const u = rankSumC - (nC * (nC + 1)) / 2;
  const meanU = (nB * nC) / 2;
  const varU = ((nB * nC) / 12) * (total + 1 - tieTerm / (total * (total - 1)));
  const z = varU > 0 ? (u - meanU) / Math.sqrt(varU) : 0;
  return { u, probabilityOfSuperiority: u / (nB * nC), z, pValue: varU > 0 ? normalTwoSidedP(z) : 1 };
}
