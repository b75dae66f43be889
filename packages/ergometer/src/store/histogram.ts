/**
 * The mergeable histogram every backend stores for cost and wall time: log-linear bins of
 * width 2^(1/16) (≈ 4.4%), so a quantile read from bins is within ≈ 2.2% of the exact one
 * whatever the scale (ns or instructions), and two histograms merge by adding counts.
 *
 * bin(v) = 0 for v < 1, else floor(16 · log2(v)) + 1. Values up to 2^64 fit in ~1025 bins.
 */

const BINS_PER_OCTAVE = 16;

export function binOf(value: number): number {
  if (!(value >= 1)) return 0;
  return Math.floor(BINS_PER_OCTAVE * Math.log2(value)) + 1;
}

/** Lower and upper edge of a bin. Bin 0 holds [0, 1). */
export function binBounds(bin: number): [number, number] {
  if (bin <= 0) return [0, 1];
  return [2 ** ((bin - 1) / BINS_PER_OCTAVE), 2 ** (bin / BINS_PER_OCTAVE)];
}

/** Representative value of a bin: the geometric middle (relative error ≤ 2.2% for any value in it). */
export function binValue(bin: number): number {
  if (bin <= 0) return 0.5;
  return 2 ** ((bin - 0.5) / BINS_PER_OCTAVE);
}

/** Adds `from` into `into` (in place) and returns `into`. */
export function mergeHistogram(into: Map<number, number>, from: ReadonlyMap<number, number>): Map<number, number> {
  for (const [bin, count] of from) into.set(bin, (into.get(bin) ?? 0) + count);
  return into;
}

/** The q-quantile (0..1) of a histogram, or NaN when it is empty. */
export function quantile(hist: ReadonlyMap<number, number>, q: number): number {
  let total = 0;
  for (const count of hist.values()) total += count;
  if (total === 0) return Number.NaN;
  const bins = [...hist.keys()].sort((a, b) => a - b);
  const rank = q * total;
  let seen = 0;
  for (const bin of bins) {
    seen += hist.get(bin) ?? 0;
    if (seen >= rank && seen > 0) return binValue(bin);
  }
  return binValue(bins[bins.length - 1] ?? 0);
}
