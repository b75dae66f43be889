import { logNormalSampler, normalSampler, seededRandom } from '../../src/stats/random';

export { logNormalSampler, normalSampler, seededRandom };

/** Pareto (type I) with scale `xm` and tail index `alpha` (heavy tail; finite variance for alpha > 2). */
export function paretoSampler(random: () => number, xm: number, alpha: number): () => number {
  return () => xm / (1 - random()) ** (1 / alpha);
}
