/**
 * Seeded pseudo-random numbers (mulberry32: 32-bit state, passes the usual smoke tests, fast).
 * For simulations and test data that must be the same on every run and machine — never for
 * anything that needs unpredictability.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal draws (Box–Muller, the cosine half) from a uniform generator. */
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
