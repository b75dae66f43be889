import { decodeUsersSketch, estimateDistinctUsers, mergeUsersSketches } from '@ergometer/agent/users-sketch';
import type { Metric, Store } from '../store/types';

const MINUTE = 60_000;
const DAY = 86_400_000;

/** One day of the fleet-level number Instagram tracked: CPU cost per active user at the peak minute. */
export interface EfficiencyDay {
  /** Start of the UTC day, ms. */
  day: number;
  metric: Metric;
  /** The minute with the most distinct users (from the merged sketches of every process). */
  peakMinute: number;
  activeUsers: number;
  /** Requests in the peak minute, every request (from `counts`), all endpoints. */
  requests: number;
  /** Estimated CPU cost of the peak minute: Σ over endpoints of its requests × the day's mean cost per request. */
  cost: number;
  costPerUser: number;
  /** Change of costPerUser against the previous day in the result, %, or null. */
  changePct: number | null;
}

/**
 * Per service and UTC day: find the minute with the most active users (HyperLogLog sketches
 * merged across processes), and divide the CPU that minute cost by those users. The minute's
 * cost uses every request (counts) priced at each endpoint's mean cost per request over the day
 * (samples are too few in one minute to price it alone). Days without users or counts are left out.
 */
export async function efficiencyByDay(
  store: Store,
  service: string,
  range: { from: number; to: number },
): Promise<EfficiencyDay[]> {
  const days: EfficiencyDay[] = [];
  for (let day = Math.floor(range.from / DAY) * DAY; day < range.to; day += DAY) {
    const users = await store.users({ service, from: day, to: day + DAY });
    let peak: { minute: number; users: number } | undefined;
    for (const row of users) {
      // Sketches are decoded at ingest; one stored before that check (or by another writer) that
      // does not decode is left out of its minute rather than failing the whole answer.
      const sketches = row.sketches.flatMap((text) => {
        try {
          return [decodeUsersSketch(text)];
        } catch {
          return [];
        }
      });
      if (sketches.length === 0) continue;
      const merged = mergeUsersSketches(sketches[0] as (typeof sketches)[number], ...sketches.slice(1));
      const estimate = estimateDistinctUsers(merged);
      if (!peak || estimate > peak.users) peak = { minute: row.minute, users: estimate };
    }
    if (!peak || peak.users < 1) continue;
    const [counts, endpoints] = await Promise.all([
      store.counts({ service, from: peak.minute, to: peak.minute + MINUTE }),
      // Means only: merging the day's histograms for quantiles was most of this read.
      store.aggregates({ service, from: day, to: day + DAY, groupBy: ['endpoint'], histograms: 'none' }),
    ]);
    // One metric per service-day: the one with the most samples (costs of two metrics never add up).
    const byMetric = new Map<Metric, number>();
    for (const e of endpoints) byMetric.set(e.metric, (byMetric.get(e.metric) ?? 0) + e.n);
    const metric = [...byMetric.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
    if (metric === undefined) continue;
    const meanCost = new Map(
      endpoints.filter((e) => e.metric === metric && e.n > 0).map((e) => [e.endpoint, e.sumCost / e.n]),
    );
    let requests = 0;
    let cost = 0;
    for (const c of counts) {
      requests += c.requests;
      cost += c.requests * (meanCost.get(c.endpoint) ?? 0);
    }
    if (requests === 0) continue;
    const costPerUser = cost / peak.users;
    const previous = days[days.length - 1];
    days.push({
      day,
      metric,
      peakMinute: peak.minute,
      activeUsers: Math.round(peak.users),
      requests,
      cost,
      costPerUser,
      changePct:
        previous && previous.metric === metric && previous.day === day - DAY
          ? (costPerUser / previous.costPerUser - 1) * 100
          : null,
    });
  }
  return days;
}
