import { mannWhitneyFromHistograms, type RankTestResult } from '../stats/rank';
import { blockSums, type Moments, relativeVarianceOfMean } from '../stats/ratio';
import { stratifiedRatio } from '../stats/stratified';
import { mergeHistogram } from '../store/histogram';
import type { AggregateQuery, AggregateRow, Metric, Store } from '../store/types';

/** One side of a comparison: which samples (commit, window, flag variant). */
export interface GroupSelector {
  commit?: string;
  /** Only this endpoint (the others are left out of the comparison, not merged into it). */
  endpoint?: string;
  from?: number;
  to?: number;
  flag?: { key: string; variant: string };
  /**
   * Cut the window into time blocks of this length (a multiple of a minute): the variance of each
   * endpoint's mean then also allows for costs correlated in time (stats/ratio.ts,
   * relativeVarianceOfMean). For groups of different processes or times; see {@link blockMsFor}.
   */
  blockMs?: number;
}

/** Blocks a window is cut into for the between-block variance (stats/ratio.ts MIN_BLOCKS needs 8). */
export const WINDOW_BLOCKS = 20;

/**
 * The block length for a window: a twentieth of it in whole minutes (the store's resolution), at
 * least one minute. A 6-hour window gets 18-minute blocks; one shorter than 8 minutes too few blocks
 * for their variance to be used.
 */
export function blockMsFor(from: number, to: number): number {
  return Math.max(1, Math.ceil((to - from) / WINDOW_BLOCKS / 60_000)) * 60_000;
}

/**
 * A selector read in time blocks of {@link blockMsFor} its window (unchanged without one). For every
 * comparison of different processes or hours — all rollout comparisons: the test, the canary's check, the fold into a flag
 * alert, the check that a later commit resolved it — so that costs correlated in time (a neighbour on
 * the core, a heap that grew) widen the interval instead of raising an alert (stats/ratio.ts,
 * relativeVarianceOfMean). Not for flag variants: those are requests of the same processes, interleaved.
 */
export function inBlocks(sel: GroupSelector): GroupSelector {
  if (sel.from === undefined || sel.to === undefined) return sel;
  return { ...sel, blockMs: blockMsFor(sel.from, sel.to) };
}

/** The change of one endpoint between two groups, combined over host classes. */
export interface EndpointComparison {
  endpoint: string;
  metric: Metric;
  n: { baseline: number; candidate: number };
  costMean: { baseline: number; candidate: number };
  changePct: number;
  ci: [number, number];
  pValue: number;
  /** Standard error of ln(ratio), for thresholds and minimum detectable change. */
  seLogRatio: number;
  /** Degrees of freedom of the t distribution behind ci and pValue. */
  df: number;
  hostClasses: string[];
  /**
   * Where the interval's variance came from: `requests` taken as independent, or `time-blocks` when a
   * side's costs varied between its time blocks more than independent requests allow (stats/ratio.ts,
   * relativeVarianceOfMean; only for selectors read {@link inBlocks}).
   */
  varianceFrom: 'requests' | 'time-blocks';
  /** The rank test on the pooled histograms of the compared classes: a second opinion. */
  rank: RankTestResult | undefined;
  /**
   * Rollouts: each side's effective number of processes (hosts; 1/Σ(n_h/N)²) and, when processes of
   * the same code were seen to differ, that spread (%, one standard deviation), for which the interval
   * was widened (detect/processes.ts).
   */
  processes?: { baseline: number; candidate: number; spreadPct?: number };
}

/** The samples of one stratum: moments and histogram. */
export interface Group {
  moments: Moments;
  hist: Map<number, number>;
  /** Per time block (bucket start): count and sum, when the rows were read in blocks. */
  blocks?: Map<number, { n: number; sum: number }>;
}

function emptyGroup(): Group {
  return { moments: { n: 0, sum: 0, sum2: 0 }, hist: new Map() };
}

function addRow(group: Group, row: AggregateRow, blocked: boolean): void {
  group.moments.n += row.n;
  group.moments.sum += row.sumCost;
  group.moments.sum2 += row.sumCost2;
  mergeHistogram(group.hist, row.costHist);
  if (!blocked) return;
  group.blocks ??= new Map();
  const block = group.blocks.get(row.bucket);
  if (block) {
    block.n += row.n;
    block.sum += row.sumCost;
  } else group.blocks.set(row.bucket, { n: row.n, sum: row.sumCost });
}

/** Key of one endpoint and metric: what comparisons, their checks and their hosts are matched by. */
export function endpointMetricKey(x: { endpoint: string; metric: string }): string {
  return `${x.endpoint}\u0000${x.metric}`;
}

/** Key of one stratum: costs are only compared within the same endpoint, metric and host class. */
function stratumKey(row: AggregateRow): string {
  return `${row.endpoint}\u0000${row.metric}\u0000${row.hostClass}`;
}

/**
 * The groups (one per endpoint, metric and host class) of aggregate rows grouped by endpoint and
 * host class; with `flag`, only the rows of that flag key and variant. With `blocked`, the rows are
 * time buckets (a query with bucketMs) and each group keeps its per-block sums.
 */
export function groupsFromRows(
  rows: readonly AggregateRow[],
  flag?: { key: string; variant: string },
  blocked = false,
): Map<string, Group> {
  const groups = new Map<string, Group>();
  for (const row of rows) {
    if (flag && (row.flagKey !== flag.key || row.flagVariant !== flag.variant)) continue;
    const key = stratumKey(row);
    let group = groups.get(key);
    if (!group) {
      group = emptyGroup();
      groups.set(key, group);
    }
    addRow(group, row, blocked);
  }
  for (const group of groups.values()) {
    if (group.blocks) group.moments.blocks = blockSums(group.blocks.values());
  }
  return groups;
}

async function groupsOf(store: Store, service: string, sel: GroupSelector): Promise<Map<string, Group>> {
  const query: AggregateQuery = {
    service,
    groupBy: sel.flag ? ['endpoint', 'hostClass', 'flag'] : ['endpoint', 'hostClass'],
    flags: sel.flag ? { key: sel.flag.key } : 'none',
    // The rank test reads the cost histograms; nothing here reads wall time.
    histograms: 'cost',
  };
  if (sel.commit !== undefined) query.commit = sel.commit;
  if (sel.endpoint !== undefined) query.endpoint = sel.endpoint;
  if (sel.from !== undefined) query.from = sel.from;
  if (sel.to !== undefined) query.to = sel.to;
  const blocked = sel.blockMs !== undefined && sel.blockMs > 0;
  if (blocked) query.bucketMs = sel.blockMs;
  return groupsFromRows(await store.aggregates(query), sel.flag, blocked);
}

/**
 * Compares two groups of samples per endpoint, within each host class and metric, and combines
 * the classes with {@link stratifiedRatio} (a shift of traffic between CPU models is not a change
 * in cost). Endpoints with fewer than `minSamples` on either
 * side in every class are left out.
 */
export async function compareGroups(
  store: Store,
  service: string,
  baseline: GroupSelector,
  candidate: GroupSelector,
  options: { minSamples?: number; confidence?: number } = {},
): Promise<EndpointComparison[]> {
  const [base, cand] = await Promise.all([groupsOf(store, service, baseline), groupsOf(store, service, candidate)]);
  return compareGroupMaps(base, cand, options);
}

/** {@link compareGroups} on groups already read (groupsFromRows): one query can serve many comparisons. */
export function compareGroupMaps(
  base: ReadonlyMap<string, Group>,
  cand: ReadonlyMap<string, Group>,
  options: { minSamples?: number; confidence?: number } = {},
): EndpointComparison[] {
  const minSamples = options.minSamples ?? 30;
  const confidence = options.confidence ?? 0.95;
  // endpoint+metric → strata present on both sides with enough samples.
  const byEndpoint = new Map<string, Array<{ hostClass: string; b: Group; c: Group }>>();
  for (const [key, b] of base) {
    const c = cand.get(key);
    if (!c || b.moments.n < minSamples || c.moments.n < minSamples) continue;
    const [endpoint, metric, hostClass] = key.split('\u0000') as [string, string, string];
    const endpointKey = endpointMetricKey({ endpoint, metric });
    const list = byEndpoint.get(endpointKey) ?? [];
    list.push({ hostClass, b, c });
    byEndpoint.set(endpointKey, list);
  }
  const out: EndpointComparison[] = [];
  for (const [endpointKey, strata] of byEndpoint) {
    const [endpoint, metric] = endpointKey.split('\u0000') as [string, Metric];
    const estimate = stratifiedRatio(
      strata.map((s) => ({ baseline: s.b.moments, candidate: s.c.moments })),
      confidence,
    );
    if (!estimate) continue;
    const usable = strata.filter((s) => s.b.moments.n >= 2 && s.c.moments.n >= 2);
    const nB = usable.reduce((t, s) => t + s.b.moments.n, 0);
    const nC = usable.reduce((t, s) => t + s.c.moments.n, 0);
    const sumB = usable.reduce((t, s) => t + s.b.moments.sum, 0);
    const sumC = usable.reduce((t, s) => t + s.c.moments.sum, 0);
    const { changePct, ci, pValue } = estimate;
    const se = estimate.seLogRatio;
    const histB = new Map<number, number>();
    const histC = new Map<number, number>();
    for (const s of usable) {
      mergeHistogram(histB, s.b.hist);
      mergeHistogram(histC, s.c.hist);
    }
    out.push({
      endpoint,
      metric,
      n: { baseline: nB, candidate: nC },
      costMean: { baseline: sumB / nB, candidate: sumC / nC },
      changePct,
      ci,
      pValue,
      seLogRatio: se,
      df: estimate.df,
      hostClasses: usable.map((s) => s.hostClass).sort(),
      varianceFrom: usable.some(
        (s) => relativeVarianceOfMean(s.b.moments).blocked || relativeVarianceOfMean(s.c.moments).blocked,
      )
        ? 'time-blocks'
        : 'requests',
      rank: mannWhitneyFromHistograms(histB, histC),
    });
  }
  return out.sort((a, b) => a.endpoint.localeCompare(b.endpoint) || a.metric.localeCompare(b.metric));
}
