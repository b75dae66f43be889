import { normalQuantile } from '../stats/distributions';
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
 * consecutive hours of one commit give ln-ratios d_i with sampling variances se_i²; the excess
 * variance is estimated by the method of moments (as DerSimonian–Laird's τ²):
 *
 *   τ² = max(0, mean(d_i²) − mean(se_i²))
 *
 * and changes below z_{0.995}·τ are indistinguishable from that drift, so that is the learnt floor.
 * Returns endpoint → learnt threshold, % (only endpoints with at least 8 A/A pairs).
 */
export async function learnThresholds(
  store: Store,
  service: string,
  now: number,
  config: DetectorConfig,
): Promise<Map<string, number>> {
  const rows = await store.aggregates({
    service,
    from: now - 14 * 24 * HOUR,
    to: now,
    bucketMs: HOUR,
    groupBy: ['commit', 'endpoint', 'hostClass'],
  });
  const series = new Map<string, typeof rows>();
  for (const row of rows) {
    const key = `${row.endpoint}\u0000${row.commit}\u0000${row.hostClass}\u0000${row.metric}`;
    const list = series.get(key) ?? [];
    list.push(row);
    series.set(key, list);
  }
  const pairs = new Map<string, { d2: number; se2: number; count: number }>();
  for (const [key, list] of series) {
    list.sort((a, b) => a.bucket - b.bucket);
    const endpoint = key.split('\u0000')[0] as string;
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1];
      const b = list[i];
      if (!a || !b || b.bucket - a.bucket !== HOUR) continue;
      if (a.n < config.minSamples || b.n < config.minSamples) continue;
      const e = ratioOfMeans(
        { n: a.n, sum: a.sumCost, sum2: a.sumCost2 },
        { n: b.n, sum: b.sumCost, sum2: b.sumCost2 },
      );
      if (!e) continue;
      const acc = pairs.get(endpoint) ?? { d2: 0, se2: 0, count: 0 };
      acc.d2 += Math.log(e.ratio) ** 2;
      acc.se2 += e.seLogRatio ** 2;
      acc.count += 1;
      pairs.set(endpoint, acc);
    }
  }
  const z = normalQuantile(0.995);
  const learnt = new Map<string, number>();
  for (const [endpoint, acc] of pairs) {
    if (acc.count < 8) continue;
    const tau = Math.sqrt(Math.max(0, acc.d2 / acc.count - acc.se2 / acc.count));
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
