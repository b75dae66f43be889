/**
 * Turns an IngestBatch into the rows the ClickHouse tables hold. Every row carries the batch id:
 * it is what makes a batch written twice (a retry, or two collectors racing) count once, because
 * reads deduplicate on (batch_id, index) or (aggregate key, batch_id). The rows of a batch are a
 * pure function of the batch, so two copies of a row are identical and any copy can be read.
 */
import { rollUpSamples } from '../rollup';
import type { IngestBatch } from '../types';

const DAY_MS = 86_400_000;

/** 'YYYY-MM-DD' (UTC) of a ms timestamp: the partition day, computed here so the server's time zone does not matter. */
export function utcDay(ms: number): string {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
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
  let minTs = Number.POSITIVE_INFINITY;
  let maxTs = Number.NEGATIVE_INFINITY;

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
  });

  // An empty batch files nothing: its record ages with its receive time.
  let lastMs = batch.samples.length > 0 ? maxTs : Number.NEGATIVE_INFINITY;
  for (const c of batch.counts) lastMs = Math.max(lastMs, c.minute);
  for (const u of batch.users) lastMs = Math.max(lastMs, u.minute);
  if (lastMs === Number.NEGATIVE_INFINITY) lastMs = batch.receivedAt;

  // The same per-batch roll-up as the DuckDB backend (rollup.ts), one row per partial aggregate.
  const aggregates: AggRow[] = rollUpSamples(batch.samples).map((p) => {
    const [cost_bins, cost_counts] = sortedHistogram(p.costHist);
    const [wall_bins, wall_counts] = sortedHistogram(p.wallHist);
    return {
      service: batch.service,
      metric: batch.metric,
      commit: batch.commit,
      endpoint: p.endpoint,
      host_class: batch.hostClass,
      flag_key: p.flagKey,
      flag_variant: p.flagVariant,
      minute: p.minute,
      day: utcDay(p.minute),
      batch_id: batch.batchId,
      n: p.n,
      weight: p.weight,
      sum_cost: p.sumCost,
      sum_cost2: p.sumCost2,
      sum_log_cost: p.sumLogCost,
      sum_log_cost2: p.sumLogCost2,
      sum_wall: p.sumWall,
      sum_db: p.sumDb,
      sum_cache: p.sumCache,
      sum_http: p.sumHttp,
      min_ts: p.minTs,
      max_ts: p.maxTs,
      cost_bins,
      cost_counts,
      wall_bins,
      wall_counts,
    };
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
