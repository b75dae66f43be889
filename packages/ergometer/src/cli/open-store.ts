/**
 * Opens the store `ergometer serve` was pointed at and initialises its schema.
 */
import { ErgometerError } from '../errors';
import { openDuckDbStore } from '../store/duckdb/store';
import type { Store } from '../store/types';

export type StoreTarget = { db: string } | { clickhouse: string };

/**
 * Opens and initialises the store (`init()` creates or migrates the schema). Store errors
 * (ERGOMETER_DB_LOCKED, ERGOMETER_SCHEMA_TOO_NEW…) pass through with their codes.
 */
export async function openStore(target: StoreTarget): Promise<Store> {
  if ('clickhouse' in target) {
    throw new ErgometerError(
      'ERGOMETER_BACKEND_UNAVAILABLE',
      1,
      'the ClickHouse store is not available in this build; use --db FILE (embedded DuckDB)',
    );
  }
  const store = openDuckDbStore({ path: target.db });
  try {
    await store.init();
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
  return store;
}
