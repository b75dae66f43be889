export type { ClickHouseStoreOptions } from './store';
export { openClickHouseStore } from './store';
