/**
 * The ClickHouse schema, version 1.
 *
 * Every node holds `<name>_local` tables (ReplacingMergeTree). In a cluster every node also holds a
 * `<name>` Distributed table over the cluster's `<name>_local` tables; the store writes and reads
 * through those, so any node can be the entry point. On a single node the store uses the local
 * tables directly.
 *
 * Sharding: everything that belongs to a batch (batches, samples, aggregates, counts, users) is
 * sharded by cityHash64(batch_id), so all copies of a batch's rows live on one shard and the
 * per-batch deduplication of reads is shard-local (see store.ts). Deploys shard by service,
 * profiles by id.
 *
 * Partitions: raw samples by UTC day (retention drops whole days), the rest by month.
 * `day` is computed by the store (UTC) rather than from the server's time zone.
 *
 * Why ReplacingMergeTree: background merges collapse the physical copies of a batch written twice
 * (their sorting keys are equal), so duplicates do not accumulate on disk. Merges are not a
 * correctness mechanism (they happen "eventually"): reads always deduplicate themselves.
 *
 * DDL goes to each node's URL in turn (`ON CLUSTER` needs ZooKeeper's distributed DDL queue, which
 * a ZooKeeper-less 18.16 cluster does not have). Every statement is IF NOT EXISTS: init() is
 * idempotent and two collectors may run it at once.
 */
import type { Column, ColumnType } from './rowbinary';
import { ident, Sql, sql } from './sql';

export const SCHEMA_VERSION = 1;

export const BATCH_TABLES = ['batches', 'samples', 'aggregates', 'counts', 'users'] as const;
export type TableName =
  | (typeof BATCH_TABLES)[number]
  | 'deploys'
  | 'profiles'
  | 'profile_endpoints'
  | 'profile_functions';
export const ALL_TABLES: readonly TableName[] = [
  ...BATCH_TABLES,
  'deploys',
  'profiles',
  'profile_endpoints',
  'profile_functions',
];

interface TableDef {
  columns: string;
  order: string;
  partition: string;
  shardKey: string;
}

const TABLES: Record<TableName, TableDef> = {
  // The commit record of a batch: written after all its rows; reads only see rows of batches that
  // have one, so a batch interrupted half-way (collector killed) is invisible until it is retried.
  batches: {
    columns: `batch_id String, service String, commit String, host String, region String, host_class String,
      metric String, agent_version String, runtime String, dropped UInt64, received_at Int64, day Date,
      samples UInt32, min_ts Int64, max_ts Int64, last_ms Int64`,
    order: 'batch_id',
    partition: 'toYYYYMM(day)',
    shardKey: 'cityHash64(batch_id)',
  },
  samples: {
    columns: `batch_id String, idx UInt32, service String, commit String, host String, region String,
      host_class String, metric String, ts Int64, day Date, endpoint String, status UInt16, cost Float64,
      wall_ms Float64, db_ms Float64, cache_ms Float64, http_ms Float64, flag_keys Array(String),
      flag_values Array(String), user String, weight Float64, aborted UInt8`,
    order: 'service, ts, batch_id, idx',
    partition: 'day',
    shardKey: 'cityHash64(batch_id)',
  },
  // One row per batch × endpoint × minute × flag (key, variant) ('' = all samples); histograms as
  // parallel arrays (bin, count) merged with sumMap (18.16 has no Map type).
  aggregates: {
    columns: `service String, metric String, commit String, endpoint String, host_class String, flag_key String,
      flag_variant String, minute Int64, day Date, batch_id String, n UInt64, weight Float64, sum_cost Float64,
      sum_cost2 Float64, sum_log_cost Float64, sum_log_cost2 Float64, sum_wall Float64, sum_db Float64,
      sum_cache Float64, sum_http Float64, min_ts Int64, max_ts Int64, cost_bins Array(UInt16),
      cost_counts Array(UInt64), wall_bins Array(UInt16), wall_counts Array(UInt64)`,
    order: 'service, metric, flag_key, commit, endpoint, minute, host_class, flag_variant, batch_id',
    partition: 'toYYYYMM(day)',
    shardKey: 'cityHash64(batch_id)',
  },
  counts: {
    columns: `batch_id String, idx UInt32, service String, commit String, metric String, host String,
      minute Int64, day Date, endpoint String, requests UInt64`,
    order: 'service, minute, endpoint, batch_id, idx',
    partition: 'toYYYYMM(day)',
    shardKey: 'cityHash64(batch_id)',
  },
  users: {
    columns: `batch_id String, idx UInt32, service String, commit String, host String, minute Int64, day Date,
      sketch String`,
    order: 'service, minute, batch_id, idx',
    partition: 'toYYYYMM(day)',
    shardKey: 'cityHash64(batch_id)',
  },
  deploys: {
    columns: 'service String, commit String, ts Int64, day Date',
    order: 'service, ts, commit',
    partition: 'toYYYYMM(day)',
    shardKey: 'cityHash64(service)',
  },
  // pprof bytes as base64: JSONEachRow strings must be valid UTF-8.
  profiles: {
    columns: `id String, service String, commit String, host String, metric String, from_ts Int64, to_ts Int64,
      received_at Int64, day Date, bytes UInt64, pprof_base64 String`,
    order: 'service, received_at, id',
    partition: 'toYYYYMM(day)',
    shardKey: 'cityHash64(id)',
  },
  // Decoded profile sums (added after version 1; IF NOT EXISTS creates them on older databases).
  // Written before the profile's row, which is their commit record: reads keep only rows whose
  // profile exists, and deduplicate a retried insert by (profile, group[, function]).
  profile_endpoints: {
    columns: `profile_id String, service String, commit String, metric String, from_ts Int64, to_ts Int64, day Date,
      endpoint String, flag_key String, flag_variant String, samples Float64, cost Float64`,
    order: 'service, metric, commit, endpoint, flag_key, flag_variant, from_ts, profile_id',
    partition: 'toYYYYMM(day)',
    shardKey: 'cityHash64(profile_id)',
  },
  profile_functions: {
    columns: `profile_id String, service String, commit String, metric String, from_ts Int64, to_ts Int64, day Date,
      endpoint String, flag_key String, flag_variant String, function_name String, file_name String, line UInt32,
      self_samples Float64, self_cost Float64, total_samples Float64, total_cost Float64`,
    order:
      'service, metric, commit, endpoint, flag_key, flag_variant, from_ts, profile_id, function_name, file_name, line',
    partition: 'toYYYYMM(day)',
    shardKey: 'cityHash64(profile_id)',
  },
};

/** The columns of a table, in DDL order: what inserts encode. */
export function columnsOf(table: TableName): Column[] {
  return TABLES[table].columns.split(',').map((part) => {
    const [name, type] = part.trim().split(/\s+/) as [string, ColumnType];
    return [name, type] as const;
  });
}

export function partitionOf(table: TableName): 'day' | 'month' {
  return TABLES[table].partition === 'day' ? 'day' : 'month';
}

/** The DDL of one node, in order. */
export function schemaStatements(database: string, cluster: string | undefined): Sql[] {
  const db = ident(database);
  const out: Sql[] = [
    sql`CREATE DATABASE IF NOT EXISTS ${db}`,
    sql`CREATE TABLE IF NOT EXISTS ${db}.schema_version (version UInt32, applied_at Int64) ENGINE = MergeTree ORDER BY version`,
  ];
  for (const name of ALL_TABLES) {
    const def = TABLES[name];
    const local = ident(`${name}_local`);
    // Identifiers and column lists here are constants of this file, never input.
    out.push(
      sql`CREATE TABLE IF NOT EXISTS ${db}.${local} (${rawSql(def.columns)}) ENGINE = ReplacingMergeTree PARTITION BY ${rawSql(def.partition)} ORDER BY (${rawSql(def.order)})`,
    );
    if (cluster !== undefined) {
      out.push(
        sql`CREATE TABLE IF NOT EXISTS ${db}.${ident(name)} AS ${db}.${local} ENGINE = Distributed(${ident(cluster)}, ${db}, ${local}, ${rawSql(def.shardKey)})`,
      );
    }
  }
  return out;
}

/** Constant SQL text of this module (column lists, keys): never call with input. */
function rawSql(constant: string): Sql {
  return new Sql(constant.replace(/\s+/g, ' '));
}
