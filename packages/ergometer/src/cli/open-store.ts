/**
 * Opens the store `ergometer serve` was pointed at and initialises its schema.
 */
import { ErgometerError } from '../errors';
import { type ClickHouseStoreOptions, openClickHouseStore } from '../store/clickhouse/index';
import { openDuckDbStore } from '../store/duckdb/store';
import type { Store } from '../store/types';

export type StoreTarget = { db: string } | { clickhouse: string };

/**
 * Opens and initialises the store (`init()` creates or migrates the schema). Store errors
 * (ERGOMETER_DB_LOCKED, ERGOMETER_SCHEMA_TOO_NEW…) pass through with their codes.
 */
export async function openStore(target: StoreTarget): Promise<Store> {
  if ('clickhouse' in target) {
    const clickhouse = openClickHouseStore(parseClickHouseUrl(target.clickhouse));
    try {
      await clickhouse.init();
    } catch (error) {
      await clickhouse.close().catch(() => undefined);
      throw error;
    }
    return clickhouse;
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

/**
 * `--clickhouse URL`: `http(s)://[user:password@]host:port[/database][?cluster=NAME&shards=URL,URL…]`.
 * The database defaults to `ergometer`; with `cluster`, `shards` lists the HTTP URL of every shard
 * (the schema is created on each: ClickHouse 18.16 has no ON CLUSTER without ZooKeeper).
 */
export function parseClickHouseUrl(text: string): ClickHouseStoreOptions {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ErgometerError(
      'ERGOMETER_USAGE',
      2,
      `--clickhouse: expected http://host:8123[/database], got ${JSON.stringify(text)}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ErgometerError(
      'ERGOMETER_USAGE',
      2,
      '--clickhouse: expected an http:// or https:// URL (the HTTP interface, port 8123 by default)',
    );
  }
  const options: ClickHouseStoreOptions = { url: `${url.protocol}//${url.host}` };
  const database = decodeURIComponent(url.pathname.replace(/^\/+|\/+$/g, ''));
  if (database !== '') options.database = database;
  if (url.username !== '') options.username = decodeURIComponent(url.username);
  if (url.password !== '') options.password = decodeURIComponent(url.password);
  const cluster = url.searchParams.get('cluster');
  const shards = url.searchParams.get('shards');
  if ((cluster === null) !== (shards === null)) {
    throw new ErgometerError('ERGOMETER_USAGE', 2, '--clickhouse: give cluster=NAME and shards=URL,URL together');
  }
  if (cluster !== null && shards !== null) {
    options.cluster = {
      name: cluster,
      shardUrls: shards
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    };
  }
  return options;
}
