import path from 'node:path';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import { crashTest } from './crash';

crashTest({
  name: 'duckdb',
  serveArgs: (dir) => ['--db', path.join(dir, 'crash.duckdb')],
  async count(dir, service) {
    const store = openDuckDbStore({ path: path.join(dir, 'crash.duckdb') });
    await store.init();
    try {
      return await store.sampleCount(service);
    } finally {
      await store.close();
    }
  },
});
