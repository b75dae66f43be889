/**
 * Wire format v2's samples (docs/wire-format.md): the batch of v1 with its samples as one array per
 * field instead of one object per sample, and the endpoint names and flag sets as dictionaries that
 * the `endpoint` and `flags` columns index. The collector parses it in about 40 % of the time of v1's
 * objects and its JSON is about 40 % of the size (bench/src/ingest.ts compares the two); the values and
 * their checks are v1's.
 */
import type { WireSample } from './wire';

export interface WireColumns {
  /** Endpoint names, each once; `endpoint` holds indices into it. */
  endpoints: string[];
  /** Distinct flag sets (key → variant); `flags` holds indices into it, -1 for a sample without flags. */
  flagSets: Record<string, string>[];
  ts: number[];
  endpoint: number[];
  status: number[];
  cost: number[];
  wallMs: number[];
  /** Backend time, ms; the three columns are left out together when no sample has any. */
  db?: number[];
  cache?: number[];
  http?: number[];
  /** Left out when no sample has flags. */
  flags?: number[];
  /** "" for a sample without a user; left out when none has one. */
  user?: string[];
  weight: number[];
  /** 1 for a sample whose client went away; left out when none did. */
  aborted?: number[];
  /** v1's `flagsDropped` extension, 0 where absent; left out when no sample has it. */
  flagsDropped?: number[];
}

/** Builds {@link WireColumns} from samples added in order, a slice at a time if need be. */
export class ColumnEncoder {
  private readonly endpointIndex = new Map<string, number>();
  private readonly flagSetIndex = new Map<string, number>();
  private readonly columns: Required<WireColumns> = {
    endpoints: [],
    flagSets: [],
    ts: [],
    endpoint: [],
    status: [],
    cost: [],
    wallMs: [],
    db: [],
    cache: [],
    http: [],
    flags: [],
    user: [],
    weight: [],
    aborted: [],
    flagsDropped: [],
  };
  private hasBackend = false;
  private hasFlags = false;
  private hasUser = false;
  private hasAborted = false;
  private hasFlagsDropped = false;

  add(sample: WireSample): void {
    const c = this.columns;
    let endpoint = this.endpointIndex.get(sample.endpoint);
    if (endpoint === undefined) {
      endpoint = c.endpoints.length;
      this.endpointIndex.set(sample.endpoint, endpoint);
      c.endpoints.push(sample.endpoint);
    }
    let flags = -1;
    if (sample.flags !== undefined) {
      const key = JSON.stringify(sample.flags);
      if (key !== '{}') {
        const known = this.flagSetIndex.get(key);
        if (known === undefined) {
          flags = c.flagSets.length;
          this.flagSetIndex.set(key, flags);
          c.flagSets.push(sample.flags);
        } else flags = known;
        this.hasFlags = true;
      }
    }
    c.ts.push(sample.ts);
    c.endpoint.push(endpoint);
    c.status.push(sample.status);
    c.cost.push(sample.cost);
    c.wallMs.push(sample.wallMs);
    const backend = sample.backend;
    if (backend !== undefined) this.hasBackend = true;
    c.db.push(backend?.db ?? 0);
    c.cache.push(backend?.cache ?? 0);
    c.http.push(backend?.http ?? 0);
    c.flags.push(flags);
    if (sample.user !== undefined) this.hasUser = true;
    c.user.push(sample.user ?? '');
    c.weight.push(sample.weight);
    if (sample.aborted === true) this.hasAborted = true;
    c.aborted.push(sample.aborted === true ? 1 : 0);
    if (sample.flagsDropped !== undefined) this.hasFlagsDropped = true;
    c.flagsDropped.push(sample.flagsDropped ?? 0);
  }

  /** The columns of the samples added so far, without the optional ones no sample needs. */
  result(): WireColumns {
    const { db, cache, http, flags, user, aborted, flagsDropped, ...always } = this.columns;
    return {
      ...always,
      ...(this.hasBackend ? { db, cache, http } : {}),
      ...(this.hasFlags ? { flags } : {}),
      ...(this.hasUser ? { user } : {}),
      ...(this.hasAborted ? { aborted } : {}),
      ...(this.hasFlagsDropped ? { flagsDropped } : {}),
    };
  }
}

/** The samples as wire format v2's columns, in one go. */
export function encodeColumns(samples: readonly WireSample[]): WireColumns {
  const encoder = new ColumnEncoder();
  for (const sample of samples) encoder.add(sample);
  return encoder.result();
}

/**
 * The samples of wire format v2's columns as v1 objects: the inverse of {@link encodeColumns} for tools and
 * tests that read what the agent sent (`backend` on every sample when the batch has the columns; `flags`,
 * `user`, `aborted` and `flagsDropped` only where they are set). Trusts its input: the collector
 * validates v2 itself (packages/ergometer/src/ingest/validate.ts).
 */
export function decodeColumns(columns: WireColumns): WireSample[] {
  const samples: WireSample[] = new Array(columns.ts.length);
  for (let i = 0; i < columns.ts.length; i++) {
    const sample: WireSample = {
      ts: columns.ts[i] as number,
      endpoint: columns.endpoints[columns.endpoint[i] as number] as string,
      status: columns.status[i] as number,
      cost: columns.cost[i] as number,
      wallMs: columns.wallMs[i] as number,
      weight: columns.weight[i] as number,
    };
    if (columns.db !== undefined) {
      sample.backend = { db: columns.db[i] as number, cache: columns.cache?.[i] ?? 0, http: columns.http?.[i] ?? 0 };
    }
    const flags = columns.flags?.[i] ?? -1;
    if (flags >= 0) sample.flags = columns.flagSets[flags] as Record<string, string>;
    const user = columns.user?.[i] ?? '';
    if (user !== '') sample.user = user;
    if (columns.aborted?.[i] === 1) sample.aborted = true;
    const dropped = columns.flagsDropped?.[i] ?? 0;
    if (dropped !== 0) sample.flagsDropped = dropped;
    samples[i] = sample;
  }
  return samples;
}
