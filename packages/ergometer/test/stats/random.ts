/** Seeded random numbers for the statistics tests: the same series on every run and machine. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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
