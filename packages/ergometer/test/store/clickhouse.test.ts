import { type SingleClickHouse, startClickHouse } from '../support/clickhouse';
import { clickHouseSuite } from './clickhouse-suite';

let server: SingleClickHouse | undefined;

clickHouseSuite(
  'ClickHouse store, single node',
  async () => {
    server = await startClickHouse();
    const url = server.url;
    return { nodeUrls: [url], options: (database) => ({ url, database }) };
  },
  async () => {
    await server?.stop();
  },
);
