import { chiSquareQuantile, normalQuantile } from '../stats/distributions';
import { ratioOfMeans } from '../stats/ratio';
import type { Store } from '../store/types';
import type { DetectorConfig } from './config';

export interface EndpointThreshold {
  pct: number;
  source: 'default' | 'config' | 'learnt';
}

const HOUR = 3_600_000;

/**
 * Learns how much an endpoint's mean cost moves between two windows of the *same* commit — mix
 * shifts, neighbours, caches warming — beyond what sampling error explains. A/A comparisons of
 * disjoint pairs of consecutive hours of one commit give independent ln-ratios d_i (expected 0)
 * with sampling variances s_i².
 * Cochran's heterogeneity statistic Q = Σ d_i²/s_i² is χ²_k when there is no excess; only when Q
 * exceeds its 99th percentile is there excess noise to learn, and then (DerSimonian–Laird with a
 * known zero mean)
 *
 *   τ² = (Q − k) / Σ(1/s_i²)
 *
 * Changes below z_{0.995}·τ are indistinguishable from that drift, so that is the learnt floor. The
 * heterogeneity test keeps a few noisy hours from inventing a threshold out of sampling error.
 * Returns endpoint → learnt threshold, % (only endpoints with at least 8 A/A pairs).
 */
export async function learnThresholds(
  store: Store,
  service: string,
  now: number,
  config: DetectorConfig,
  /** Only this endpoint's threshold (each endpoint's is learnt from its own hours alone). */
  endpoint?: string,
): Promise<Map<string, number>> {
  const rows = await store.aggregates({
    service,
    ...(endpoint !== undefined ? { endpoint } : {}),
    from: now - 14 * 24 * HOUR,
    to: now,
    bucketMs: HOUR,
    groupBy: ['commit', 'endpoint', 'hostClass'],
    // Only means and variances are needed here.
    histograms: 'none',
  });
  const series = new Map<string, typeof rows>();
  for (const row of rows) {
    const key = `${row.endpoint}\u0000${row.commit}\u0000${row.hostClass}\u0000${row.metric}`;
    const list = series.get(key) ?? [];
    list.push(row);
    series.set(key, list);
  }
  const pairs = new Map<string, { q: number; weights: number; count: number }>();
  for (const [key, list] of series) {
    list.sort((a, b) => a.bucket - b.bucket);
    const endpoint = key.split('\u0000')[0] as string;
    // Disjoint pairs only: consecutive pairs sharing an hour have correlated ln-ratios (−½), which
    // leaves E[Q] = k but makes Var(Q) 3k instead of the χ²_k's 2k, so the 99% heterogeneity test
    // fired on pure sampling noise and learnt thresholds of ~3% (found by the detection simulator).
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1];
      const b = list[i];
      if (!a || !b || b.bucket - a.bucket !== HOUR) continue;
      if (a.n < config.minSamples || b.n < config.minSamples) continue;
      i++;
      const e = ratioOfMeans(
        { n: a.n, sum: a.sumCost, sum2: a.sumCost2 },
        { n: b.n, sum: b.sumCost, sum2: b.sumCost2 },
      );
      if (!e) continue;
      if (!(e.seLogRatio > 0)) continue;
      const acc = pairs.get(endpoint) ?? { q: 0, weights: 0, count: 0 };
      const w = 1 / e.seLogRatio ** 2;
      acc.q += Math.log(e.ratio) ** 2 * w;
      acc.weights += w;
      acc.count += 1;
      pairs.set(endpoint, acc);
    }
  }
  const z = normalQuantile(0.995);
  const learnt = new Map<string, number>();
  for (const [endpoint, acc] of pairs) {
    if (acc.count < 8) continue;
    if (acc.q <= chiSquareQuantile(0.99, acc.count)) {
      learnt.set(endpoint, 0);
      continue;
    }
    const tau = Math.sqrt((acc.q - acc.count) / acc.weights);
    learnt.set(endpoint, (Math.exp(z * tau) - 1) * 100);
  }
  return learnt;
}

/** The threshold an endpoint's alert must exceed: configured, else max(default, learnt). */
export function thresholdFor(
  service: string,
  endpoint: string,
  config: DetectorConfig,
  learnt: ReadonlyMap<string, number>,
): EndpointThreshold {
  const configured = config.thresholds[service]?.[endpoint];
  if (configured !== undefined) return { pct: configured, source: 'config' };
  const fromNoise = learnt.get(endpoint);
  if (fromNoise !== undefined && fromNoise > config.minEffectPct) return { pct: fromNoise, source: 'learnt' };
  return { pct: config.minEffectPct, source: 'default' };
}
