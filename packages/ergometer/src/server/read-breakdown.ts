/**
 * Read routes the dashboard needs beyond SPEC §6's first list, each one store aggregate query
 * (never raw samples, so they stay fast over millions of samples):
 *
 * - `GET /v1/breakdown?service=S[&endpoint=E][&commit=C][&metric=M][&from&to]`: cost per request
 *   by flag variant and by host class, of one endpoint or of all merged.
 * - `GET /v1/distribution?service=S&endpoint=E[&commit=C][&flag=K&variant=V][&metric=M][&from&to]`:
 *   the cost histogram of one endpoint (for two commits' distributions overlaid).
 * - `GET /v1/timeseries?…&groupBy=commit,endpoint,hostClass|none`: which dimensions stay apart;
 *   `&quantiles=all|cost|none`: which quantiles to compute (the others are null).
 * - `GET /v1/compare?service=S&commit=C&flag=K&baseVariant=V1&headVariant=V2`: two variants of a
 *   flag within one commit, besides `base`/`head` commits.
 */
import type { GroupSelector } from '../detect/compare';
import { badRequest } from '../errors';
import { binBounds, quantile } from '../store/histogram';
import type { AggregateQuery, AggregateRow, Metric, Store } from '../store/types';
import type { QueryParams } from './query';

/** Cost per request of one group of samples (a flag variant, a host class). Costs in metric units, times in ms. */
export interface BreakdownRow {
  metric: Metric;
  samples: number;
  requests: number;
  costMean: number;
  costP50: number;
  costP95: number;
  wallP50: number;
  wallP95: number;
}

export interface Breakdown {
  /** null: every endpoint of the service merged. */
  endpoint: string | null;
  /** One row per flag key and variant seen on the endpoint's samples. */
  flags: Array<BreakdownRow & { key: string; variant: string }>;
  /** One row per host class (CPU model class; '' when the agent did not say). */
  hostClasses: Array<BreakdownRow & { hostClass: string }>;
}

export interface Distribution {
  endpoint: string;
  commit: string | null;
  metric: Metric | null;
  samples: number;
  costMean: number | null;
  /** Histogram bins in ascending order: [lo, hi) in metric units, and the number of samples. */
  bins: Array<{ lo: number; hi: number; count: number }>;
}

function statsOf(row: AggregateRow): BreakdownRow {
  return {
    metric: row.metric,
    samples: row.n,
    requests: row.weight,
    costMean: row.sumCost / row.n,
    costP50: quantile(row.costHist, 0.5),
    costP95: quantile(row.costHist, 0.95),
    wallP50: quantile(row.wallHist, 0.5),
    wallP95: quantile(row.wallHist, 0.95),
  };
}

/** The filters every route here shares: service, endpoint, optional commit, metric and range. */
function endpointQuery(q: QueryParams, endpointRequired = true): AggregateQuery {
  const query: AggregateQuery = { service: q.name('service'), ...q.range() };
  const endpoint = endpointRequired ? q.name('endpoint') : q.optionalName('endpoint');
  if (endpoint !== undefined) query.endpoint = endpoint;
  const commit = q.optionalName('commit');
  if (commit !== undefined) query.commit = commit;
  const metric = q.metric(false);
  if (metric !== undefined) query.metric = metric;
  return query;
}

/** `GET /v1/breakdown`: two aggregate queries (by flag, by host class), no raw samples. */
export async function breakdown(store: Store, q: QueryParams): Promise<Breakdown> {
  const base = endpointQuery(q, false);
  const [flagRows, classRows] = await Promise.all([
    store.aggregates({ ...base, flags: 'all', groupBy: ['flag'] }),
    store.aggregates({ ...base, groupBy: ['hostClass'] }),
  ]);
  return {
    endpoint: base.endpoint ?? null,
    flags: flagRows
      .filter((row) => row.flagKey !== '' && row.n > 0)
      .map((row) => ({ key: row.flagKey, variant: row.flagVariant, ...statsOf(row) }))
      .sort((a, b) => a.key.localeCompare(b.key) || b.samples - a.samples || a.variant.localeCompare(b.variant)),
    hostClasses: classRows
      .filter((row) => row.n > 0)
      .map((row) => ({ hostClass: row.hostClass, ...statsOf(row) }))
      .sort((a, b) => b.samples - a.samples || a.hostClass.localeCompare(b.hostClass)),
  };
}

/**
 * `GET /v1/distribution`: the endpoint's cost histogram (the store's mergeable log-linear bins,
 * ≈ 4.4% wide). With several metrics stored, the one with the most samples unless `metric` is given.
 */
export async function distribution(store: Store, q: QueryParams): Promise<Distribution> {
  const query = endpointQuery(q);
  const flag = q.optionalName('flag');
  const variant = q.optionalName('variant');
  if ((flag === undefined) !== (variant === undefined)) {
    throw badRequest('ERGOMETER_BAD_QUERY', 'flag, variant: give both (the flag key and the variant) or neither');
  }
  if (flag !== undefined) query.flags = { key: flag };
  query.groupBy = flag !== undefined ? ['flag'] : [];
  query.histograms = 'cost';
  const rows = (await store.aggregates(query)).filter(
    (row) => row.n > 0 && (variant === undefined || row.flagVariant === variant),
  );
  const row = rows.sort((a, b) => b.n - a.n)[0];
  const bins = row
    ? [...row.costHist.entries()]
        .filter(([, count]) => count > 0)
        .sort((a, b) => a[0] - b[0])
        .map(([bin, count]) => {
          const [lo, hi] = binBounds(bin);
          return { lo, hi, count };
        })
    : [];
  return {
    endpoint: query.endpoint as string,
    commit: query.commit ?? null,
    metric: row?.metric ?? null,
    samples: row?.n ?? 0,
    costMean: row ? row.sumCost / row.n : null,
    bins,
  };
}

/**
 * `quantiles` of `GET /v1/timeseries`: `all` (default) every quantile, `cost` the cost quantiles
 * only, `none` means only. A quantile left out is null; leaving them out spares the store merging
 * histograms, most of the cost of a series over many buckets (the Overview's sparklines ask for none).
 */
export function timeseriesQuantiles(q: QueryParams): NonNullable<AggregateQuery['histograms']> {
  const value = q.optionalName('quantiles', 16);
  if (value === undefined || value === 'all') return 'all';
  if (value === 'cost' || value === 'none') return value;
  throw badRequest('ERGOMETER_BAD_QUERY', `quantiles: expected "all", "cost" or "none"; got ${JSON.stringify(value)}`);
}

const TIMESERIES_DIMENSIONS = new Set(['commit', 'endpoint', 'hostClass']);

/** `groupBy` of `GET /v1/timeseries`: a comma list of commit, endpoint, hostClass, or `none`; undefined when absent. */
export function timeseriesGroupBy(q: QueryParams): AggregateQuery['groupBy'] | undefined {
  const value = q.optionalName('groupBy', 64);
  if (value === undefined) return undefined;
  if (value === 'none') return [];
  const parts = value.split(',');
  for (const part of parts) {
    if (!TIMESERIES_DIMENSIONS.has(part)) {
      throw badRequest(
        'ERGOMETER_BAD_QUERY',
        `groupBy: expected "none" or a comma list of commit, endpoint, hostClass; got ${JSON.stringify(part.slice(0, 40))}`,
      );
    }
  }
  return [...new Set(parts)] as AggregateQuery['groupBy'];
}

/**
 * The two sides of `GET /v1/compare`: `base` and `head` commits, or, with `flag`, two variants
 * (`baseVariant`, `headVariant`) of that flag within `commit` (the same parameters as
 * `GET /v1/profiles/diff`).
 */
export function compareSides(q: QueryParams): [GroupSelector, GroupSelector] {
  const flag = q.optionalName('flag');
  if (flag === undefined) return [{ commit: q.name('base') }, { commit: q.name('head') }];
  const commit = q.name('commit');
  return [
    { commit, flag: { key: flag, variant: q.name('baseVariant') } },
    { commit, flag: { key: flag, variant: q.name('headVariant') } },
  ];
}
