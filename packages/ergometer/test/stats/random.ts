import { seededRandom } from '../../src/stats/random';

export { seededRandom };

export function normalSampler(random: () => number): () => number {
  return () => {
    const u = 1 - random();
    const v = random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

/** Log-normal costs with median `median` and log-sd `sigma` (request costs are roughly this shape). */
export function logNormalSampler(random: () => number, median: number, sigma: number): () => number {
  const normal = normalSampler(random);
  return () => median * Math.exp(sigma * normal());
}

/** Pareto (type I) with scale `xm` and tail index `alpha` (heavy tail; finite variance for alpha > 2). */
export function paretoSampler(random: () => number, xm: number, alpha: number): () => number {
  return () => xm / (1 - random()) ** (1 / alpha);
}
