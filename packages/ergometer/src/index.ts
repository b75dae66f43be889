export type { ClickHouseStoreErrorCode, ClickHouseStoreOptions } from './store/clickhouse/index';
export { ClickHouseStoreError, openClickHouseStore } from './store/clickhouse/index';
export { VERSION } from './version';
