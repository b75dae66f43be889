/**
 * The crash test of crash.ts against a real ClickHouse single node (started once for this file on
 * loopback by the harness): `ergometer serve --clickhouse URL` is SIGKILLed at random points and
 * restarted; afterwards ClickHouse holds exactly the acknowledged samples, none twice.
 */
import { openStore } from '../../src/cli/open-store';
import { type SingleClickHouse, startClickHouse } from '../support/clickhouse';
import { crashTest } from './crash';

let clickhouse: SingleClickHouse | undefined;

function storeUrl(): string {
  if (!clickhouse) throw new Error('ClickHouse server not started');
  return `${clickhouse.url}/ergometer_crash`;
}

crashTest(
  {
    name: 'clickhouse',
    async setup() {
      clickhouse = await startClickHouse();
      const started = clickhouse;
      return () => started.stop();
    },
    serveArgs: () => ['--clickhouse', storeUrl()],
    async count(_dir, service) {
      // The same door `serve` uses, so the count reads what the collector wrote, through its own dedup.
      const store = await openStore({ clickhouse: storeUrl() });
      try {
        return await store.sampleCount(service);
      } finally {
        await store.close();
      }
    },
    // A restart costs about a second here: more kills, more chances to land between a commit and its 200.
  },
  10,
);
