/**
 * Schema of the DuckDB file, as an ordered list of migrations. The file records the versions applied
 * in `schema_version`; init() applies the missing ones in order, each in its own transaction together
 * with its `schema_version` row, so a crash mid-migration leaves the file at the previous version.
 *
 * Never edit a released migration: append a new one. Column names avoid SQL keywords (`commit_id`,
 * `user_id`) so that no statement needs quoting.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { BIGINT, INTEGER } from '@duckdb/node-api';
import { StoreError } from '../errors';

export interface Migration {
  version: number;
  description: string;
  statements: string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'samples, batches, aggregates, counts, users, deploys',
    statements: [
      // One row per stored batch: the batch id makes ingest idempotent; batch_seq (assigned in order by
      // the single writer) ties raw samples to their batch's service, commit, host and metric.
      `CREATE TABLE batches (
        batch_id VARCHAR PRIMARY KEY,
        batch_seq BIGINT NOT NULL,
        service VARCHAR NOT NULL,
        host VARCHAR NOT NULL,
        region VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        host_class VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        agent_version VARCHAR NOT NULL,
        runtime VARCHAR NOT NULL,
        dropped BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        samples INTEGER NOT NULL
      )`,
      // Raw samples, narrow: the batch's fields live in batches (join on batch_seq). Flags are a JSON
      // object (text): filter with json_extract_string(flags, '$.key') or (flags::JSON::MAP(VARCHAR, VARCHAR))['key'].
      `CREATE TABLE samples (
        batch_seq BIGINT NOT NULL,
        ts BIGINT NOT NULL,
        endpoint VARCHAR NOT NULL,
        status INTEGER NOT NULL,
        cost DOUBLE NOT NULL,
        wall_ms DOUBLE NOT NULL,
        db_ms DOUBLE NOT NULL,
        cache_ms DOUBLE NOT NULL,
        http_ms DOUBLE NOT NULL,
        flags VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        weight DOUBLE NOT NULL,
        aborted BOOLEAN NOT NULL
      )`,
      // Aggregates are derived from samples and written in bulk (see store.ts); this row says up to
      // which batch_seq they are written, so that init() can rebuild the rest after a crash.
      `CREATE TABLE store_state (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL)`,
      `INSERT INTO store_state VALUES ('aggregated_through_seq', 0)`,
      // Partial aggregates: each flush appends one row per (service, commit, endpoint, metric, host
      // class, flag row, minute) it accumulated; compaction merges rows of the same key into one
      // (compacted = true). Queries always sum, so both are valid.
      `CREATE TABLE aggregates (
        service VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        endpoint VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        host_class VARCHAR NOT NULL,
        flag_key VARCHAR NOT NULL,
        flag_variant VARCHAR NOT NULL,
        minute BIGINT NOT NULL,
        n BIGINT NOT NULL,
        weight DOUBLE NOT NULL,
        sum_cost DOUBLE NOT NULL,
        sum_cost2 DOUBLE NOT NULL,
        sum_log_cost DOUBLE NOT NULL,
        sum_log_cost2 DOUBLE NOT NULL,
        sum_wall DOUBLE NOT NULL,
        sum_db DOUBLE NOT NULL,
        sum_cache DOUBLE NOT NULL,
        sum_http DOUBLE NOT NULL,
        min_ts BIGINT NOT NULL,
        max_ts BIGINT NOT NULL,
        cost_hist MAP(SMALLINT, INTEGER) NOT NULL,
        wall_hist MAP(SMALLINT, INTEGER) NOT NULL,
        compacted BOOLEAN NOT NULL
      )`,
      `CREATE TABLE counts (
        service VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        host VARCHAR NOT NULL,
        minute BIGINT NOT NULL,
        endpoint VARCHAR NOT NULL,
        requests BIGINT NOT NULL
      )`,
      `CREATE TABLE users (
        service VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        host VARCHAR NOT NULL,
        minute BIGINT NOT NULL,
        sketch VARCHAR NOT NULL
      )`,
      `CREATE TABLE deploys (
        service VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        ts BIGINT NOT NULL,
        PRIMARY KEY (service, commit_id, ts)
      )`,
    ],
  },
  {
    version: 2,
    description: 'profiles (pprof bytes and what they cover)',
    statements: [
      `CREATE TABLE profiles (
        id VARCHAR PRIMARY KEY,
        service VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        host VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        from_ms BIGINT NOT NULL,
        to_ms BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        pprof BLOB NOT NULL
      )`,
    ],
  },
  {
    version: 3,
    description: 'aggregates per hour beside the minute rows, filled from them',
    statements: [
      // The same rows per hour (`minute` is the hour's start), written with the minute rows: queries
      // read whole hours of their range here, 60 times fewer rows to merge. IF NOT EXISTS and the
      // DELETE below: for a while, main's version 1 created this table too; refilled from minutes here.
      `CREATE TABLE IF NOT EXISTS aggregates_hourly (
        service VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        endpoint VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        host_class VARCHAR NOT NULL,
        flag_key VARCHAR NOT NULL,
        flag_variant VARCHAR NOT NULL,
        minute BIGINT NOT NULL,
        n BIGINT NOT NULL,
        weight DOUBLE NOT NULL,
        sum_cost DOUBLE NOT NULL,
        sum_cost2 DOUBLE NOT NULL,
        sum_log_cost DOUBLE NOT NULL,
        sum_log_cost2 DOUBLE NOT NULL,
        sum_wall DOUBLE NOT NULL,
        sum_db DOUBLE NOT NULL,
        sum_cache DOUBLE NOT NULL,
        sum_http DOUBLE NOT NULL,
        min_ts BIGINT NOT NULL,
        max_ts BIGINT NOT NULL,
        cost_hist MAP(SMALLINT, INTEGER) NOT NULL,
        wall_hist MAP(SMALLINT, INTEGER) NOT NULL,
        compacted BOOLEAN NOT NULL
      )`,
      'DELETE FROM aggregates_hourly',
      // Existing minute rows merged per hour: sums added, histogram bins added bin by bin.
      `INSERT INTO aggregates_hourly
       WITH a AS (SELECT *, (minute // 3600000) * 3600000 AS hour FROM aggregates),
       sums AS (
         SELECT service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, sum(n) AS n, sum(weight) AS weight, sum(sum_cost) AS sum_cost, sum(sum_cost2) AS sum_cost2,
           sum(sum_log_cost) AS sum_log_cost, sum(sum_log_cost2) AS sum_log_cost2, sum(sum_wall) AS sum_wall,
           sum(sum_db) AS sum_db, sum(sum_cache) AS sum_cache, sum(sum_http) AS sum_http, min(min_ts) AS min_ts,
           max(max_ts) AS max_ts
         FROM a GROUP BY service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour),
       cost AS (
         SELECT service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, map(list(bin ORDER BY bin), list(count ORDER BY bin)) AS cost_hist
         FROM (SELECT service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, bin, sum(count)::INTEGER AS count
               FROM (SELECT service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, unnest(map_keys(cost_hist)) AS bin, unnest(map_values(cost_hist)) AS count FROM a)
               GROUP BY service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, bin)
         GROUP BY service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour),
       wall AS (
         SELECT service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, map(list(bin ORDER BY bin), list(count ORDER BY bin)) AS wall_hist
         FROM (SELECT service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, bin, sum(count)::INTEGER AS count
               FROM (SELECT service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, unnest(map_keys(wall_hist)) AS bin, unnest(map_values(wall_hist)) AS count FROM a)
               GROUP BY service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, bin)
         GROUP BY service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour)
       SELECT service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour, n, weight, sum_cost, sum_cost2, sum_log_cost, sum_log_cost2, sum_wall, sum_db, sum_cache,
         sum_http, min_ts, max_ts, coalesce(cost_hist, MAP {}), coalesce(wall_hist, MAP {}), true
       FROM sums LEFT JOIN cost USING (service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour) LEFT JOIN wall USING (service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, hour)`,
    ],
  },
  {
    version: 4,
    description: 'per-profile sums per endpoint and per function (decoded pprof)',
    statements: [
      // One row per (profile, endpoint, flag key, flag variant); flag_key '' is the row over all samples.
      // The profile's fields are repeated so that reads need no join; from_ms selects, to_ms retains.
      `CREATE TABLE IF NOT EXISTS profile_endpoints (
        profile_id VARCHAR NOT NULL,
        service VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        from_ms BIGINT NOT NULL,
        to_ms BIGINT NOT NULL,
        endpoint VARCHAR NOT NULL,
        flag_key VARCHAR NOT NULL,
        flag_variant VARCHAR NOT NULL,
        samples DOUBLE NOT NULL,
        cost DOUBLE NOT NULL
      )`,
      `CREATE TABLE IF NOT EXISTS profile_functions (
        profile_id VARCHAR NOT NULL,
        service VARCHAR NOT NULL,
        commit_id VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        from_ms BIGINT NOT NULL,
        to_ms BIGINT NOT NULL,
        endpoint VARCHAR NOT NULL,
        flag_key VARCHAR NOT NULL,
        flag_variant VARCHAR NOT NULL,
        function_name VARCHAR NOT NULL,
        file_name VARCHAR NOT NULL,
        line INTEGER NOT NULL,
        self_samples DOUBLE NOT NULL,
        self_cost DOUBLE NOT NULL,
        total_samples DOUBLE NOT NULL,
        total_cost DOUBLE NOT NULL
      )`,
    ],
  },
  {
    version: 5,
    description: 'users sketches merged per service and minute',
    statements: [
      // The union of the users sketches of a (service, minute), appended by ingest in the same transaction
      // as the raw `users` rows and merged to one row by compact(): /v1/efficiency reads about one sketch a minute instead of one per process
      // and batch (12 000 sketches, 64 MB of base64 a day in the 10 M-sample benchmark). Rows of a
      // file made before this version are merged by init() (store_state 'users_merged_built').
      `CREATE TABLE IF NOT EXISTS users_merged (
        service VARCHAR NOT NULL,
        minute BIGINT NOT NULL,
        sketch VARCHAR NOT NULL
      )`,
      // 0: init() (re)builds the table from `users`, also when an older build applies this again.
      `INSERT INTO store_state VALUES ('users_merged_built', 0) ON CONFLICT (name) DO UPDATE SET value = 0`,
    ],
  },
];

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** The highest schema version recorded in the file (0 for a new file). */
export async function currentSchemaVersion(connection: DuckDBConnection): Promise<number> {
  await connection.run(
    'CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)',
  );
  const reader = await connection.runAndReadAll('SELECT coalesce(max(version), 0)::INTEGER AS v FROM schema_version');
  return Number(reader.getRowObjectsJS()[0]?.v ?? 0);
}

/**
 * Brings the file to `target` (default: the newest version), one transaction per migration.
 * Throws ERGOMETER_SCHEMA_TOO_NEW when the file is newer than this code.
 */
export async function migrate(
  connection: DuckDBConnection,
  file: string,
  target: number = SCHEMA_VERSION,
): Promise<{ from: number; to: number }> {
  const from = await currentSchemaVersion(connection);
  if (from > SCHEMA_VERSION) {
    throw new StoreError(
      'ERGOMETER_SCHEMA_TOO_NEW',
      `${file} has schema version ${from}, newer than the ${SCHEMA_VERSION} this ergometer knows: ` +
        'upgrade ergometer to the version that wrote it (or point --db at another file).',
    );
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= from || migration.version > target) continue;
    await connection.run('BEGIN TRANSACTION');
    try {
      for (const statement of migration.statements) await connection.run(statement);
      await connection.run(
        'INSERT INTO schema_version (version, applied_at) VALUES ($version, $appliedAt)',
        { version: migration.version, appliedAt: Date.now() },
        { version: INTEGER, appliedAt: BIGINT },
      );
      await connection.run('COMMIT');
    } catch (error) {
      await connection.run('ROLLBACK').catch(() => undefined);
      throw new StoreError(
        'ERGOMETER_MIGRATION_FAILED',
        `migrating ${file} to schema version ${migration.version} (${migration.description}) failed: ` +
          `${error instanceof Error ? error.message : String(error)}. The file is unchanged at version ` +
          `${migration.version - 1}; restore a backup if it is damaged, or report this error.`,
        { cause: error },
      );
    }
  }
  return { from, to: Math.max(from, Math.min(target, SCHEMA_VERSION)) };
}
