/**
 * The ClickHouse backend of the Store contract: one node, or a cluster through Distributed tables.
 *
 * Exactly-once without transactions (ClickHouse 18.16 has none, and its insert deduplication needs
 * Replicated tables and ZooKeeper):
 *
 *   ingest:  1. look the batch ids up in `batches`        → seen ones: stored:false, nothing written
 *            2. insert samples, aggregates, counts, users  (every row carries batch_id)
 *            3. insert the `batches` row: the batch's commit record
 *   read:    only rows whose batch_id has a commit record, and each (batch_id, idx) — for
 *            aggregates (key, batch_id) — once, whatever the number of physical copies.
 *
 * A retry after a crash between 2 and 3, or two collectors racing through 1 at the same moment,
 * can write a batch's rows twice; reads still count them once, and ReplacingMergeTree merges drop
 * the copies on disk later. A batch interrupted before 3 is invisible, so "stored" equals
 * "acknowledged". All rows of a batch are sharded by cityHash64(batch_id): copies meet on one shard
 * and the IN (commit records) subquery runs against each shard's local table.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { type ClickHouseClient, ClickHouseLogLevel, type ClickHouseSettings, createClient } from '@clickhouse/client';
import { StoreError } from '../errors';
import { quantile } from '../histogram';
import { hostBucketMs, hostMomentsRow } from '../host-rows';
import { profileEndpointRow, profileFunctionRow } from '../profile-rows';
import type {
  AggregateQuery,
  AggregateRow,
  CommitInfo,
  CountRow,
  Deploy,
  EndpointStats,
  HostMomentsQuery,
  HostMomentsRow,
  IngestBatch,
  IngestResult,
  Metric,
  ProfileEndpointRow,
  ProfileFunctionRow,
  ProfileMeta,
  ProfileQuery,
  ProfileSummary,
  Range,
  RetentionPolicy,
  RetentionResult,
  ServiceInfo,
  Store,
  StoredProfile,
  StoredSample,
  UsersRow,
} from '../types';
import { encodeRowBinary } from './rowbinary';
import { type BatchRows, rowsOfBatch, utcDay } from './rows';
import { columnsOf, partitionOf, SCHEMA_VERSION, schemaStatements, type TableName } from './schema';
import { ident, int, join, type Sql, sql, str, strList } from './sql';

/** Options of {@link openClickHouseStore}. */
export interface ClickHouseStoreOptions {
  /** HTTP interface of the entry node, e.g. `http://127.0.0.1:8123`. */
  url: string;
  /** Database to create and use. Default `ergometer`. */
  database?: string;
  /**
   * Cluster mode: the name of the cluster in the servers' `remote_servers` section and the HTTP URL
   * of every shard (DDL and retention run on each, since ON CLUSTER needs ZooKeeper).
   */
  cluster?: { name: string; shardUrls: string[] };
  username?: string;
  password?: string;
  /** Per request. Default 300 000 ms. */
  requestTimeoutMs?: number;
}

const DAY_MS = 86_400_000;
const DEFAULT_SAMPLES_LIMIT = 1000;
const MUTATION_WAIT_MS = 120_000;
/** Most batches one group commit of ingest() writes (≈ 50 000 samples at the agent's default batch size). */
const MAX_GROUP_BATCHES = 50;

type Row = Record<string, unknown>;

function num(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : String(value);
}

function toHistogram(pair: unknown): Map<number, number> {
  const hist = new Map<number, number>();
  if (!Array.isArray(pair)) return hist;
  const [bins, counts] = pair as [unknown[], unknown[]];
  bins.forEach((bin, i) => {
    const count = num(counts[i]);
    if (count !== 0) hist.set(num(bin), count);
  });
  return hist;
}

function rangeOn(column: Sql, range: Range): Sql[] {
  const out: Sql[] = [];
  if (range.from !== undefined) out.push(sql`${column} >= ${int(range.from)}`);
  if (range.to !== undefined) out.push(sql`${column} < ${int(range.to)}`);
  return out;
}

function where(conditions: Sql[]): Sql {
  return conditions.length === 0 ? sql`` : sql`WHERE ${join(conditions, ' AND ')}`;
}

function col(name: string): Sql {
  return ident(name);
}

class ClickHouseStore implements Store {
  readonly backend = 'clickhouse' as const;
  private readonly client: ClickHouseClient;
  /** One client per node for DDL and retention (the entry client alone on a single node). */
  private readonly nodeClients: ClickHouseClient[];
  private readonly db: Sql;
  private readonly database: string;
  private readonly clustered: boolean;
  private readonly insertSettings: ClickHouseSettings;

  constructor(private readonly options: ClickHouseStoreOptions) {
    this.database = options.database ?? 'ergometer';
    this.db = ident(this.database);
    if (options.cluster) {
      ident(options.cluster.name);
      if (options.cluster.shardUrls.length === 0) {
        throw new StoreError(
          'ERGOMETER_STORE_BAD_CONFIG',
          'cluster.shardUrls is empty: give the HTTP URL of every shard of the cluster',
        );
      }
    }
    this.clustered = options.cluster !== undefined;
    // Synchronous Distributed inserts: the INSERT returns only once every shard stored its rows, so
    // an acknowledged batch is on the shards, not in a local queue of the entry node.
    this.insertSettings = this.clustered ? { insert_distributed_sync: 1 } : {};
    this.client = this.makeClient(options.url);
    this.nodeClients = options.cluster ? options.cluster.shardUrls.map((url) => this.makeClient(url)) : [this.client];
  }

  private makeClient(url: string): ClickHouseClient {
    return createClient({
      url,
      username: this.options.username ?? 'default',
      password: this.options.password ?? '',
      request_timeout: this.options.requestTimeoutMs ?? 300_000,
      // 18.16 predates most settings the client could send; send none by default.
      clickhouse_settings: {},
      // Every failure reaches the caller as a StoreError; the client's own log would
      // print it a second time.
      log: { level: ClickHouseLogLevel.OFF },
    });
  }

  /** The table reads and writes go through: Distributed in a cluster, local on one node. */
  private t(name: TableName): Sql {
    return sql`${this.db}.${ident(this.clustered ? name : `${name}_local`)}`;
  }

  /** Each node's own table (subqueries that must run shard-locally, DDL, retention). */
  private local(name: TableName): Sql {
    return sql`${this.db}.${ident(`${name}_local`)}`;
  }

  /** Rows of committed batches only (see the header). The subquery reads the shard's local table. */
  private committed(service?: string): Sql {
    const filter = service === undefined ? sql`` : sql`WHERE service = ${str(service)}`;
    return sql`batch_id IN (SELECT batch_id FROM ${this.local('batches')} ${filter})`;
  }

  private async rows(query: Sql, client: ClickHouseClient = this.client): Promise<Row[]> {
    try {
      const result = await client.query({ query: query.text, format: 'JSONEachRow' });
      return await result.json<Row>();
    } catch (error) {
      throw this.wrap(error, 'query');
    }
  }

  private async command(query: Sql, client: ClickHouseClient = this.client): Promise<void> {
    try {
      await client.command({ query: query.text });
    } catch (error) {
      throw this.wrap(error, 'command');
    }
  }

  private async insert(table: TableName, values: object[]): Promise<void> {
    try {
      await insertRows(this.client, this.t(table), table, values, this.insertSettings);
    } catch (error) {
      throw this.wrap(error, `insert into ${table}`);
    }
  }

  private wrap(error: unknown, what: string): StoreError {
    if (error instanceof StoreError) return error;
    const message = error instanceof Error ? error.message : String(error);
    const code = /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENOTFOUND|socket hang up/i.test(message)
      ? 'ERGOMETER_STORE_UNAVAILABLE'
      : /timeout/i.test(message)
        ? 'ERGOMETER_STORE_TIMEOUT'
        : /doesn't exist|UNKNOWN_TABLE|Unknown table|Database .* doesn't exist/i.test(message)
          ? 'ERGOMETER_STORE_CLOSED'
          : 'ERGOMETER_STORE_QUERY_FAILED';
    const hint =
      code === 'ERGOMETER_STORE_UNAVAILABLE'
        ? ` (is ClickHouse running at ${this.options.url}?)`
        : code === 'ERGOMETER_STORE_CLOSED'
          ? ' (call init() first, or run `ergometer serve` once to create the schema)'
          : '';
    return new StoreError(code, `ClickHouse ${what} failed: ${message}${hint}`, { cause: error });
  }

  async init(): Promise<void> {
    const statements = schemaStatements(this.database, this.options.cluster?.name);
    for (const client of this.nodeClients) {
      // The version check comes first: never touch a schema written by newer code.
      await this.command(statements[0] as Sql, client);
      await this.command(statements[1] as Sql, client);
      const [row] = await this.rows(sql`SELECT max(version) AS v FROM ${this.db}.schema_version`, client);
      const current = num(row?.v ?? 0);
      if (current > SCHEMA_VERSION) {
        throw new StoreError(
          'ERGOMETER_SCHEMA_TOO_NEW',
          `ClickHouse database ${this.database} has schema version ${current}, this ergometer knows up to ${SCHEMA_VERSION}: upgrade ergometer`,
        );
      }
      for (const statement of statements.slice(2)) await this.command(statement, client);
      if (current < SCHEMA_VERSION) {
        await client.insert({
          table: `${this.db.text}.schema_version`,
          values: [{ version: SCHEMA_VERSION, applied_at: Date.now() }],
          format: 'JSONEachRow',
        });
      }
    }
  }

  /**
   * Group commit: batches handed to ingest() while a write is in flight are written together by
   * the next write. Every MergeTree INSERT makes a part per table (and later merges), so ten
   * 1000-sample batches in one INSERT cost the server a fraction of ten INSERTs.
   */
  async ingest(batch: IngestBatch): Promise<IngestResult> {
    return new Promise<IngestResult>((resolve, reject) => {
      this.pending.push({ batch, resolve, reject });
      void this.drainPending();
    });
  }

  private readonly pending: Array<{
    batch: IngestBatch;
    resolve: (result: IngestResult) => void;
    reject: (error: unknown) => void;
  }> = [];
  private draining = false;

  private async drainPending(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.pending.length > 0) {
        const group = this.pending.splice(0, MAX_GROUP_BATCHES);
        try {
          const results = await this.ingestMany(group.map((g) => g.batch));
          group.forEach((g, i) => {
            g.resolve(results[i] as IngestResult);
          });
        } catch (error) {
          if (group.length === 1) {
            group[0]?.reject(error);
            continue;
          }
          // One bad batch must not fail the others it was grouped with: write each on its own.
          for (const g of group) {
            try {
              const [result] = await this.ingestMany([g.batch]);
              g.resolve(result as IngestResult);
            } catch (single) {
              g.reject(single);
            }
          }
        }
      }
    } finally {
      this.draining = false;
    }
  }

  async ingestMany(batches: IngestBatch[]): Promise<IngestResult[]> {
    if (batches.length === 0) return [];
    const ids = [...new Set(batches.map((b) => b.batchId))];
    const seen = new Set(
      (await this.rows(sql`SELECT DISTINCT batch_id FROM ${this.t('batches')} WHERE batch_id IN ${strList(ids)}`)).map(
        (r) => text(r.batch_id),
      ),
    );
    const fresh: BatchRows[] = [];
    const results: IngestResult[] = batches.map((batch) => {
      if (seen.has(batch.batchId)) return { stored: false, samples: batch.samples.length };
      seen.add(batch.batchId); // a repeat inside this call is a duplicate too
      fresh.push(rowsOfBatch(batch));
      return { stored: true, samples: batch.samples.length };
    });
    if (fresh.length === 0) return results;
    await Promise.all([
      this.insert(
        'samples',
        fresh.flatMap((b) => b.samples),
      ),
      this.insert(
        'aggregates',
        fresh.flatMap((b) => b.aggregates),
      ),
      this.insert(
        'counts',
        fresh.flatMap((b) => b.counts),
      ),
      this.insert(
        'users',
        fresh.flatMap((b) => b.users),
      ),
    ]);
    // Only now: the commit records. Until they are stored the rows above are invisible to reads.
    await this.insert(
      'batches',
      fresh.map((b) => b.batch),
    );
    return results;
  }

  async recordDeploy(deploy: Deploy): Promise<void> {
    await this.insert('deploys', [
      { service: deploy.service, commit: deploy.commit, ts: deploy.ts, day: utcDay(deploy.ts) },
    ]);
  }

  async deploys(service: string, range: Range = {}): Promise<Deploy[]> {
    const rows = await this.rows(
      sql`SELECT DISTINCT service, commit, ts FROM ${this.t('deploys')}
          ${where([sql`service = ${str(service)}`, ...rangeOn(col('ts'), range)])} ORDER BY ts, commit`,
    );
    return rows.map((r) => ({ service: text(r.service), commit: text(r.commit), ts: num(r.ts) }));
  }

  async storeProfile(
    meta: ProfileMeta,
    pprof: Buffer,
    receivedAt: number,
    summary?: ProfileSummary,
  ): Promise<StoredProfile> {
    const profile: StoredProfile = { id: randomUUID(), ...meta, receivedAt, bytes: pprof.length };
    // Retention goes by the end of the time a profile covers: so does its partition.
    const day = utcDay(meta.to);
    const head = {
      profile_id: profile.id,
      service: meta.service,
      commit: meta.commit,
      metric: meta.metric,
      from_ts: meta.from,
      to_ts: meta.to,
      day,
    };
    if (summary) {
      // The sums first, the profile row last: it is their commit record (see schema.ts).
      await this.insert(
        'profile_endpoints',
        summary.endpoints.map((e) => ({
          ...head,
          endpoint: e.endpoint,
          flag_key: e.flagKey,
          flag_variant: e.flagVariant,
          samples: e.samples,
          cost: e.cost,
        })),
      );
      await this.insert(
        'profile_functions',
        summary.functions.map((f) => ({
          ...head,
          endpoint: f.endpoint,
          flag_key: f.flagKey,
          flag_variant: f.flagVariant,
          function_name: f.function,
          file_name: f.file,
          line: Math.max(0, Math.round(f.line)),
          self_samples: f.selfSamples,
          self_cost: f.selfCost,
          total_samples: f.totalSamples,
          total_cost: f.totalCost,
        })),
      );
    }
    await this.insert('profiles', [
      {
        id: profile.id,
        service: meta.service,
        commit: meta.commit,
        host: meta.host,
        metric: meta.metric,
        from_ts: meta.from,
        to_ts: meta.to,
        received_at: receivedAt,
        day,
        bytes: pprof.length,
        pprof_base64: pprof.toString('base64'),
      },
    ]);
    return profile;
  }

  /** Conditions of the two profile aggregate reads, committed profiles only. */
  private profileConditions(q: ProfileQuery): Sql[] {
    const conditions = [sql`service = ${str(q.service)}`];
    if (q.commit !== undefined) conditions.push(sql`commit = ${str(q.commit)}`);
    if (q.endpoint !== undefined) conditions.push(sql`endpoint = ${str(q.endpoint)}`);
    if (q.metric !== undefined) conditions.push(sql`metric = ${str(q.metric)}`);
    conditions.push(sql`flag_key = ${str(q.flag?.key ?? '')}`);
    if (q.flag?.variant !== undefined) conditions.push(sql`flag_variant = ${str(q.flag.variant)}`);
    conditions.push(...rangeOn(col('from_ts'), q));
    // GLOBAL: in a cluster the profile row may live on another shard than its sums.
    const inProfiles = this.clustered ? sql`GLOBAL IN` : sql`IN`;
    conditions.push(
      sql`profile_id ${inProfiles} (SELECT id FROM ${this.t('profiles')} WHERE service = ${str(q.service)})`,
    );
    return conditions;
  }

  async profileEndpoints(q: ProfileQuery): Promise<ProfileEndpointRow[]> {
    const byProfile = q.byProfile === true;
    const group = byProfile
      ? sql`commit, endpoint, metric, flag_key, flag_variant, profile_id`
      : sql`commit, endpoint, metric, flag_key, flag_variant`;
    const rows = await this.rows(
      sql`SELECT ${group}, uniqExact(profile_id) AS profiles, sum(d_samples) AS samples, sum(d_cost) AS cost
          FROM (SELECT commit, endpoint, metric, flag_key, flag_variant, profile_id, any(samples) AS d_samples,
                  any(cost) AS d_cost
                FROM ${this.t('profile_endpoints')} ${where(this.profileConditions(q))}
                GROUP BY commit, endpoint, metric, flag_key, flag_variant, profile_id)
          GROUP BY ${group} ORDER BY ${group}`,
    );
    return rows.map((r) => profileEndpointRow(r, byProfile));
  }

  async profileFunctions(q: ProfileQuery): Promise<ProfileFunctionRow[]> {
    const byProfile = q.byProfile === true;
    const group = byProfile
      ? sql`commit, endpoint, metric, flag_key, flag_variant, profile_id, function_name, file_name, line`
      : sql`commit, endpoint, metric, flag_key, flag_variant, function_name, file_name, line`;
    const rows = await this.rows(
      sql`SELECT ${group}, sum(d_self_samples) AS self_samples, sum(d_self_cost) AS self_cost,
            sum(d_total_samples) AS total_samples, sum(d_total_cost) AS total_cost
          FROM (SELECT commit, endpoint, metric, flag_key, flag_variant, profile_id, function_name, file_name, line,
                  any(self_samples) AS d_self_samples, any(self_cost) AS d_self_cost,
                  any(total_samples) AS d_total_samples, any(total_cost) AS d_total_cost
                FROM ${this.t('profile_functions')} ${where(this.profileConditions(q))}
                GROUP BY commit, endpoint, metric, flag_key, flag_variant, profile_id, function_name, file_name, line)
          GROUP BY ${group} ORDER BY ${group}`,
    );
    return rows.map((r) => profileFunctionRow(r, byProfile));
  }

  async listProfiles(q: Range & { service: string; commit?: string }): Promise<StoredProfile[]> {
    const conditions = [sql`service = ${str(q.service)}`];
    if (q.commit !== undefined) conditions.push(sql`commit = ${str(q.commit)}`);
    conditions.push(...rangeOn(col('from_ts'), q));
    const rows = await this.rows(
      sql`SELECT id, any(service) AS p_service, any(commit) AS p_commit, any(host) AS p_host, any(metric) AS p_metric,
            any(from_ts) AS p_from, any(to_ts) AS p_to, any(received_at) AS p_received_at, any(bytes) AS p_bytes
          FROM ${this.t('profiles')} ${where(conditions)} GROUP BY id ORDER BY p_from, p_received_at, id`,
    );
    return rows.map((r) => ({
      id: text(r.id),
      service: text(r.p_service),
      commit: text(r.p_commit),
      host: text(r.p_host),
      metric: text(r.p_metric) as Metric,
      from: num(r.p_from),
      to: num(r.p_to),
      receivedAt: num(r.p_received_at),
      bytes: num(r.p_bytes),
    }));
  }

  async getProfile(id: string): Promise<Buffer | undefined> {
    const [row] = await this.rows(sql`SELECT pprof_base64 FROM ${this.t('profiles')} WHERE id = ${str(id)} LIMIT 1`);
    return row === undefined ? undefined : Buffer.from(text(row.pprof_base64), 'base64');
  }

  /**
   * Deduplicated aggregate rows (one per key × batch) of committed batches, as a subquery.
   * `any()` may take each column from a different copy: the copies are identical (rows.ts).
   */
  private dedupAggregates(conditions: Sql[], service?: string): Sql {
    return sql`SELECT service, metric, commit, endpoint, host_class, flag_key, flag_variant, minute, batch_id,
        any(n) AS n, any(weight) AS weight, any(sum_cost) AS sum_cost, any(sum_cost2) AS sum_cost2,
        any(sum_log_cost) AS sum_log_cost, any(sum_log_cost2) AS sum_log_cost2, any(sum_wall) AS sum_wall,
        any(sum_db) AS sum_db, any(sum_cache) AS sum_cache, any(sum_http) AS sum_http,
        any(min_ts) AS min_ts, any(max_ts) AS max_ts,
        any(cost_bins) AS cost_bins, any(cost_counts) AS cost_counts,
        any(wall_bins) AS wall_bins, any(wall_counts) AS wall_counts
      FROM ${this.t('aggregates')} ${where([...conditions, this.committed(service)])}
      GROUP BY service, metric, commit, endpoint, host_class, flag_key, flag_variant, minute, batch_id`;
  }

  async services(): Promise<ServiceInfo[]> {
    const rows = await this.rows(
      sql`SELECT service, min(min_ts) AS first_seen, max(max_ts) AS last_seen, sum(n) AS samples,
            groupUniqArray(metric) AS metrics
          FROM (${this.dedupAggregates([sql`flag_key = ''`])}) GROUP BY service ORDER BY service`,
    );
    return rows.map((r) => ({
      service: text(r.service),
      firstSeen: num(r.first_seen),
      lastSeen: num(r.last_seen),
      samples: num(r.samples),
      metrics: (r.metrics as string[]).map((m) => m as Metric).sort(),
    }));
  }

  async commits(service: string, range: Range = {}): Promise<CommitInfo[]> {
    const conditions = [sql`service = ${str(service)}`, sql`flag_key = ''`, ...rangeOn(col('minute'), range)];
    const [rows, deploys] = await Promise.all([
      this.rows(
        sql`SELECT commit, min(min_ts) AS first_seen, max(max_ts) AS last_seen, sum(n) AS samples,
              sum(weight) AS requests
            FROM (${this.dedupAggregates(conditions, service)}) GROUP BY commit ORDER BY first_seen, commit`,
      ),
      this.rows(
        sql`SELECT commit, min(ts) AS deployed_at FROM ${this.t('deploys')} WHERE service = ${str(service)} GROUP BY commit`,
      ),
    ]);
    const deployedAt = new Map(deploys.map((d) => [text(d.commit), num(d.deployed_at)]));
    return rows.map((r) => ({
      commit: text(r.commit),
      firstSeen: num(r.first_seen),
      lastSeen: num(r.last_seen),
      samples: num(r.samples),
      requests: num(r.requests),
      deployedAt: deployedAt.get(text(r.commit)) ?? null,
    }));
  }

  async aggregates(q: AggregateQuery): Promise<AggregateRow[]> {
    const bucketMs = q.bucketMs ?? 0;
    if (!Number.isSafeInteger(bucketMs) || bucketMs < 0 || bucketMs % 60_000 !== 0) {
      throw new StoreError(
        'ERGOMETER_STORE_QUERY_FAILED',
        `bucketMs must be 0 or a positive multiple of 60000, got ${String(bucketMs)}`,
      );
    }
    const conditions = [sql`service = ${str(q.service)}`, ...rangeOn(col('minute'), q)];
    if (q.commit !== undefined) conditions.push(sql`commit = ${str(q.commit)}`);
    if (q.endpoint !== undefined) conditions.push(sql`endpoint = ${str(q.endpoint)}`);
    if (q.metric !== undefined) conditions.push(sql`metric = ${str(q.metric)}`);
    const flags = q.flags ?? 'none';
    if (flags === 'none') conditions.push(sql`flag_key = ''`);
    else if (flags !== 'all') conditions.push(sql`flag_key = ${str(flags.key)}`);

    const keep = new Set(q.groupBy ?? ['commit', 'endpoint', 'hostClass', 'flag']);
    // A histogram not asked for is not merged (sumMap is most of the query's work) and comes back empty.
    const histograms = q.histograms ?? 'all';
    const dim = (kept: boolean, column: string): Sql => (kept ? col(column) : sql`''`);
    const bucket = bucketMs > 0 ? sql`intDiv(minute, ${int(bucketMs)}) * ${int(bucketMs)}` : sql`toInt64(0)`;
    const rows = await this.rows(
      sql`SELECT service AS g_service, metric AS g_metric, ${dim(keep.has('commit'), 'commit')} AS g_commit,
            ${dim(keep.has('endpoint'), 'endpoint')} AS g_endpoint, ${dim(keep.has('hostClass'), 'host_class')} AS g_host_class,
            ${dim(keep.has('flag'), 'flag_key')} AS g_flag_key, ${dim(keep.has('flag'), 'flag_variant')} AS g_flag_variant,
            ${bucket} AS g_bucket,
            sum(n) AS n, sum(weight) AS weight, sum(sum_cost) AS sum_cost, sum(sum_cost2) AS sum_cost2,
            sum(sum_log_cost) AS sum_log_cost, sum(sum_log_cost2) AS sum_log_cost2, sum(sum_wall) AS sum_wall,
            sum(sum_db) AS sum_db, sum(sum_cache) AS sum_cache, sum(sum_http) AS sum_http,
            ${histograms !== 'none' ? sql`sumMap(cost_bins, cost_counts)` : sql`tuple([], [])`} AS cost_hist,
            ${histograms === 'all' ? sql`sumMap(wall_bins, wall_counts)` : sql`tuple([], [])`} AS wall_hist
          FROM (${this.dedupAggregates(conditions, q.service)})
          GROUP BY g_service, g_metric, g_commit, g_endpoint, g_host_class, g_flag_key, g_flag_variant, g_bucket
          ORDER BY g_bucket, g_commit, g_endpoint, g_metric, g_host_class, g_flag_key, g_flag_variant`,
    );
    return rows.map((r) => ({
      service: text(r.g_service),
      commit: text(r.g_commit),
      endpoint: text(r.g_endpoint),
      metric: text(r.g_metric) as Metric,
      hostClass: text(r.g_host_class),
      flagKey: text(r.g_flag_key),
      flagVariant: text(r.g_flag_variant),
      bucket: num(r.g_bucket),
      n: num(r.n),
      weight: num(r.weight),
      sumCost: num(r.sum_cost),
      sumCost2: num(r.sum_cost2),
      sumLogCost: num(r.sum_log_cost),
      sumLogCost2: num(r.sum_log_cost2),
      sumWall: num(r.sum_wall),
      sumDb: num(r.sum_db),
      sumCache: num(r.sum_cache),
      sumHttp: num(r.sum_http),
      costHist: toHistogram(r.cost_hist),
      wallHist: toHistogram(r.wall_hist),
    }));
  }

  async endpoints(q: Range & { service: string; commit?: string; metric?: Metric }): Promise<EndpointStats[]> {
    const aggregateQuery: AggregateQuery = { service: q.service, groupBy: ['endpoint'], flags: 'none' };
    if (q.from !== undefined) aggregateQuery.from = q.from;
    if (q.to !== undefined) aggregateQuery.to = q.to;
    if (q.commit !== undefined) aggregateQuery.commit = q.commit;
    if (q.metric !== undefined) aggregateQuery.metric = q.metric;
    const countConditions = [sql`service = ${str(q.service)}`, ...rangeOn(col('minute'), q)];
    if (q.commit !== undefined) countConditions.push(sql`commit = ${str(q.commit)}`);
    if (q.metric !== undefined) countConditions.push(sql`metric = ${str(q.metric)}`);
    const [aggregates, countRows] = await Promise.all([
      this.aggregates(aggregateQuery),
      this.rows(
        sql`SELECT c_endpoint AS endpoint, c_metric AS metric, sum(c_requests) AS requests
            FROM (${this.dedupCounts(countConditions, q.service)}) GROUP BY c_endpoint, c_metric`,
      ),
    ]);
    const counted = new Map(countRows.map((r) => [`${text(r.metric)}\u0000${text(r.endpoint)}`, num(r.requests)]));
    const stats: EndpointStats[] = aggregates.map((a) => {
      const requests = counted.get(`${a.metric}\u0000${a.endpoint}`) ?? a.weight;
      const n = a.n;
      return {
        endpoint: a.endpoint,
        metric: a.metric,
        samples: n,
        requests,
        costMean: a.sumCost / n,
        costP50: quantile(a.costHist, 0.5),
        costP95: quantile(a.costHist, 0.95),
        wallP50: quantile(a.wallHist, 0.5),
        wallP95: quantile(a.wallHist, 0.95),
        dbMs: a.sumDb / n,
        cacheMs: a.sumCache / n,
        httpMs: a.sumHttp / n,
        share: 0,
      };
    });
    // Shares within a metric: costs of different metrics are never added.
    const totals = new Map<Metric, number>();
    for (const s of stats) totals.set(s.metric, (totals.get(s.metric) ?? 0) + s.costMean * s.requests);
    for (const s of stats) {
      const total = totals.get(s.metric) ?? 0;
      s.share = total > 0 ? (s.costMean * s.requests) / total : 0;
    }
    return stats.sort(
      (a, b) => b.share - a.share || a.endpoint.localeCompare(b.endpoint) || a.metric.localeCompare(b.metric),
    );
  }

  /** One row per (batch_id, idx) of committed batches. Aliases differ from column names: in ClickHouse an alias is visible in WHERE. */
  private dedupCounts(conditions: Sql[], service?: string): Sql {
    return sql`SELECT batch_id, idx, any(minute) AS c_minute, any(endpoint) AS c_endpoint, any(metric) AS c_metric,
        any(requests) AS c_requests
      FROM ${this.t('counts')} ${where([...conditions, this.committed(service)])} GROUP BY batch_id, idx`;
  }

  async counts(q: Range & { service: string; endpoint?: string }): Promise<CountRow[]> {
    const conditions = [sql`service = ${str(q.service)}`, ...rangeOn(col('minute'), q)];
    if (q.endpoint !== undefined) conditions.push(sql`endpoint = ${str(q.endpoint)}`);
    const rows = await this.rows(
      sql`SELECT c_minute AS minute, c_endpoint AS endpoint, sum(c_requests) AS requests
          FROM (${this.dedupCounts(conditions, q.service)})
          GROUP BY c_minute, c_endpoint ORDER BY c_minute, c_endpoint`,
    );
    return rows.map((r) => ({ minute: num(r.minute), endpoint: text(r.endpoint), requests: num(r.requests) }));
  }

  async users(q: Range & { service: string }): Promise<UsersRow[]> {
    const conditions = [sql`service = ${str(q.service)}`, ...rangeOn(col('minute'), q), this.committed(q.service)];
    const rows = await this.rows(
      sql`SELECT u_minute AS minute, groupArray(u_sketch) AS sketches FROM (
            SELECT batch_id, idx, any(minute) AS u_minute, any(sketch) AS u_sketch FROM ${this.t('users')}
            ${where(conditions)} GROUP BY batch_id, idx)
          GROUP BY u_minute ORDER BY u_minute`,
    );
    return rows.map((r) => ({ minute: num(r.minute), sketches: (r.sketches as string[]).map(text).sort() }));
  }

  async samples(
    q: Range & { service: string; commit?: string; endpoint?: string; limit?: number },
  ): Promise<StoredSample[]> {
    const limit = q.limit ?? DEFAULT_SAMPLES_LIMIT;
    const conditions = [sql`service = ${str(q.service)}`, ...rangeOn(col('ts'), q), this.committed(q.service)];
    if (q.commit !== undefined) conditions.push(sql`commit = ${str(q.commit)}`);
    if (q.endpoint !== undefined) conditions.push(sql`endpoint = ${str(q.endpoint)}`);
    // LIMIT 1 BY (batch_id, idx): one copy of each sample, whatever was written twice.
    const rows = await this.rows(
      sql`SELECT * FROM ${this.t('samples')} ${where(conditions)}
          ORDER BY ts DESC, batch_id, idx LIMIT 1 BY batch_id, idx LIMIT ${int(limit)}`,
    );
    return rows.map((r) => {
      const keys = r.flag_keys as string[];
      const values = r.flag_values as string[];
      const flags: Record<string, string> = {};
      keys.forEach((k, i) => {
        flags[k] = values[i] ?? '';
      });
      return {
        service: text(r.service),
        commit: text(r.commit),
        host: text(r.host),
        region: text(r.region),
        hostClass: text(r.host_class),
        metric: text(r.metric) as Metric,
        ts: num(r.ts),
        endpoint: text(r.endpoint),
        status: num(r.status),
        cost: num(r.cost),
        wallMs: num(r.wall_ms),
        db: num(r.db_ms),
        cache: num(r.cache_ms),
        http: num(r.http_ms),
        flags,
        user: text(r.user),
        weight: num(r.weight),
        aborted: num(r.aborted) !== 0,
      };
    });
  }

  private async countSamples(conditions: Sql[], service?: string): Promise<number> {
    const [row] = await this.rows(
      sql`SELECT count() AS n FROM (SELECT batch_id, idx FROM ${this.t('samples')}
          ${where([...conditions, this.committed(service)])} GROUP BY batch_id, idx)`,
    );
    return num(row?.n ?? 0);
  }

  async hostMoments(q: HostMomentsQuery): Promise<HostMomentsRow[]> {
    const bucketMs = hostBucketMs(q);
    const conditions = [sql`service = ${str(q.service)}`, ...rangeOn(col('ts'), q), this.committed(q.service)];
    if (q.commit !== undefined) conditions.push(sql`commit = ${str(q.commit)}`);
    if (q.endpoint !== undefined) conditions.push(sql`endpoint = ${str(q.endpoint)}`);
    const bucket = bucketMs > 0 ? sql`intDiv(ts, ${int(bucketMs)}) * ${int(bucketMs)}` : sql`0`;
    // LIMIT 1 BY (batch_id, idx): each sample once, whatever was written twice.
    const rows = await this.rows(
      sql`SELECT commit, endpoint, metric, host_class, host, ${bucket} AS bucket,
            count() AS n, sum(cost) AS sum_cost, sum(cost * cost) AS sum_cost2, min(ts) AS first_ts, max(ts) AS last_ts
          FROM (SELECT batch_id, idx, commit, endpoint, metric, host_class, host, ts, cost FROM ${this.t('samples')}
                ${where(conditions)} LIMIT 1 BY batch_id, idx)
          GROUP BY commit, endpoint, metric, host_class, host, bucket
          ORDER BY bucket, commit, endpoint, metric, host_class, host`,
    );
    return rows.map((r) => hostMomentsRow(r));
  }

  async sampleCount(service?: string): Promise<number> {
    return this.countSamples(service === undefined ? [] : [sql`service = ${str(service)}`], service);
  }

  /**
   * Retention. Two mechanisms, for cost: whole partitions entirely older than the cutoff are
   * dropped (`DROP PARTITION ID`, a metadata operation: samples are partitioned by day, the rest by
   * month), and only the one partition that straddles the cutoff is cleaned by `ALTER TABLE ...
   * DELETE` (a mutation that rewrites that partition's parts, asynchronously in 18.16: we wait for
   * it). Both run on every node's local tables (Distributed tables take neither).
   *
   * Counts are of logical rows (deduplicated, committed), measured before deleting.
   */
  async applyRetention(policy: RetentionPolicy, now: number): Promise<RetentionResult> {
    const samplesCutoff = now - policy.samplesDays * DAY_MS;
    const aggregatesCutoff = now - policy.aggregatesDays * DAY_MS;
    const profilesCutoff = now - policy.profilesDays * DAY_MS;
    // Commit records go only when no row of their batch is kept (reads see rows of recorded
    // batches only), and they are what recognises a late retry: kept as long as its aggregates.
    const batchesCutoff = Math.min(samplesCutoff, aggregatesCutoff);

    const [samplesDeleted, aggregatesRow, profilesRow] = await Promise.all([
      this.countSamples([sql`ts < ${int(samplesCutoff)}`]),
      this.rows(sql`SELECT count() AS n FROM (${this.dedupAggregates([sql`minute < ${int(aggregatesCutoff)}`])})`),
      this.rows(sql`SELECT uniqExact(id) AS n FROM ${this.t('profiles')} WHERE to_ts < ${int(profilesCutoff)}`),
    ]);

    const plan: Array<[TableName, string, number]> = [
      ['samples', 'ts', samplesCutoff],
      ['aggregates', 'minute', aggregatesCutoff],
      ['counts', 'minute', aggregatesCutoff],
      ['users', 'minute', aggregatesCutoff],
      ['deploys', 'ts', aggregatesCutoff],
      ['profiles', 'to_ts', profilesCutoff],
      ['profile_endpoints', 'to_ts', aggregatesCutoff],
      ['profile_functions', 'to_ts', aggregatesCutoff],
      ['batches', 'last_ms', batchesCutoff],
    ];
    for (const client of this.nodeClients) {
      for (const [table, column, cutoff] of plan) await this.deleteOlder(client, table, column, cutoff);
    }
    return {
      samplesDeleted,
      aggregatesDeleted: num(aggregatesRow[0]?.n ?? 0),
      profilesDeleted: num(profilesRow[0]?.n ?? 0),
    };
  }

  private async deleteOlder(client: ClickHouseClient, table: TableName, column: string, cutoff: number): Promise<void> {
    const day = utcDay(cutoff); // YYYY-MM-DD
    const cutoffPartition =
      partitionOf(table) === 'day' ? Number(day.replaceAll('-', '')) : Number(day.slice(0, 7).replace('-', ''));
    const parts = await this.rows(
      sql`SELECT DISTINCT partition_id FROM system.parts
          WHERE database = ${str(this.database)} AND table = ${str(`${table}_local`)} AND active`,
      client,
    );
    for (const part of parts) {
      const id = text(part.partition_id);
      if (/^\d+$/.test(id) && Number(id) < cutoffPartition) {
        await this.command(sql`ALTER TABLE ${this.local(table)} DROP PARTITION ID ${str(id)}`, client);
      }
    }
    const [left] = await this.rows(
      sql`SELECT count() AS n FROM ${this.local(table)} WHERE ${col(column)} < ${int(cutoff)}`,
      client,
    );
    if (num(left?.n ?? 0) === 0) return;
    await this.command(sql`ALTER TABLE ${this.local(table)} DELETE WHERE ${col(column)} < ${int(cutoff)}`, client);
    await this.waitForMutations(client, table);
  }

  private async waitForMutations(client: ClickHouseClient, table: TableName): Promise<void> {
    const deadline = Date.now() + MUTATION_WAIT_MS;
    for (;;) {
      const [row] = await this.rows(
        sql`SELECT count() AS n FROM system.mutations
            WHERE database = ${str(this.database)} AND table = ${str(`${table}_local`)} AND is_done = 0`,
        client,
      );
      if (num(row?.n ?? 0) === 0) return;
      if (Date.now() > deadline) {
        throw new StoreError(
          'ERGOMETER_STORE_TIMEOUT',
          `retention: the DELETE mutation on ${this.database}.${table}_local is still running after ${MUTATION_WAIT_MS} ms; it continues in the background, run retention again later`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.nodeClients.map((c) => c.close()));
    if (!this.nodeClients.includes(this.client)) await this.client.close();
  }
}

/**
 * Inserts rows into `target` (a `table` or `table_local`) as RowBinary. Exported for tests that
 * reproduce what a collector killed half-way leaves behind.
 */
export async function insertRows(
  client: ClickHouseClient,
  target: Sql,
  table: TableName,
  values: readonly object[],
  settings: ClickHouseSettings = {},
): Promise<void> {
  if (values.length === 0) return;
  const columns = columnsOf(table);
  const body = encodeRowBinary(columns, values);
  const names = join(
    columns.map(([name]) => ident(name)),
    ', ',
  );
  const result = await client.exec({
    query: sql`INSERT INTO ${target} (${names}) FORMAT RowBinary`.text,
    values: Readable.from([body]),
    clickhouse_settings: settings,
  });
  // The answer is empty; drain it so the socket returns to the pool.
  for await (const _ of result.stream) {
    // nothing
  }
}

/**
 * Opens the ClickHouse store (call `init()` before use). Single node: `{ url }`. Cluster: `{ url,
 * cluster: { name, shardUrls } }` where `name` is the cluster in the servers' `remote_servers` and
 * `shardUrls` the HTTP URL of each shard; `url` may be any of them (or a balancer in front).
 */
export function openClickHouseStore(options: ClickHouseStoreOptions): Store {
  return new ClickHouseStore(options);
}
