/**
 * Opens the store `ergometer serve` was pointed at and initialises its schema.
 */
import { ErgometerError } from '../errors';
import type { Store } from '../store/types';

export type StoreTarget = { db: string } | { clickhouse: string };

/** Opens and initialises the store (`init()` creates or migrates the schema). */
export async function openStore(target: StoreTarget): Promise<Store> {
  if ('clickhouse' in target) {
    throw new ErgometerError(
      'ERGOMETER_BACKEND_UNAVAILABLE',
      1,
      'the ClickHouse store is not available in this build; use --db FILE (embedded DuckDB)',
    );
  }
  throw new ErgometerError('ERGOMETER_BACKEND_UNAVAILABLE', 1, 'the DuckDB store is not available in this build yet');
}
