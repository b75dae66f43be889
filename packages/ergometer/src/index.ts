export type { ClickHouseStoreOptions } from './store/clickhouse/index';
export { openClickHouseStore } from './store/clickhouse/index';
export type { DuckDbStoreOptions } from './store/duckdb/store';
export { DEFAULT_DUCKDB_PATH, DuckDbStore, openDuckDbStore } from './store/duckdb/store';
export type { StoreErrorCode } from './store/errors';
export { StoreError } from './store/errors';
export { binBounds, binOf, binValue, mergeHistogram, quantile } from './store/histogram';
export type { PartialAggregate } from './store/rollup';
export { rollUpSamples } from './store/rollup';
export type {
  AggregateQuery,
  AggregateRow,
  CommitInfo,
  CountRow,
  Deploy,
  EndpointStats,
  IngestBatch,
  IngestResult,
  Metric,
  ProfileMeta,
  Range,
  RetentionPolicy,
  RetentionResult,
  ServiceInfo,
  Store,
  StoredProfile,
  StoredSample,
  UsersRow,
} from './store/types';
export { VERSION } from './version';
