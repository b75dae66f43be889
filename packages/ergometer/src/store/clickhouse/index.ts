export type { ClickHouseStoreErrorCode } from './errors';
export { ClickHouseStoreError } from './errors';
export type { ClickHouseStoreOptions } from './store';
export { openClickHouseStore } from './store';
