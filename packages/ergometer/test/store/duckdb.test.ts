import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import { runStoreConformance } from './conformance';

runStoreConformance('duckdb', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ergometer-duckdb-'));
  // A small compaction threshold so that the suite exercises merged and unmerged rows together.
  const store = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb'), compactAfterRows: 500 });
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
