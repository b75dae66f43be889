import { studentQuantile, studentTwoSidedP } from '../stats/distributions';
import { mean, relativeVarianceOfMean } from '../stats/ratio';
import type { HostMomentsRow, Metric, Store } from '../store/types';
import { compareGroups, type EndpointComparison, endpointMetricKey, type GroupSelector } from './compare';
import type { DetectorConfig } from './config';

const HOUR = 3_600_000;

/** A host's samples in one hour of one commit and endpoint count towards the spread from this many on. */
export const MIN_HOST_HOUR_SAMPLES = 100;
/**
 * …and only when they span the hour: the first within its first tenth, the last within its last. A host
 * deployed (or replaced) during the hour served only part of it, and the part is a different time: in
 * the demo, a host's last minutes on the old commit beside another's first minutes under the next
 * phase's heavier load differed by 17–24% on every endpoint and taught a spread of 8.6% that two
 * processes of that commit serving the same minutes never showed.
 */
export const HOUR_SPAN_SLACK = 0.1;

/**
 * How much processes (hosts) running the same code differ in mean cost, beyond sampling error: the
 * variance τ² of ln(a host's mean) around the mean of all the hosts of its commit. On one machine two
 * processes of the same build differed by up to ~10% in V8's inline-cache runtime alone (docs/agent.md,
 * "Overhead"); a host has its own neighbours, CPU, heap and JIT history. A comparison of two commits
 * whose samples come from one process each cannot tell such a difference from a change in the code.
 */
export interface ProcessSpread {
  /** τ², variance of ln(host mean) between hosts of the same commit (0: none beyond sampling error). */
  tau2: number;
  /** Degrees of freedom it was learnt from: Σ (hosts − 1) over the cells compared. */
  df: number;
}

/**
 * Learns each metric's {@link ProcessSpread} for a service from the hosts that ran the same commit at
 * the same time (the same hour's traffic and code on every host, so what differs is the process):
 * cells of one commit, endpoint, metric, host class and hour, each host in a cell with at least
 * {@link MIN_HOST_HOUR_SAMPLES} samples that span the hour ({@link HOUR_SPAN_SLACK}; raw samples of the
 * last day's whole hours, store.hostMoments, each hour read once).
 * In a cell, y_h = ln(host mean) with delta-method variance v_h and w_h = 1/v_h; Cochran's
 *
 *   Q = Σ w_h (y_h − ȳ_w)²,  χ²_{H−1} when hosts differ only by sampling error,
 *
 * summed over the cells (one τ² for the service's endpoints: a process that is slower is mostly slower
 * at everything), and DerSimonian–Laird's moment estimator: τ² = max(0, (ΣQ − Σdf) / Σ(Σw − Σw²/Σw)).
 *
 * No heterogeneity test gates it (unlike the learnt thresholds): a spread the test misses is a τ² of 0.
 * Measured on one-process canaries with 3% between processes, gated at 99% / ungated: 71 / 22 false
 * alerts per 1000 with the spread learnt from four hosts, 7.0 / 3.3 from sixteen; where processes agree,
 * the same power (docs/benchmarks.md, "Canaries on few processes"; docs/MATH.md §6b). Hours of one pair
 * of processes repeat the same difference, so τ² from one pair is an estimate with about one degree of
 * freedom whatever its hours; a fleet with many hosts per commit learns it well.
 */
export async function learnProcessSpread(
  store: Store,
  service: string,
  now: number,
  config: DetectorConfig,
): Promise<Map<Metric, ProcessSpread>> {
  // Whole hours that have passed, each read once (hourSums): after the first run, one new hour an hour.
  const to = Math.floor(now / HOUR) * HOUR;
  const from = to - Math.ceil(Math.min(config.lookbackMs, SPREAD_WINDOW_MS) / HOUR) * HOUR;
  const sums = await hourSums(store, service, from, to);
  const pooled = new Map<Metric, CellSums>();
  for (let hour = from; hour < to; hour += HOUR) {
    for (const [metric, add] of sums.get(hour) ?? []) pooled.set(metric, addSums(pooled.get(metric), add));
  }
  return spreadFromSums(pooled);
}

/** The hours the spread is learnt from: the last day's (a day of a fleet's hosts is plenty; more costs reads). */
export const SPREAD_WINDOW_MS = 24 * HOUR;

/** Cochran's Q, its degrees of freedom and DerSimonian–Laird's denominator, summed over cells. */
interface CellSums {
  q: number;
  df: number;
  c: number;
}

function addSums(a: CellSums | undefined, b: CellSums): CellSums {
  return a ? { q: a.q + b.q, df: a.df + b.df, c: a.c + b.c } : { ...b };
}

/** Per store and service: each past hour's sums by metric (an hour with nothing to compare: an empty map). */
const hourCaches = new WeakMap<Store, Map<string, Map<number, Map<Metric, CellSums>>>>();

/**
 * The sums of the hours [from, to), reading only the hours not read before, in one query (at start
 * the whole window, then the hour that has just passed); hours before `from` are forgotten.
 */
async function hourSums(
  store: Store,
  service: string,
  from: number,
  to: number,
): Promise<Map<number, Map<Metric, CellSums>>> {
  let byService = hourCaches.get(store);
  if (!byService) {
    byService = new Map();
    hourCaches.set(store, byService);
  }
  const hours = byService.get(service) ?? new Map<number, Map<Metric, CellSums>>();
  byService.set(service, hours);
  for (const hour of hours.keys()) if (hour < from) hours.delete(hour);
  let first: number | undefined;
  let last: number | undefined;
  for (let hour = from; hour < to; hour += HOUR) {
    if (hours.has(hour)) continue;
    first ??= hour;
    last = hour;
  }
  if (first !== undefined && last !== undefined) {
    const rows = await store.hostMoments({ service, from: first, to: last + HOUR, bucketMs: HOUR });
    const read = sumsByHour(rows);
    for (let hour = first; hour <= last; hour += HOUR) hours.set(hour, read.get(hour) ?? new Map());
  }
  return hours;
}

/**
 * The hosts of a rollout look's windows, read once per store (kept for a few thousand keys, then
 * started afresh): a look's windows are the same from one detector run to the next (rollout.ts), and
 * `serve` runs the detectors every minute; the aggregates they read are cheap, a scan of raw samples
 * is not. Samples of a window that arrive after it was read change its hosts' shares a little; they
 * are not read again.
 */
const CACHE_KEYS = 4096;
const caches = new WeakMap<Store, Map<string, Promise<unknown>>>();

function cached<T>(store: Store, key: Array<string | number | undefined>, read: () => Promise<T>): Promise<T> {
  let cache = caches.get(store);
  if (!cache) {
    cache = new Map();
    caches.set(store, cache);
  }
  const k = JSON.stringify(key);
  const hit = cache.get(k) as Promise<T> | undefined;
  if (hit) return hit;
  if (cache.size >= CACHE_KEYS) cache.clear();
  const value = read();
  cache.set(k, value);
  // A failed read is not remembered: the next run asks again.
  value.catch(() => cache.delete(k));
  return value;
}

/** {@link learnProcessSpread} on rows already read (hour buckets). */
export function processSpreadFromRows(rows: readonly HostMomentsRow[]): Map<Metric, ProcessSpread> {
  const pooled = new Map<Metric, CellSums>();
  for (const byMetric of sumsByHour(rows).values()) {
    for (const [metric, add] of byMetric) pooled.set(metric, addSums(pooled.get(metric), add));
  }
  return spreadFromSums(pooled);
}

/** τ² = max(0, (ΣQ − Σdf) / Σc) by metric. */
function spreadFromSums(pooled: ReadonlyMap<Metric, CellSums>): Map<Metric, ProcessSpread> {
  const out = new Map<Metric, ProcessSpread>();
  for (const [metric, { q, df, c }] of pooled) {
    if (df > 0) out.set(metric, { tau2: Math.max(0, (q - df) / c), df });
  }
  return out;
}

/** Each hour's cells (commit × endpoint × metric × host class, the hosts that span the hour) summed by metric. */
function sumsByHour(rows: readonly HostMomentsRow[]): Map<number, Map<Metric, CellSums>> {
  const cells = new Map<string, HostMomentsRow[]>();
  const slack = HOUR_SPAN_SLACK * HOUR;
  for (const row of rows) {
    if (row.n < MIN_HOST_HOUR_SAMPLES) continue;
    if (row.firstTs - row.bucket > slack || row.bucket + HOUR - 1 - row.lastTs > slack) continue;
    const key = [row.commit, row.endpoint, row.metric, row.hostClass, row.bucket].join('\u0000');
    const list = cells.get(key) ?? [];
    list.push(row);
    cells.set(key, list);
  }
  const out = new Map<number, Map<Metric, CellSums>>();
  for (const hosts of cells.values()) {
    if (hosts.length < 2) continue;
    const points: Array<{ y: number; w: number }> = [];
    for (const h of hosts) {
      const m = { n: h.n, sum: h.sumCost, sum2: h.sumCost2 };
      const { relVar } = relativeVarianceOfMean(m);
      if (mean(m) > 0 && relVar > 0) points.push({ y: Math.log(mean(m)), w: 1 / relVar });
    }
    if (points.length < 2) continue;
    const sumW = points.reduce((t, p) => t + p.w, 0);
    const sumW2 = points.reduce((t, p) => t + p.w * p.w, 0);
    const yBar = points.reduce((t, p) => t + p.w * p.y, 0) / sumW;
    const cell: CellSums = {
      q: points.reduce((t, p) => t + p.w * (p.y - yBar) ** 2, 0),
      df: points.length - 1,
      c: sumW - sumW2 / sumW,
    };
    const { bucket, metric } = hosts[0] as HostMomentsRow;
    const byMetric = out.get(bucket) ?? new Map<Metric, CellSums>();
    byMetric.set(metric, addSums(byMetric.get(metric), cell));
    out.set(bucket, byMetric);
  }
  return out;
}

/** Samples per host of one side of a comparison, by endpoint and metric. */
export type HostCounts = Map<string, Map<string, number>>;

/** {@link HostCounts} from host-moment rows (summed over host classes and buckets). */
export function hostCounts(rows: readonly HostMomentsRow[]): HostCounts {
  const out: HostCounts = new Map();
  for (const row of rows) {
    const key = endpointMetricKey(row);
    const hosts = out.get(key) ?? new Map<string, number>();
    hosts.set(row.host, (hosts.get(row.host) ?? 0) + row.n);
    out.set(key, hosts);
  }
  return out;
}

/**
 * Σ (n_h / N)² over a side's hosts: the share of τ² its mean carries (1 for one host, 1/H for H equal
 * ones); 1/that is the side's effective number of processes.
 */
export function concentration(hosts: ReadonlyMap<string, number> | undefined): number {
  if (!hosts || hosts.size === 0) return 1;
  let total = 0;
  for (const n of hosts.values()) total += n;
  let sum = 0;
  for (const n of hosts.values()) sum += (n / total) ** 2;
  return sum;
}

/**
 * A comparison of two groups of processes, its variance widened for the process effect: each side's
 * mean carries τ² Σ(n_h/N)² besides its sampling variance, so
 *
 *   se² = se²_samples + τ² (Σ_b (n_h/N_b)² + Σ_c (n_h/N_c)²).
 *
 * With a hundred hosts a side that adds little; with one process a side it adds 2τ², and a difference
 * between two processes is no longer read as the difference between two commits. The interval and
 * p-value keep the comparison's t degrees of freedom. Unchanged when τ² is 0.
 */
export function withProcessSpread(
  comparison: EndpointComparison,
  spread: ProcessSpread | undefined,
  baselineHosts: ReadonlyMap<string, number> | undefined,
  candidateHosts: ReadonlyMap<string, number> | undefined,
  confidence: number,
): EndpointComparison {
  const concentrationB = concentration(baselineHosts);
  const concentrationC = concentration(candidateHosts);
  const processes = { baseline: 1 / concentrationB, candidate: 1 / concentrationC };
  if (!spread || !(spread.tau2 > 0)) return { ...comparison, processes };
  const added = spread.tau2 * (concentrationB + concentrationC);
  const se = Math.sqrt(comparison.seLogRatio ** 2 + added);
  const logRatio = Math.log1p(comparison.changePct / 100);
  const half = studentQuantile(1 - (1 - confidence) / 2, comparison.df) * se;
  return {
    ...comparison,
    ci: [(Math.exp(logRatio - half) - 1) * 100, (Math.exp(logRatio + half) - 1) * 100],
    pValue: se > 0 ? studentTwoSidedP(logRatio / se, comparison.df) : comparison.pValue,
    seLogRatio: se,
    processes: { ...processes, spreadPct: (Math.exp(Math.sqrt(spread.tau2)) - 1) * 100 },
  };
}

/**
 * The comparisons of two groups of processes of one detector run — the rollout test, its canary's
 * check, the check that a later commit resolved a rollout alert, the fold of one into a flag alert —
 * each widened for how much processes of the same code differ ({@link withProcessSpread}). The
 * spread is learnt once per service and run, and only when first needed (it reads the raw samples).
 */
export class ProcessSpreads {
  private readonly learnt = new Map<string, Promise<Map<Metric, ProcessSpread>>>();

  constructor(
    private readonly store: Store,
    private readonly now: number,
    private readonly config: DetectorConfig,
  ) {}

  /** The service's learnt spread by metric, learnt at its first comparison of the run. */
  private of(service: string): Promise<Map<Metric, ProcessSpread>> {
    let learnt = this.learnt.get(service);
    if (!learnt) {
      learnt = learnProcessSpread(this.store, service, this.now, this.config);
      this.learnt.set(service, learnt);
    }
    return learnt;
  }

  /**
   * compareGroups with the config's confidence (and minSamples, unless given), each comparison widened;
   * reads each side's samples per host.
   */
  async compare(
    service: string,
    base: GroupSelector,
    cand: GroupSelector,
    minSamples = this.config.minSamples,
  ): Promise<EndpointComparison[]> {
    const { confidence } = this.config;
    const comparisons = await compareGroups(this.store, service, base, cand, { minSamples, confidence });
    // Off: compared as if every process of a commit cost the same, and no raw samples read.
    if (comparisons.length === 0 || !this.config.learnProcessSpread) return comparisons;
    const hostsOf = (sel: GroupSelector) =>
      cached(this.store, ['hosts', service, sel.commit, sel.endpoint, sel.from, sel.to], async () =>
        hostCounts(
          await this.store.hostMoments({
            service,
            commit: sel.commit,
            endpoint: sel.endpoint,
            from: sel.from,
            to: sel.to,
          }),
        ),
      );
    const [spread, baseHosts, candHosts] = await Promise.all([this.of(service), hostsOf(base), hostsOf(cand)]);
    return comparisons.map((c) => {
      const key = endpointMetricKey(c);
      return withProcessSpread(c, spread.get(c.metric), baseHosts.get(key), candHosts.get(key), confidence);
    });
  }
}
