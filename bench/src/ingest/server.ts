/**
 * Child process of the ingest benchmark: the real collector (createCollector, the code behind
 * `ergometer serve`) on a DuckDB file or a ClickHouse server, listening on a free loopback port.
 * Runs alone in its process so that the benchmark can read exactly its CPU time from /proc.
 *
 *   node server.js '{"backend":"duckdb","db":"/tmp/x.duckdb"}'
 *   node server.js '{"backend":"clickhouse","url":"http://127.0.0.1:8123","database":"bench"}'
 *
 * Prints one JSON line `{"port": N}` once listening; SIGTERM closes the collector (writing
 * everything queued) and the store, then exits. SIGUSR2 does now the work a DuckDB store defers
 * (writes the pending aggregates, merges partial aggregate rows, checkpoints the log into the file)
 * and prints `{"settled": true}`: the benchmark counts that work with the samples that caused it.
 */
import {
  AlertBook,
  createCollector,
  openClickHouseStore,
  openDuckDbStore,
  resolveDetectorConfig,
  type Store,
} from 'ergometer';
import { settleStore } from './workload';

export interface ServerConfig {
  backend: 'duckdb' | 'clickhouse';
  /** DuckDB file. */
  db?: string;
  /** ClickHouse HTTP URL. */
  url?: string;
  database?: string;
  ingestToken: string;
  readToken: string;
  /** Serve GET /v1/alerts from an (empty, in-memory) alert book, as `ergometer serve` does; else it answers 501. */
  alerts?: boolean;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as ServerConfig;
  let store: Store;
  if (config.backend === 'duckdb') {
    store = openDuckDbStore({ path: config.db as string });
  } else {
    store = openClickHouseStore({ url: config.url as string, database: config.database ?? 'ergometer' });
  }
  await store.init();
  const collector = createCollector({
    store,
    ingestTokens: [config.ingestToken],
    readTokens: [config.readToken],
    log: (message) => process.stderr.write(`bench collector: ${message}\n`),
    ...(config.alerts ? { read: { alerts: { book: new AlertBook(undefined), config: resolveDetectorConfig() } } } : {}),
  });
  const address = await collector.listen(0, '127.0.0.1');
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
  process.on('SIGUSR2', () => {
    settleStore(store).then(
      () => process.stdout.write(`${JSON.stringify({ settled: true })}\n`),
      (error: unknown) =>
        process.stdout.write(
          `${JSON.stringify({ settled: false, error: (error as Error)?.message ?? String(error) })}\n`,
        ),
    );
  });
  process.once('SIGTERM', () => {
    void (async () => {
      await collector.close();
      await store.close();
      process.exit(0);
    })();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`bench collector failed: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
