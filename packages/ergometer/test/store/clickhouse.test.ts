import { after, before } from 'node:test';
import { type SingleClickHouse, startClickHouse } from '../support/clickhouse';
import { clickHouseSuite, openFreshDatabase, type Target } from './clickhouse-suite';
import { runStoreConformance } from './conformance';

// One server for the whole file.
let server: SingleClickHouse | undefined;
before(async () => {
  server = await startClickHouse();
});
after(async () => {
  await server?.stop();
});

function target(): Target {
  if (!server) throw new Error('ClickHouse server not started');
  const url = server.url;
  return { nodeUrls: [url], options: (database) => ({ url, database }) };
}

clickHouseSuite('ClickHouse store, single node', target);
runStoreConformance('clickhouse (single node)', openFreshDatabase(target, 'conf'));
