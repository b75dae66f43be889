/**
 * Turns an IngestBatch into the rows the ClickHouse tables hold. Every row carries the batch id:
 * it is what makes a batch written twice (a retry, or two collectors racing) count once, because
 * reads deduplicate on (batch_id, index) or (aggregate key, batch_id). The rows of a batch are a
 * pure function of the batch, so two copies of a row are identical and any copy can be read.
 */
import { binOf } from '../histogram';
import type { IngestBatch } from '../types';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/** 'YYYY-MM-DD' (UTC) of a ms timestamp: the partition day, computed here so the server's time zone does not matter. */
export function utcDay(ms: number): string {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
}

export function minuteOf(ms: number): number {
  return Math.floor(ms / MINUTE_MS) * MINUTE_MS;
}

export interface BatchRow {
  batch_id: string;
  service: string;
  commit: string;
  host: string;
  region: string;
  host_class: string;
  metric: string;
  agent_version: string;
  runtime: string;
  dropped: number;
  received_at: number;
  day: string;
  samples: number;
  min_ts: number;
  max_ts: number;
  /** Newest time any row of the batch is filed under (sample ts, count and users minutes): retention drops the commit record only once all of them are gone. */
  last_ms: number;
}

export interface SampleRow {
  batch_id: string;
  idx: number;
  service: string;
  commit: string;
  host: string;
  region: string;
  host_class: string;
  metric: string;
  ts: number;
  day: string;
  endpoint: string;
  status: number;
  cost: number;
  wall_ms: number;
  db_ms: number;
  cache_ms: number;
  http_ms: number;
  flag_keys: string[];
  flag_values: string[];
  user: string;
  weight: number;
  aborted: number;
}

export interface AggRow {
  service: string;
  metric: string;
  commit: string;
  endpoint: string;
  host_class: string;
  flag_key: string;
  flag_variant: string;
  minute: number;
  day: string;
  batch_id: string;
  n: number;
  weight: number;
  sum_cost: number;
  sum_cost2: number;
  sum_log_cost: number;
  sum_log_cost2: number;
  sum_wall: number;
  sum_db: number;
  sum_cache: number;
  sum_http: number;
  min_ts: number;
  max_ts: number;
  cost_bins: number[];
  cost_counts: number[];
  wall_bins: number[];
  wall_counts: number[];
}

export interface CountRowDb {
  batch_id: string;
  idx: number;
  service: string;
  commit: string;
  metric: string;
  host: string;
  minute: number;
  day: string;
  endpoint: string;
  requests: number;
}

export interface UsersRowDb {
  batch_id: string;
  idx: number;
  service: string;
  commit: string;
  host: string;
  minute: number;
  day: string;
  sketch: string;
}

export interface BatchRows {
  batch: BatchRow;
  samples: SampleRow[];
  aggregates: AggRow[];
  counts: CountRowDb[];
  users: UsersRowDb[];
}

interface AggAccumulator extends Omit<AggRow, 'cost_bins' | 'cost_counts' | 'wall_bins' | 'wall_counts'> {
  costHist: Map<number, number>;
  wallHist: Map<number, number>;
}

function sortedHistogram(hist: Map<number, number>): [number[], number[]] {
  const bins = [...hist.keys()].sort((a, b) => a - b);
  return [bins, bins.map((bin) => hist.get(bin) ?? 0)];
}

/** All rows of one batch. Flag keys are sorted so that identical batches give identical rows. */
export function rowsOfBatch(batch: IngestBatch): BatchRows {
  const common = {
    service: batch.service,
    commit: batch.commit,
    host: batch.host,
    metric: batch.metric,
  };
  const samples: SampleRow[] = [];
  const groups = new Map<string, AggAccumulator>();
  let minTs = Number.POSITIVE_INFINITY;
  let maxTs = Number.NEGATIVE_INFINITY;

  const addTo = (flagKey: string, flagVariant: string, s: IngestBatch['samples'][number], minute: number): void => {
    const key = JSON.stringify([s.endpoint, minute, flagKey, flagVariant]);
    let acc = groups.get(key);
    if (!acc) {
      acc = {
        service: batch.service,
        metric: batch.metric,
        commit: batch.commit,
        endpoint: s.endpoint,
        host_class: batch.hostClass,
        flag_key: flagKey,
        flag_variant: flagVariant,
        minute,
        day: utcDay(minute),
        batch_id: batch.batchId,
        n: 0,
        weight: 0,
        sum_cost: 0,
        sum_cost2: 0,
        sum_log_cost: 0,
        sum_log_cost2: 0,
        sum_wall: 0,
        sum_db: 0,
        sum_cache: 0,
        sum_http: 0,
        min_ts: s.ts,
        max_ts: s.ts,
        costHist: new Map(),
        wallHist: new Map(),
      };
      groups.set(key, acc);
    }
    const logCost = Math.log(Math.max(s.cost, 1));
    acc.n += 1;
    acc.weight += s.weight;
    acc.sum_cost += s.cost;
    acc.sum_cost2 += s.cost * s.cost;
    acc.sum_log_cost += logCost;
    acc.sum_log_cost2 += logCost * logCost;
    acc.sum_wall += s.wallMs;
    acc.sum_db += s.db;
    acc.sum_cache += s.cache;
    acc.sum_http += s.http;
    if (s.ts < acc.min_ts) acc.min_ts = s.ts;
    if (s.ts > acc.max_ts) acc.max_ts = s.ts;
    const costBin = binOf(s.cost);
    acc.costHist.set(costBin, (acc.costHist.get(costBin) ?? 0) + 1);
    const wallBin = binOf(s.wallMs);
    acc.wallHist.set(wallBin, (acc.wallHist.get(wallBin) ?? 0) + 1);
  };

  batch.samples.forEach((s, idx) => {
    const flagKeys = Object.keys(s.flags).sort();
    const flagValues = flagKeys.map((k) => s.flags[k] ?? '');
    samples.push({
      batch_id: batch.batchId,
      idx,
      ...common,
      region: batch.region,
      host_class: batch.hostClass,
      ts: s.ts,
      day: utcDay(s.ts),
      endpoint: s.endpoint,
      status: s.status,
      cost: s.cost,
      wall_ms: s.wallMs,
      db_ms: s.db,
      cache_ms: s.cache,
      http_ms: s.http,
      flag_keys: flagKeys,
      flag_values: flagValues,
      user: s.user,
      weight: s.weight,
      aborted: s.aborted ? 1 : 0,
    });
    if (s.ts < minTs) minTs = s.ts;
    if (s.ts > maxTs) maxTs = s.ts;
    const minute = minuteOf(s.ts);
    addTo('', '', s, minute);
    flagKeys.forEach((key, i) => {
      addTo(key, flagValues[i] ?? '', s, minute);
    });
  });

  // An empty batch files nothing: its record ages with its receive time.
  let lastMs = batch.samples.length > 0 ? maxTs : Number.NEGATIVE_INFINITY;
  for (const c of batch.counts) lastMs = Math.max(lastMs, c.minute);
  for (const u of batch.users) lastMs = Math.max(lastMs, u.minute);
  if (lastMs === Number.NEGATIVE_INFINITY) lastMs = batch.receivedAt;

  const aggregates: AggRow[] = [...groups.values()].map(({ costHist, wallHist, ...rest }) => {
    const [cost_bins, cost_counts] = sortedHistogram(costHist);
    const [wall_bins, wall_counts] = sortedHistogram(wallHist);
    return { ...rest, cost_bins, cost_counts, wall_bins, wall_counts };
  });

  return {
    batch: {
      batch_id: batch.batchId,
      ...common,
      region: batch.region,
      host_class: batch.hostClass,
      agent_version: batch.agentVersion,
      runtime: batch.runtime,
      dropped: batch.dropped,
      received_at: batch.receivedAt,
      day: utcDay(lastMs),
      samples: batch.samples.length,
      min_ts: batch.samples.length > 0 ? minTs : 0,
      max_ts: batch.samples.length > 0 ? maxTs : 0,
      last_ms: lastMs,
    },
    samples,
    aggregates,
    counts: batch.counts.map((c, idx) => ({
      batch_id: batch.batchId,
      idx,
      ...common,
      minute: c.minute,
      day: utcDay(c.minute),
      endpoint: c.endpoint,
      requests: c.requests,
    })),
    users: batch.users.map((u, idx) => ({
      batch_id: batch.batchId,
      idx,
      service: batch.service,
      commit: batch.commit,
      host: batch.host,
      minute: u.minute,
      day: utcDay(u.minute),
      sketch: u.sketch,
    })),
  };
}
