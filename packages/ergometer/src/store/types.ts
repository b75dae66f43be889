/**
 * The storage contract between the collector (ingest + read API), the detectors and the
 * two backends (embedded DuckDB file, ClickHouse single node or cluster). One conformance
 * suite (test/store/conformance.ts) runs against every backend; a backend is done when it passes.
 *
 * Aggregates are the product: detectors and the dashboard read {@link AggregateRow}s grouped in
 * the store, never millions of raw rows. Every aggregate is mergeable (sums and histogram bins),
 * so any bucket size ≥ one minute is answered by summing minute buckets.
 */

export type Metric = 'instructions' | 'cpu_ns';

/** One request sample as stored (wire sample + the batch fields it inherits). */
export interface StoredSample {
  service: string;
  commit: string;
  host: string;
  region: string;
  /** CPU model class of the host ('' when the agent did not say). Costs of different classes are never compared. */
  hostClass: string;
  metric: Metric;
  ts: number;
  endpoint: string;
  status: number;
  cost: number;
  wallMs: number;
  db: number;
  cache: number;
  http: number;
  flags: Record<string, string>;
  user: string;
  weight: number;
  aborted: boolean;
}

/** A batch after validation (wire format v1, SPEC §4), ready to store. All strings already length-checked. */
export interface IngestBatch {
  batchId: string;
  service: string;
  host: string;
  region: string;
  commit: string;
  hostClass: string;
  metric: Metric;
  agentVersion: string;
  runtime: string;
  /** Samples the agent reports it dropped before this batch. */
  dropped: number;
  /** Server receive time, ms since the epoch. */
  receivedAt: number;
  samples: Array<Omit<StoredSample, 'service' | 'commit' | 'host' | 'region' | 'hostClass' | 'metric'>>;
  counts: Array<{ minute: number; endpoint: string; requests: number }>;
  users: Array<{ minute: number; sketch: string }>;
}

export interface IngestResult {
  /** false when this batchId was stored before: nothing was written this time. */
  stored: boolean;
  samples: number;
}

export interface Deploy {
  service: string;
  commit: string;
  ts: number;
}

export interface ProfileMeta {
  service: string;
  commit: string;
  host: string;
  metric: Metric;
  from: number;
  to: number;
}

export interface StoredProfile extends ProfileMeta {
  id: string;
  receivedAt: number;
  bytes: number;
}

/** A function as the server identifies it. */
export interface FunctionId {
  function: string;
  file: string;
  line: number;
}

/** Sums for one (endpoint, flag key, flag variant); flagKey '' is the row over all samples. */
export interface ProfileEndpointSum {
  endpoint: string;
  flagKey: string;
  flagVariant: string;
  samples: number;
  cost: number;
}

/** Self and total sums of one function within one (endpoint, flag key, flag variant). */
export interface ProfileFunctionSum extends FunctionId {
  endpoint: string;
  flagKey: string;
  flagVariant: string;
  selfSamples: number;
  selfCost: number;
  totalSamples: number;
  totalCost: number;
}

/** What the store keeps of a profile besides its bytes. */
export interface ProfileSummary {
  endpoints: ProfileEndpointSum[];
  functions: ProfileFunctionSum[];
}

/**
 * Which profile aggregates to read. Profiles are selected by their `from` in the range. Without
 * `flag`, the all-samples rows (flagKey ''); with a key, the rows of its variants (or one variant).
 */
export interface ProfileQuery extends Range {
  service: string;
  commit?: string;
  endpoint?: string;
  metric?: Metric;
  flag?: { key: string; variant?: string };
  /** Keep one row per profile (the replicates the function detector's variance needs); default merged. */
  byProfile?: boolean;
}

/** Profile sums of one (commit, endpoint, metric, flag variant[, profile]). */
export interface ProfileEndpointRow {
  commit: string;
  endpoint: string;
  metric: Metric;
  flagKey: string;
  flagVariant: string;
  /** The profile's id with `byProfile`, else ''. */
  profileId: string;
  /** Profiles that contributed. */
  profiles: number;
  samples: number;
  cost: number;
}

/** One function's sums in one (commit, endpoint, metric, flag variant[, profile]). */
export interface ProfileFunctionRow extends FunctionId {
  commit: string;
  endpoint: string;
  metric: Metric;
  flagKey: string;
  flagVariant: string;
  profileId: string;
  selfSamples: number;
  selfCost: number;
  totalSamples: number;
  totalCost: number;
}

/** Time range, ms since the epoch, `from` inclusive, `to` exclusive. Both optional. */
export interface Range {
  from?: number;
  to?: number;
}

export interface ServiceInfo {
  service: string;
  firstSeen: number;
  lastSeen: number;
  samples: number;
  metrics: Metric[];
}

export interface CommitInfo {
  commit: string;
  /** First and last sample time of this commit in this service. */
  firstSeen: number;
  lastSeen: number;
  samples: number;
  /** Weighted request estimate (sum of weights). */
  requests: number;
  /** Time of `ergometer deploy` for this commit, if one was recorded. */
  deployedAt: number | null;
}

/** SPEC §6 `GET /v1/endpoints` row. Costs in the metric's units; times in ms. */
export interface EndpointStats {
  endpoint: string;
  metric: Metric;
  samples: number;
  /**
   * Requests from `counts` (every request; same service, metric, commit if given, minute in range)
   * when any count row exists for the endpoint, else the sum of sample weights.
   */
  requests: number;
  /** Mean cost per sample (unweighted); `dbMs`, `cacheMs`, `httpMs` are means per sample too. */
  costMean: number;
  costP50: number;
  costP95: number;
  wallP50: number;
  wallP95: number;
  dbMs: number;
  cacheMs: number;
  httpMs: number;
  /** `costMean` × `requests` over the sum of that product across the endpoints of the same metric, 0..1. */
  share: number;
}

/**
 * The mergeable summary of a group of samples. `flagKey`/`flagVariant` are '' for the row over all
 * samples; a sample with flags also counts once in one row per (key, variant) it carries.
 *
 * All sums and both histograms are over samples, unweighted (so n, sumCost and sumCost2 give the
 * sample mean and variance the detectors test); only `weight` sums the sample weights. A group
 * dimension dropped by `groupBy` is returned as ''. Time ranges select minute buckets whose start is
 * in [from, to). test/store/conformance.ts checks all of this against every backend.
 */
export interface AggregateRow {
  service: string;
  commit: string;
  endpoint: string;
  metric: Metric;
  hostClass: string;
  flagKey: string;
  flagVariant: string;
  /** Start of the bucket, ms since the epoch (a multiple of the query's bucketMs; 0 when not bucketed). */
  bucket: number;
  /** Number of samples (unweighted). */
  n: number;
  /** Sum of weights: the requests the samples stand for. */
  weight: number;
  sumCost: number;
  sumCost2: number;
  /** Sums of ln(max(cost, 1)) and its square: for log-scale estimators. */
  sumLogCost: number;
  sumLogCost2: number;
  sumWall: number;
  sumDb: number;
  sumCache: number;
  sumHttp: number;
  /** Cost histogram: bin index (see histogram.ts) → count. Mergeable by adding. */
  costHist: Map<number, number>;
  /** Wall time histogram (ms, binned like cost). */
  wallHist: Map<number, number>;
}

export interface AggregateQuery extends Range {
  service: string;
  commit?: string;
  endpoint?: string;
  metric?: Metric;
  /**
   * Which flag rows: `'none'` (default) only the all-samples rows (flagKey ''), `'all'` every row,
   * or one key: the rows of that key's variants.
   */
  flags?: 'none' | 'all' | { key: string };
  /** Bucket width in ms (multiple of 60 000); omitted or 0: one bucket over the whole range. */
  bucketMs?: number;
  /** Group dimensions to keep; dropped ones are merged. Default: all (commit, endpoint, hostClass, flag). */
  groupBy?: Array<'commit' | 'endpoint' | 'hostClass' | 'flag'>;
  /**
   * Which histograms to merge: `'all'` (default) both, `'cost'` only `costHist`, `'none'` neither.
   * A histogram not asked for comes back as an empty Map. Merging histograms is most of the cost of
   * a query over many rows, so readers that need only sums and means (sparklines) leave them out.
   */
  histograms?: 'all' | 'cost' | 'none';
}

/**
 * Cost moments of one host's samples (one commit, endpoint, metric, host class; one time bucket when
 * asked): read from the raw samples, for the detectors' allowance for how much processes of the same
 * code differ (detect/processes.ts). All samples, unweighted, as in {@link AggregateRow}.
 */
export interface HostMomentsRow {
  commit: string;
  endpoint: string;
  metric: Metric;
  hostClass: string;
  host: string;
  /** Start of the bucket, ms since the epoch (a multiple of the query's bucketMs; 0 when not bucketed). */
  bucket: number;
  n: number;
  sumCost: number;
  sumCost2: number;
  /** Timestamps of the first and last of these samples, ms since the epoch. */
  firstTs: number;
  lastTs: number;
}

/** Samples with `ts` in [from, to); bucketMs as in {@link AggregateQuery} (any whole number of ms ≥ 0 here). */
export interface HostMomentsQuery extends Range {
  service: string;
  commit?: string;
  /** Only this endpoint's hosts. */
  endpoint?: string;
  bucketMs?: number;
}

export interface CountRow {
  minute: number;
  endpoint: string;
  requests: number;
}

export interface UsersRow {
  minute: number;
  /**
   * Sketches whose union is this minute's users: every sketch received (one per process and batch),
   * or the store's merge of them (DuckDB keeps their union per ingest transaction, merged into one
   * per minute by compact(), plus any sketch that does not decode, as received). Merge to count; the count is the same either way.
   */
  sketches: string[];
}

export interface RetentionPolicy {
  /** Raw samples older than this many days are deleted. Default 14. */
  samplesDays: number;
  /** Aggregates, counts, users, deploys older than this are deleted. Default 400. */
  aggregatesDays: number;
  /** Raw pprof profiles (by the end of the time they cover). Default 30. */
  profilesDays: number;
}

export interface RetentionResult {
  samplesDeleted: number;
  aggregatesDeleted: number;
  profilesDeleted: number;
}

export interface Store {
  readonly backend: 'duckdb' | 'clickhouse';
  /** Creates or migrates the schema; idempotent. Throws a clear error if the schema is newer than this code. */
  init(): Promise<void>;
  /**
   * Stores one batch (samples, aggregates, counts, users) once. When it resolves with stored: true,
   * the batch is durable: a SIGKILL of the collector right after loses none of it. A batchId
   * stored before resolves with stored: false and writes nothing. Exactly-once holds also for two
   * collectors sharing one ClickHouse that receive the same batch at the same time.
   */
  ingest(batch: IngestBatch): Promise<IngestResult>;
  /** Several batches in one write (group commit). Same guarantees per batch. */
  ingestMany(batches: IngestBatch[]): Promise<IngestResult[]>;
  recordDeploy(deploy: Deploy): Promise<void>;
  deploys(service: string, range?: Range): Promise<Deploy[]>;
  /**
   * Stores the raw pprof and, when given, its decoded per-endpoint and per-function sums, together:
   * both or neither are visible.
   */
  storeProfile(meta: ProfileMeta, pprof: Buffer, receivedAt: number, summary?: ProfileSummary): Promise<StoredProfile>;
  /** Per (commit, endpoint, metric, flag variant[, profile]) profile sums, merged over the profiles selected. */
  profileEndpoints(q: ProfileQuery): Promise<ProfileEndpointRow[]>;
  /** Per function self and total sums in the same groups as {@link Store.profileEndpoints}. */
  profileFunctions(q: ProfileQuery): Promise<ProfileFunctionRow[]>;
  /** Profiles whose `from` is in the range, oldest first. */
  listProfiles(q: Range & { service: string; commit?: string }): Promise<StoredProfile[]>;
  getProfile(id: string): Promise<Buffer | undefined>;

  services(): Promise<ServiceInfo[]>;
  commits(service: string, range?: Range): Promise<CommitInfo[]>;
  endpoints(q: Range & { service: string; commit?: string; metric?: Metric }): Promise<EndpointStats[]>;
  aggregates(q: AggregateQuery): Promise<AggregateRow[]>;
  counts(q: Range & { service: string; endpoint?: string }): Promise<CountRow[]>;
  users(q: Range & { service: string }): Promise<UsersRow[]>;
  /** Raw samples, newest first, capped by limit (default 1000): for drill-down, not for statistics. */
  samples(q: Range & { service: string; commit?: string; endpoint?: string; limit?: number }): Promise<StoredSample[]>;
  /** Per host cost moments from the raw samples (so only within their retention). */
  hostMoments(q: HostMomentsQuery): Promise<HostMomentsRow[]>;
  /** Number of stored raw samples (all services): for tests, metrics and crash checks. */
  sampleCount(service?: string): Promise<number>;

  applyRetention(policy: RetentionPolicy, now: number): Promise<RetentionResult>;
  close(): Promise<void>;
}
