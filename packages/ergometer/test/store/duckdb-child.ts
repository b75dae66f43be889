/**
 * Child process for the DuckDB crash and lock tests (not a test file itself).
 *
 *   node duckdb-child.js hold FILE          opens the store, prints "ready", waits to be killed
 *   node duckdb-child.js ingest FILE SEED   ingests the seeded batches, printing "ack <batchId>"
 *                                           after each ingest resolves, until killed
 */
import { openDuckDbStore } from '../../src/store/duckdb/store';
import { generateDataset } from './dataset';

async function main(): Promise<void> {
  const [mode, file, seed] = process.argv.slice(2);
  if (file === undefined) throw new Error('usage: duckdb-child.js hold|ingest FILE [SEED]');
  // Small thresholds, so that kills land during aggregate flushes and compactions too.
  const store = openDuckDbStore({ path: file, compactAfterRows: 300, aggregateFlushRows: 150 });
  await store.init();
  if (mode === 'hold') {
    process.stdout.write('ready\n');
    setInterval(() => undefined, 60_000);
    return;
  }
  const { batches } = generateDataset(Number(seed ?? 1), 400);
  for (let i = 0; i < batches.length; ) {
    // Alternate single ingests and group commits of three.
    const group = i % 2 === 0 ? batches.slice(i, i + 1) : batches.slice(i, i + 3);
    const results = await store.ingestMany(group);
    for (let k = 0; k < group.length; k++) {
      if (results[k]?.stored) process.stdout.write(`ack ${group[k]?.batchId}\n`);
    }
    i += group.length;
  }
  process.stdout.write('done\n');
  await store.close();
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof Error ? `${(error as { code?: string }).code ?? ''} ${error.stack}` : String(error)}\n`,
  );
  process.exit(1);
});
