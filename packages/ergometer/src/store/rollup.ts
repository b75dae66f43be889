/**
 * Per-batch roll-up of samples into partial aggregates, the unit every backend stores: one partial
 * row per (endpoint, minute, flag row) of a batch. A sample counts once in the all-samples row
 * (flagKey '' and flagVariant '') and once more per (key, variant) it carries. Partial rows of the
 * same key merge by adding (sums, histogram bins; min/max of the sample times), so a backend may
 * keep them apart, merge them later, or merge them at query time.
 */
import { binOf } from './histogram';
import type { IngestBatch } from './types';

export const MINUTE_MS = 60_000;

export interface PartialAggregate {
  endpoint: string;
  flagKey: string;
  flagVariant: string;
  /** Start of the minute, ms since the epoch. */
  minute: number;
  n: number;
  weight: number;
  sumCost: number;
  sumCost2: number;
  sumLogCost: number;
  sumLogCost2: number;
  sumWall: number;
  sumDb: number;
  sumCache: number;
  sumHttp: number;
  /** First and last sample time in the row (for services()/commits() first/last seen). */
  minTs: number;
  maxTs: number;
  costHist: Map<number, number>;
  wallHist: Map<number, number>;
}

/** Start of the minute that contains `ts` (ms since the epoch). */
export function minuteOf(ts: number): number {
  return Math.floor(ts / MINUTE_MS) * MINUTE_MS;
}

/** Rolls the samples of one batch up into partial aggregates (see the module comment). */
export function rollUpSamples(samples: IngestBatch['samples']): PartialAggregate[] {
  const rows = new Map<string, PartialAggregate>();
  rollUpInto(rows, emptyPartial, samples);
  return [...rows.values()];
}

/** A row with nothing added yet, for the first sample (at `ts`) of its key. */
export function emptyPartial(
  endpoint: string,
  flagKey: string,
  flagVariant: string,
  minute: number,
  ts: number,
): PartialAggregate {
  return {
    endpoint,
    flagKey,
    flagVariant,
    minute,
    n: 0,
    weight: 0,
    sumCost: 0,
    sumCost2: 0,
    sumLogCost: 0,
    sumLogCost2: 0,
    sumWall: 0,
    sumDb: 0,
    sumCache: 0,
    sumHttp: 0,
    minTs: ts,
    maxTs: ts,
    costHist: new Map(),
    wallHist: new Map(),
  };
}

/**
 * Adds samples into `rows`, an accumulator of partial aggregates keyed by (minute, endpoint, flag
 * row): a sample lands in its rows directly, so accumulating many batches costs no merge of per-batch
 * rows (whose histograms cost more to merge bin by bin than the samples cost to add). `create` makes
 * a new row (an object literal of one fixed shape: rows built by spreading another object into them
 * made every later update several times slower, measured). Returns the number of rows it created.
 */
export function rollUpInto<R extends PartialAggregate>(
  rows: Map<string, R>,
  create: (endpoint: string, flagKey: string, flagVariant: string, minute: number, ts: number) => R,
  samples: IngestBatch['samples'],
): number {
  let created = 0;
  const add = (
    key: string,
    endpoint: string,
    flagKey: string,
    flagVariant: string,
    minute: number,
    s: IngestBatch['samples'][number],
    logCost: number,
    costBin: number,
    wallBin: number,
  ): void => {
    let row = rows.get(key);
    if (row === undefined) {
      row = create(endpoint, flagKey, flagVariant, minute, s.ts);
      rows.set(key, row);
      created++;
    }
    row.n += 1;
    row.weight += s.weight;
    row.sumCost += s.cost;
    row.sumCost2 += s.cost * s.cost;
    row.sumLogCost += logCost;
    row.sumLogCost2 += logCost * logCost;
    row.sumWall += s.wallMs;
    row.sumDb += s.db;
    row.sumCache += s.cache;
    row.sumHttp += s.http;
    if (s.ts < row.minTs) row.minTs = s.ts;
    if (s.ts > row.maxTs) row.maxTs = s.ts;
    row.costHist.set(costBin, (row.costHist.get(costBin) ?? 0) + 1);
    row.wallHist.set(wallBin, (row.wallHist.get(wallBin) ?? 0) + 1);
  };
  for (const s of samples) {
    const minute = minuteOf(s.ts);
    const logCost = Math.log(Math.max(s.cost, 1));
    const costBin = binOf(s.cost);
    const wallBin = binOf(s.wallMs);
    // Length prefixes make the keys unambiguous whatever characters endpoint and flags contain.
    const base = `${minute}:${s.endpoint.length}:${s.endpoint}`;
    add(base, s.endpoint, '', '', minute, s, logCost, costBin, wallBin);
    for (const flagKey in s.flags) {
      const flagVariant = s.flags[flagKey] as string;
      add(
        `${base}${flagKey.length}:${flagKey}${flagVariant}`,
        s.endpoint,
        flagKey,
        flagVariant,
        minute,
        s,
        logCost,
        costBin,
        wallBin,
      );
    }
  }
  return created;
}
