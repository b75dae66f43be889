/**
 * The read API of SPEC §6 (read token): thin translations from query strings to {@link Store}
 * calls. Aggregation happens in the store; here only the final per-row arithmetic (means,
 * quantiles from the mergeable histograms) is done.
 */
import type { AlertBook } from '../alerts/state';
import { compareGroups, type GroupSelector } from '../detect/compare';
import { DEFAULT_DETECTOR_CONFIG, type DetectorConfig } from '../detect/config';
import { efficiencyByDay } from '../detect/efficiency';
import { explainRollout, latestRollout } from '../detect/explain';
import { ProcessSpreads } from '../detect/processes';
import { badRequest, ErgometerError } from '../errors';
import { type DiffQuery, profileDiff } from '../profile/diff';
import { benjaminiHochberg } from '../stats/multiple';
import { quantile } from '../store/histogram';
import type { AggregateQuery, AggregateRow, Store } from '../store/types';
import { QueryParams } from './query';
import { breakdown, compareSides, distribution, timeseriesGroupBy, timeseriesQuantiles } from './read-breakdown';

/**
 * One point of `GET /v1/timeseries`. Costs in the metric's units, times in ms; means per sample.
 * A quantile of an empty histogram is NaN, which JSON.stringify sends as null.
 */
export interface TimeseriesPoint {
  bucket: number;
  commit: string;
  endpoint: string;
  hostClass: string;
  metric: AggregateRow['metric'];
  samples: number;
  requests: number;
  costMean: number;
  costP50: number;
  costP95: number;
  wallMean: number;
  wallP50: number;
  wallP95: number;
  dbMs: number;
  cacheMs: number;
  httpMs: number;
}

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/** Bucket widths offered when the caller does not choose one: the smallest giving ≤ 500 buckets. */
const AUTO_BUCKETS_MS = [MINUTE_MS, 5 * MINUTE_MS, 15 * MINUTE_MS, 3_600_000, 6 * 3_600_000, DAY_MS, 7 * DAY_MS];

export function toTimeseriesPoint(row: AggregateRow): TimeseriesPoint {
  const n = row.n;
  return {
    bucket: row.bucket,
    commit: row.commit,
    endpoint: row.endpoint,
    hostClass: row.hostClass,
    metric: row.metric,
    samples: n,
    requests: row.weight,
    costMean: row.sumCost / n,
    costP50: quantile(row.costHist, 0.5),
    costP95: quantile(row.costHist, 0.95),
    wallMean: row.sumWall / n,
    wallP50: quantile(row.wallHist, 0.5),
    wallP95: quantile(row.wallHist, 0.95),
    dbMs: row.sumDb / n,
    cacheMs: row.sumCache / n,
    httpMs: row.sumHttp / n,
  };
}

/**
 * Answers one `GET /v1/...` read route. Returns the JSON value to send, a Buffer for a profile
 * download, or undefined when the path is not a read route.
 */
/** What the read API needs beyond the store: the alerts the detectors keep (absent: 501). */
export interface ReadContext {
  alerts?: { book: AlertBook; config: DetectorConfig };
}

export async function answerRead(
  store: Store,
  pathname: string,
  params: URLSearchParams,
  now: number,
  context: ReadContext = {},
): Promise<unknown | Buffer | undefined> {
  const q = new QueryParams(params);
  switch (pathname) {
    case '/v1/services':
      return store.services();
    case '/v1/endpoints': {
      const query: Parameters<Store['endpoints']>[0] = { service: q.name('service'), ...q.range() };
      const commit = q.optionalName('commit');
      if (commit !== undefined) query.commit = commit;
      const metric = q.metric(false);
      if (metric !== undefined) query.metric = metric;
      return store.endpoints(query);
    }
    case '/v1/commits':
      return store.commits(q.name('service'), q.range());
    case '/v1/deploys':
      return store.deploys(q.name('service'), q.range());
    case '/v1/timeseries':
      return timeseries(store, q, now);
    case '/v1/profiles': {
      const query: Parameters<Store['listProfiles']>[0] = { service: q.name('service'), ...q.range() };
      const commit = q.optionalName('commit');
      if (commit !== undefined) query.commit = commit;
      return store.listProfiles(query);
    }
    case '/v1/compare': {
      const service = q.name('service');
      const endpoint = q.optionalName('endpoint');
      // One endpoint: only its rows are read (each endpoint's comparison is its own).
      const [baseSide, headSide] = compareSides(q).map((side) =>
        endpoint === undefined ? side : { ...side, endpoint },
      ) as [GroupSelector, GroupSelector];
      // Descriptive, like `ergometer compare`: every endpoint with two samples a side, the interval
      // saying how sure. Alerts apply the detectors' minSamples. Two commits are two groups of
      // processes: widened as the rollout detector widens them (detect/processes.ts); two flag
      // variants are requests of the same processes.
      const config = context.alerts?.config ?? DEFAULT_DETECTOR_CONFIG;
      const rows = baseSide.flag
        ? await compareGroups(store, service, baseSide, headSide, { minSamples: 2, confidence: config.confidence })
        : await new ProcessSpreads(store, now, config).compare(service, baseSide, headSide, 2);
      const adjusted = benjaminiHochberg(rows.map((c) => c.pValue));
      return rows.map((c, i) => ({
        endpoint: c.endpoint,
        metric: c.metric,
        n: c.n,
        costMean: c.costMean,
        changePct: c.changePct,
        ci: c.ci,
        confidence: config.confidence,
        pValue: adjusted[i],
        pValueRaw: c.pValue,
        hostClasses: c.hostClasses,
        ...(c.processes ? { processes: c.processes } : {}),
        rank: c.rank ? { pValue: c.rank.pValue, probabilityOfSuperiority: c.rank.probabilityOfSuperiority } : null,
      }));
    }
    case '/v1/explain': {
      // The rollout test of one endpoint look by look (`ergometer detect --explain`): why it alerted or not.
      const service = q.name('service');
      const endpoint = q.name('endpoint');
      const commit = q.optionalName('commit') ?? (await latestRollout(store, service));
      if (commit === undefined) {
        throw new ErgometerError('ERGOMETER_NOT_FOUND', 404, `no commit of service ${service} in the store`);
      }
      return explainRollout(store, service, commit, endpoint, context.alerts?.config ?? DEFAULT_DETECTOR_CONFIG, now);
    }
    case '/v1/alerts': {
      if (!context.alerts) {
        throw new ErgometerError('ERGOMETER_NOT_IMPLEMENTED', 501, 'this collector runs without detectors');
      }
      const service = q.optionalName('service');
      const status = params.get('status');
      if (status !== null && status !== 'open' && status !== 'resolved') {
        throw badRequest('ERGOMETER_BAD_QUERY', `status: expected "open" or "resolved", got ${JSON.stringify(status)}`);
      }
      const filter: Parameters<AlertBook['list']>[0] = {};
      if (service !== undefined) filter.service = service;
      if (status !== null) filter.status = status;
      return context.alerts.book.list(filter).map((r) => ({
        ...r.alert,
        status: r.status,
        firstSeen: r.firstSeen,
        lastSeen: r.lastSeen,
        resolvedAt: r.resolvedAt,
      }));
    }
    case '/v1/breakdown':
      return breakdown(store, q);
    case '/v1/distribution':
      return distribution(store, q);
    case '/v1/efficiency': {
      // Default: the last 14 UTC days up to now.
      const range = q.range();
      const to = range.to ?? now + 1;
      const from = range.from ?? to - 14 * 86_400_000;
      if (from > to) throw badRequest('ERGOMETER_BAD_QUERY', `from (${from}) is after to (${to})`);
      return efficiencyByDay(store, q.name('service'), { from, to });
    }
    case '/v1/profiles/diff':
      return profileDiff(store, diffQueryFrom(q));
    default:
      break;
  }
  if (pathname.startsWith('/v1/profiles/')) {
    const id = decodeURIComponent(pathname.slice('/v1/profiles/'.length));
    if (id.length === 0 || id.length > 128 || id.includes('/')) {
      throw badRequest(
        'ERGOMETER_BAD_QUERY',
        'profile id: expected /v1/profiles/<id> with an id from GET /v1/profiles',
      );
    }
    const pprof = await store.getProfile(id);
    if (pprof === undefined) {
      throw new ErgometerError(
        'ERGOMETER_NOT_FOUND',
        404,
        `no profile with id ${JSON.stringify(id)}; list them with GET /v1/profiles?service=S`,
      );
    }
    return pprof;
  }
  return undefined;
}

/**
 * `GET /v1/profiles/diff`: `service`, `base`, `head` (commits), or a flag comparison within one
 * commit: `commit`, `flag`, `baseVariant`, `headVariant`; optional `endpoint`, `metric`, `from`, `to`.
 */
export function diffQueryFrom(q: QueryParams): DiffQuery {
  const service = q.name('service');
  const flag = q.optionalName('flag');
  const query: DiffQuery =
    flag === undefined
      ? { service, base: { commit: q.name('base') }, head: { commit: q.name('head') } }
      : {
          service,
          flag,
          base: { commit: q.name('commit'), variant: q.name('baseVariant') },
          head: { commit: q.name('commit'), variant: q.name('headVariant') },
        };
  const endpoint = q.optionalName('endpoint');
  if (endpoint !== undefined) query.endpoint = endpoint;
  const metric = q.metric(false);
  if (metric !== undefined) query.metric = metric;
  const range = q.range();
  if (range.from !== undefined) query.from = range.from;
  if (range.to !== undefined) query.to = range.to;
  return query;
}

async function timeseries(
  store: Store,
  q: QueryParams,
  now: number,
): Promise<{ bucketMs: number; from: number; to: number; points: TimeseriesPoint[] }> {
  const service = q.name('service');
  const range = q.range();
  // Default window: the last 24 hours (to is exclusive, so one minute past now includes the current minute).
  const to = range.to ?? Math.ceil((now + 1) / MINUTE_MS) * MINUTE_MS;
  const from = range.from ?? to - DAY_MS;
  if (from > to) throw badRequest('ERGOMETER_BAD_QUERY', `from (${from}) is after to (${to})`);
  let bucketMs = q.integer('bucketMs', MINUTE_MS, 365 * DAY_MS);
  if (bucketMs !== undefined && bucketMs % MINUTE_MS !== 0) {
    throw badRequest('ERGOMETER_BAD_QUERY', `bucketMs: expected a multiple of 60000 (one minute), got ${bucketMs}`);
  }
  if (bucketMs === undefined) {
    bucketMs = AUTO_BUCKETS_MS.find((width) => (to - from) / width <= 500) ?? 30 * DAY_MS;
  }
  if ((to - from) / bucketMs > 10_000) {
    throw badRequest(
      'ERGOMETER_BAD_QUERY',
      `bucketMs: ${bucketMs} gives more than 10000 buckets over this range; choose a wider bucket`,
    );
  }
  const endpoint = q.optionalName('endpoint');
  const commit = q.optionalName('commit');
  const metric = q.metric(false);
  // Without an endpoint, one series per commit over all endpoints (the service total); with one, that endpoint's.
  const query: AggregateQuery = { service, from, to, bucketMs, groupBy: ['commit', 'endpoint', 'hostClass'] };
  if (endpoint !== undefined) query.endpoint = endpoint;
  else query.groupBy = ['commit', 'hostClass'];
  const groupBy = timeseriesGroupBy(q);
  if (groupBy !== undefined) query.groupBy = groupBy;
  if (commit !== undefined) query.commit = commit;
  if (metric !== undefined) query.metric = metric;
  query.histograms = timeseriesQuantiles(q);
  const rows = await store.aggregates(query);
  const points = rows.map(toTimeseriesPoint).sort((a, b) => a.bucket - b.bucket || a.commit.localeCompare(b.commit));
  return { bucketMs, from, to, points };
}
