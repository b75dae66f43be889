/**
 * `Store.hostMoments` as both backends run it: the bucket width it asks for, and its rows from the same
 * column names (`commit` is `commit_id` in DuckDB, where COMMIT is a keyword), as profile-rows.ts does
 * for the profile sums.
 */
import type { HostMomentsQuery, HostMomentsRow, Metric } from './types';

/** The bucket width a host-moments query asked for, as a whole number of ms (0: one bucket). */
export function hostBucketMs(q: HostMomentsQuery): number {
  return Math.max(0, Math.floor(q.bucketMs ?? 0) || 0);
}

/** A `hostMoments` row from columns endpoint, metric, host_class, host, bucket, n, sum_cost, sum_cost2, first_ts, last_ts. */
export function hostMomentsRow(r: Record<string, unknown>, commitColumn = 'commit'): HostMomentsRow {
  return {
    commit: String(r[commitColumn]),
    endpoint: String(r.endpoint),
    metric: String(r.metric) as Metric,
    hostClass: String(r.host_class),
    host: String(r.host),
    bucket: Number(r.bucket),
    n: Number(r.n),
    sumCost: Number(r.sum_cost),
    sumCost2: Number(r.sum_cost2),
    firstTs: Number(r.first_ts),
    lastTs: Number(r.last_ts),
  };
}
