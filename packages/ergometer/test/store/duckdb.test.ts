import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type DuckDBConnection, DuckDBInstance, INTEGER } from '@duckdb/node-api';
import {
  decodeUsersSketch,
  encodeUsersSketch,
  mergeUsersSketches,
  type UsersSketch,
} from '@ergometer/agent/users-sketch';
import { MIGRATIONS, migrate, SCHEMA_VERSION } from '../../src/store/duckdb/migrations';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import { StoreError } from '../../src/store/errors';
import type { IngestBatch } from '../../src/store/types';
import { assertAggregatesEqual, expectedAggregates, runStoreConformance } from './conformance';
import { generateDataset, seededRandom, T0_MS, toStored } from './dataset';

const CHILD = path.join(__dirname, 'duckdb-child.js');
const HOUR_MS_FOR_TEST = 3_600_000;

function tempDir(): { dir: string; file: string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'ergometer-duckdb-'));
  return { dir, file: path.join(dir, 'ergometer.duckdb'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

runStoreConformance('duckdb', async () => {
  const { file, remove } = tempDir();
  // A small compaction threshold so that the suite reads merged and unmerged rows together.
  const store = openDuckDbStore({ path: file, compactAfterRows: 500 });
  return {
    store,
    cleanup: async () => {
      await store.close();
      remove();
    },
  };
});

/** Size of the file's write-ahead log; 0 when there is none. */
function walBytes(file: string): number {
  try {
    return statSync(`${file}.wal`).size;
  } catch {
    return 0;
  }
}

/** Opens the file with DuckDB directly (no store) for tests that prepare an old or odd schema. */
async function withRawFile<T>(
  file: string,
  task: (run: (sql: string) => Promise<void>, instance: DuckDBInstance) => Promise<T>,
): Promise<T> {
  const instance = await DuckDBInstance.create(file);
  const connection = await instance.connect();
  try {
    return await task(async (sql) => {
      await connection.run(sql);
    }, instance);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

function rejectsWithCode(promise: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  return assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof StoreError, `a StoreError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  });
}

describe('duckdb store: schema versions, migrations and the write path', () => {
  const temp = tempDir();
  after(() => temp.remove());

  it('migrates a file written at schema version 1 to the current version, keeping its data', async () => {
    const file = path.join(temp.dir, 'v1.duckdb');
    await withRawFile(file, async (run, instance) => {
      const connection = await instance.connect();
      assert.deepEqual(await migrate(connection, file, 1), { from: 0, to: 1 });
      connection.closeSync();
      await run(`INSERT INTO deploys VALUES ('api', 'old-commit', ${T0_MS})`);
      await run(
        `INSERT INTO batches VALUES ('old-batch', 1, 'api', 'h', 'r', 'old-commit', '', 'cpu_ns', '0.0.1', 'node', 0, ${T0_MS}, 0)`,
      );
    });
    assert.ok(SCHEMA_VERSION > 1, 'there is a migration after version 1 to test');
    const store = openDuckDbStore({ path: file });
    try {
      await store.init();
      assert.deepEqual(await store.deploys('api'), [{ service: 'api', commit: 'old-commit', ts: T0_MS }]);
      // The batch recorded before the migration is still recognised.
      const [batch] = generateDataset(3, 1).batches;
      assert.ok(batch);
      assert.equal((await store.ingest({ ...batch, batchId: 'old-batch' })).stored, false);
      // Version 2 added profiles.
      const profile = await store.storeProfile(
        { service: 'api', commit: 'c', host: 'h', metric: 'cpu_ns', from: T0_MS, to: T0_MS + 1 },
        Buffer.from('pprof'),
        T0_MS,
      );
      assert.equal((await store.getProfile(profile.id))?.toString(), 'pprof');
    } finally {
      await store.close();
    }
    await withRawFile(file, async (_run, instance) => {
      const connection = await instance.connect();
      const rows = (await connection.runAndReadAll('SELECT version FROM schema_version ORDER BY version')).getRowsJS();
      connection.closeSync();
      assert.deepEqual(
        rows.map((r) => r[0]),
        MIGRATIONS.map((m) => m.version),
      );
    });
  });

  it('migration 3 fills the hourly aggregates from the minute rows of a version-2 file', async () => {
    const file = path.join(temp.dir, 'v2.duckdb');
    const data = generateDataset(11, 40);
    const store = openDuckDbStore({ path: file });
    await store.init();
    await store.ingestMany(data.batches);
    await store.close();
    // Make it the file a version-2 ergometer left: minute rows only.
    await withRawFile(file, async (run) => {
      await run('DROP TABLE aggregates_hourly');
      await run('DELETE FROM schema_version WHERE version >= 3');
    });
    await reopenAndCheck();
    // A version-2 file that already has an (incomplete) hourly table, as an interim build left: refilled.
    await withRawFile(file, async (run) => {
      await run('DELETE FROM aggregates_hourly WHERE n % 2 = 0');
      await run('DELETE FROM schema_version WHERE version >= 3');
    });
    await reopenAndCheck();
  });

  it("migration 5 merges the users sketches of a version-4 file, one per minute, keeping each minute's union", async () => {
    const file = path.join(temp.dir, 'v4.duckdb');
    const data = generateDataset(12, 40);
    const store = openDuckDbStore({ path: file });
    await store.init();
    await store.ingestMany(data.batches);
    await store.close();
    // Make it the file a version-4 ergometer left: raw users rows only.
    await withRawFile(file, async (run) => {
      await run('DROP TABLE users_merged');
      await run("DELETE FROM store_state WHERE name = 'users_merged_built'");
      await run('DELETE FROM schema_version WHERE version >= 5');
    });
    const migrated = openDuckDbStore({ path: file });
    await migrated.init();
    try {
      for (const service of ['api', 'web']) {
        const expected = new Map<number, UsersSketch[]>();
        for (const b of data.batches) {
          if (b.service !== service) continue;
          for (const u of b.users)
            expected.set(u.minute, [...(expected.get(u.minute) ?? []), decodeUsersSketch(u.sketch)]);
        }
        assert.ok(expected.size > 0, `${service}: the dataset has users sketches`);
        const rows = await migrated.users({ service });
        assert.deepEqual(
          rows.map((r) => r.minute),
          [...expected.keys()].sort((a, b) => a - b),
        );
        for (const row of rows) {
          const sketches = expected.get(row.minute) as UsersSketch[];
          assert.deepEqual(
            row.sketches,
            [encodeUsersSketch(mergeUsersSketches(sketches[0] as UsersSketch, ...sketches.slice(1)))],
            `${service} minute ${row.minute}: one sketch, the union of those received`,
          );
        }
      }
    } finally {
      await migrated.close();
    }
  });

  it('users sketches of one minute from several ingest transactions: compact() leaves one row, the same union', async () => {
    const file = path.join(temp.dir, 'users-compact.duckdb');
    const data = generateDataset(13, 40);
    const store = openDuckDbStore({ path: file });
    await store.init();
    try {
      // One transaction per batch, and a late batch whose sketches are all for the first minute.
      for (const batch of data.batches) await store.ingest(batch);
      const withUsers = data.batches.filter((b) => b.service === 'api' && b.users.length > 0);
      const first = withUsers[0] as IngestBatch;
      const late = withUsers[withUsers.length - 1] as IngestBatch;
      const minute = (first.users[0] as { minute: number }).minute;
      await store.ingest({
        ...late,
        batchId: 'late-users',
        users: late.users.map((u) => ({ minute, sketch: u.sketch })),
      });
      const union = (rows: Array<{ minute: number; sketches: string[] }>) =>
        rows.map((r) => {
          const sketches = r.sketches.map(decodeUsersSketch);
          return [r.minute, encodeUsersSketch(mergeUsersSketches(sketches[0] as UsersSketch, ...sketches.slice(1)))];
        });
      const before = await store.users({ service: 'api' });
      assert.ok(
        before.some((r) => r.sketches.length > 1),
        'some minute has sketches from several transactions',
      );
      await store.compact();
      const after = await store.users({ service: 'api' });
      assert.ok(
        after.every((r) => r.sketches.length === 1),
        'one sketch a minute',
      );
      assert.deepEqual(union(after), union(before));
    } finally {
      await store.close();
    }
  });

  it('compact() merges the partial rows of each key into one and leaves every answer as it was', async () => {
    const file = path.join(temp.dir, 'aggregates-compact.duckdb');
    const data = generateDataset(17, 60);
    // Never on its own: the test decides when rows are flushed and merged.
    const store = openDuckDbStore({ path: file, compactAfterRows: 1e9, aggregateFlushMs: 3_600_000 });
    await store.init();
    const queries = ['api', 'web'].flatMap((service) => [
      { service, flags: 'all' as const },
      { service, flags: 'all' as const, bucketMs: HOUR_MS_FOR_TEST },
      { service, bucketMs: 5 * 60_000, groupBy: ['endpoint' as const] },
    ]);
    let merged: { rowsBefore: number; rowsAfter: number };
    try {
      // A flush after every batch: a key whose minute (or hour) spans batches gets a row per batch.
      for (const batch of data.batches) {
        await store.ingest(batch);
        await store.flushAggregates();
      }
      merged = await store.compact();
      assert.ok(merged.rowsAfter > 0 && merged.rowsBefore > merged.rowsAfter, JSON.stringify(merged));
      for (const q of queries) {
        assertAggregatesEqual(await store.aggregates(q), expectedAggregates(data.samples, q), JSON.stringify(q));
      }
      // Rows merged once stay merged; new partial rows of the same keys merge with them.
      const again = data.batches.slice(0, 5).map((b) => ({ ...b, batchId: `${b.batchId}-again` }));
      for (const batch of again) {
        await store.ingest(batch);
        await store.flushAggregates();
      }
      assert.ok((await store.compact()).rowsAfter > 0, 'the repeated batches merged into existing rows');
      const all = [...data.samples, ...again.flatMap((b) => b.samples.map((s) => toStored(b, s)))];
      for (const q of queries) {
        assertAggregatesEqual(
          await store.aggregates(q),
          expectedAggregates(all, q),
          `after repeats ${JSON.stringify(q)}`,
        );
      }
      assert.deepEqual(await store.compact(), { rowsBefore: 0, rowsAfter: 0 }, 'nothing left to merge');
    } finally {
      await store.close();
    }
    await withRawFile(file, async (_run, instance) => {
      const connection = await instance.connect();
      try {
        for (const table of ['aggregates', 'aggregates_hourly']) {
          const reader = await connection.runAndReadAll(`SELECT count(*)::INTEGER AS rows,
              count(*) FILTER (WHERE NOT compacted)::INTEGER AS uncompacted,
              (SELECT count(*)::INTEGER FROM (SELECT DISTINCT service, commit_id, endpoint, metric, host_class,
                 flag_key, flag_variant, minute FROM ${table})) AS keys
            FROM ${table}`);
          const row = reader.getRowObjectsJS()[0] as { rows: number; uncompacted: number; keys: number };
          assert.equal(row.rows, row.keys, `${table}: one row per key`);
          assert.equal(row.uncompacted, 0, `${table}: every row marked compacted`);
        }
      } finally {
        connection.closeSync();
      }
    });
  });

  it('checkpoint() empties the write-ahead log: a copy of the database file alone holds every sample', async () => {
    const file = path.join(temp.dir, 'checkpoint.duckdb');
    const copy = path.join(temp.dir, 'checkpoint-copy.duckdb');
    const data = generateDataset(19, 12);
    const store = openDuckDbStore({ path: file });
    await store.init();
    try {
      for (const batch of data.batches) await store.ingest(batch);
      assert.ok(walBytes(file) > 0, 'the ingests are in the log before the checkpoint');
      await store.checkpoint();
      assert.equal(walBytes(file), 0, 'nothing left in the log');
      // The file alone, nothing writing meanwhile.
      copyFileSync(file, copy);
    } finally {
      await store.close();
    }
    const restored = openDuckDbStore({ path: copy });
    await restored.init();
    try {
      assert.equal(await restored.sampleCount(), data.samples.length);
      // The aggregates were never flushed before the copy: init() rebuilt them from the samples.
      const q = { service: 'api', flags: 'all' as const };
      assertAggregatesEqual(await restored.aggregates(q), expectedAggregates(data.samples, q), 'restored copy');
    } finally {
      await restored.close();
    }
  });

  async function reopenAndCheck(): Promise<void> {
    const file = path.join(temp.dir, 'v2.duckdb');
    const data = generateDataset(11, 40);
    const migrated = openDuckDbStore({ path: file });
    await migrated.init();
    try {
      for (const service of ['api', 'web']) {
        // Whole hours come from the hourly table, 5-minute buckets from the minute table: both must be right.
        for (const q of [
          { service, flags: 'all' as const },
          { service, flags: 'all' as const, bucketMs: HOUR_MS_FOR_TEST },
          { service, bucketMs: 5 * 60_000 },
        ]) {
          assertAggregatesEqual(await migrated.aggregates(q), expectedAggregates(data.samples, q), JSON.stringify(q));
        }
      }
    } finally {
      await migrated.close();
    }
  }

  it('init() on an up-to-date file changes nothing (idempotent across restarts)', async () => {
    const file = path.join(temp.dir, 'restart.duckdb');
    for (let i = 0; i < 2; i++) {
      const store = openDuckDbStore({ path: file });
      await store.init();
      await store.recordDeploy({ service: 's', commit: `c${i}`, ts: T0_MS + i });
      await store.close();
    }
    const store = openDuckDbStore({ path: file });
    await store.init();
    assert.deepEqual(
      (await store.deploys('s')).map((d) => d.commit),
      ['c0', 'c1'],
    );
    await store.close();
  });

  it('refuses a file whose schema is newer than this code, and leaves it as it was', async () => {
    const file = path.join(temp.dir, 'newer.duckdb');
    await withRawFile(file, async (run, instance) => {
      const connection = await instance.connect();
      await migrate(connection, file);
      await connection.run('INSERT INTO schema_version VALUES ($v, 0)', { v: SCHEMA_VERSION + 1 }, { v: INTEGER });
      connection.closeSync();
      await run('SELECT 1');
    });
    const store = openDuckDbStore({ path: file });
    await rejectsWithCode(
      store.init(),
      'ERGOMETER_SCHEMA_TOO_NEW',
      /newer than the \d+ this ergometer knows: upgrade ergometer/,
    );
    await store.close();
    await withRawFile(file, async (_run, instance) => {
      const connection = await instance.connect();
      const rows = (await connection.runAndReadAll('SELECT max(version) FROM schema_version')).getRowsJS();
      connection.closeSync();
      assert.equal(rows[0]?.[0], SCHEMA_VERSION + 1);
    });
  });

  it('a failing migration is rolled back whole and reported with its own code', async () => {
    const file = path.join(temp.dir, 'conflict.duckdb');
    await withRawFile(file, async (run, instance) => {
      const connection = await instance.connect();
      await migrate(connection, file, 1);
      connection.closeSync();
      // Someone created a table the next migration wants to create.
      await run('CREATE TABLE profiles (x INTEGER)');
    });
    const store = openDuckDbStore({ path: file });
    await rejectsWithCode(store.init(), 'ERGOMETER_MIGRATION_FAILED', /schema version 2 .*unchanged at version 1/);
    await store.close();
    await withRawFile(file, async (_run, instance) => {
      const connection = await instance.connect();
      const rows = (await connection.runAndReadAll('SELECT max(version) FROM schema_version')).getRowsJS();
      connection.closeSync();
      assert.equal(rows[0]?.[0], 1);
    });
  });

  it('regression: a refused duplicate batch does not abort a later write when its appender is collected', async () => {
    // The duplicate batch id fails the batches appender; its buffered row used to stay in the
    // appender and be flushed into the next transaction when the appender was garbage-collected.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const store = openDuckDbStore({ path: path.join(temp.dir, 'dup.duckdb') });
    await store.init();
    try {
      const batches = generateDataset(5, 6).batches;
      const [first] = batches as [IngestBatch];
      assert.equal((await store.ingest(first)).stored, true);
      // Refuse a duplicate, then collect garbage while a write transaction is open: the refused
      // appender's finalizer must find nothing left to flush into it.
      for (const batch of batches.slice(1)) {
        assert.equal((await store.ingest(first)).stored, false);
        const inTransaction = (
          store as unknown as { transaction: (task: (c: DuckDBConnection) => Promise<void>) => Promise<void> }
        ).transaction.bind(store);
        await inTransaction(async (connection) => {
          for (let i = 0; i < 3; i++) {
            gc();
            await new Promise((resolve) => setImmediate(resolve));
          }
          await connection.run('SELECT 1'); // throws 'transaction is aborted' if a stale row was flushed
        });
        assert.equal((await store.ingest(batch)).stored, true);
      }
      const all = batches.flatMap((batch) => batch.samples.map((s) => toStored(batch, s)));
      assert.equal(await store.sampleCount(), all.length);
      for (const service of new Set(all.map((s) => s.service))) {
        const q = { service, flags: 'all' as const };
        assertAggregatesEqual(await store.aggregates(q), expectedAggregates(all, q), service);
      }
    } finally {
      await store.close();
    }
  });

  it('a batch that cannot be written fails only its own call, not the others committed with it', async () => {
    const store = openDuckDbStore({ path: path.join(temp.dir, 'group.duckdb') });
    await store.init();
    try {
      const [a, bad, c] = generateDataset(6, 3).batches as [IngestBatch, IngestBatch, IngestBatch];
      // A time that is not a number: the server's validation refuses it; the store must still isolate it.
      const broken = { ...bad, samples: [{ ...(bad.samples[0] as IngestBatch['samples'][number]), ts: Number.NaN }] };
      const outcomes = await Promise.allSettled([store.ingest(a), store.ingest(broken), store.ingest(c)]);
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ['fulfilled', 'rejected', 'fulfilled'],
      );
      assert.equal(await store.sampleCount(), a.samples.length + c.samples.length);
      // Nothing of the refused batch was kept: sending it again, repaired, stores it.
      assert.equal((await store.ingest(bad)).stored, true);
      const all = [a, bad, c].flatMap((batch) => batch.samples.map((s) => toStored(batch, s)));
      for (const service of new Set(all.map((s) => s.service))) {
        const q = { service, flags: 'all' as const };
        assertAggregatesEqual(await store.aggregates(q), expectedAggregates(all, q), service);
      }
    } finally {
      await store.close();
    }
  });

  it('concurrent ingests of one batch: exactly one call answers stored: true (the writer is serial)', async () => {
    const store = openDuckDbStore({ path: path.join(temp.dir, 'concurrent.duckdb') });
    await store.init();
    try {
      const [a, b] = generateDataset(12, 2).batches as [IngestBatch, IngestBatch];
      const results = await Promise.all([store.ingest(a), store.ingestMany([b, a]), store.ingest(a), store.ingest(b)]);
      assert.deepEqual(
        results.flat().map((r) => r.stored),
        [true, true, false, false, false],
      );
      assert.equal(await store.sampleCount(), a.samples.length + b.samples.length);
    } finally {
      await store.close();
    }
  });

  it('methods called after close() fail with ERGOMETER_STORE_CLOSED', async () => {
    const store = openDuckDbStore({ path: path.join(temp.dir, 'closed.duckdb') });
    await store.init();
    await store.close();
    await rejectsWithCode(store.sampleCount(), 'ERGOMETER_STORE_CLOSED', /closed/);
    await rejectsWithCode(store.init(), 'ERGOMETER_STORE_CLOSED', /closed/);
  });
});

interface Child {
  process: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
  waitFor: (predicate: (lines: string[]) => boolean) => Promise<void>;
}

function startChild(args: string[]): Child {
  const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  const waiters: Array<() => void> = [];
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    lines.push(line);
    for (const w of waiters) w();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    process: child,
    lines,
    exited,
    waitFor: (predicate) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (predicate(lines)) resolve();
        };
        waiters.push(check);
        void exited.then(() => {
          if (predicate(lines)) resolve();
          else reject(new Error(`child exited before the expected output; stderr: ${stderr}`));
        });
        check();
      }),
  };
}

describe('duckdb store: one writer process per file', () => {
  const temp = tempDir();
  let child: Child | undefined;
  after(async () => {
    if (child && child.process.exitCode === null) {
      child.process.kill('SIGKILL');
      await child.exited;
    }
    temp.remove();
  });

  it('init() fails with ERGOMETER_DB_LOCKED while another process has the file, and works once it is gone', async () => {
    child = startChild(['hold', temp.file]);
    await child.waitFor((lines) => lines.includes('ready'));
    const store = openDuckDbStore({ path: temp.file });
    await rejectsWithCode(
      store.init(),
      'ERGOMETER_DB_LOCKED',
      new RegExp(`another ergometer serve is using .*ergometer\\.duckdb \\(process ${child.process.pid}\\)`),
    );
    child.process.kill('SIGKILL');
    await child.exited;
    await store.init(); // the failed init can be retried
    assert.equal(await store.sampleCount(), 0);
    await store.close();
  });
});

describe('duckdb store: an acknowledged ingest survives kill -9', () => {
  const temp = tempDir();
  let child: Child | undefined;
  after(async () => {
    if (child && child.process.exitCode === null) {
      child.process.kill('SIGKILL');
      await child.exited;
    }
    temp.remove();
  });

  it('after each SIGKILL, every acknowledged batch is there, with its aggregates, and nothing half-written', async () => {
    const seed = 42;
    const { batches } = generateDataset(seed, 400);
    const random = seededRandom(7);
    const acked = new Set<string>();
    for (let round = 0; round < 4; round++) {
      const killAfter = 5 + Math.floor(random() * 40);
      const ackedBefore = acked.size;
      child = startChild(['ingest', temp.file, String(seed)]);
      await child.waitFor(
        (lines) => lines.filter((l) => l.startsWith('ack ')).length >= killAfter || lines.includes('done'),
      );
      child.process.kill('SIGKILL');
      await child.exited;
      for (const line of child.lines) if (line.startsWith('ack ')) acked.add(line.slice(4));
      assert.ok(acked.size > ackedBefore, `round ${round}: the writer acknowledged new batches`);

      const store = openDuckDbStore({ path: temp.file });
      await store.init();
      try {
        // Writes are serial, so what is stored is a prefix of the batch list: find it from the count.
        const stored = await store.sampleCount();
        let prefix = 0;
        let samples = 0;
        while (
          prefix < batches.length &&
          samples + (batches[prefix]?.samples.length ?? 0) <= stored &&
          samples < stored
        ) {
          samples += batches[prefix]?.samples.length ?? 0;
          prefix++;
        }
        assert.equal(samples, stored, `round ${round}: stored samples are exactly the first ${prefix} batches`);
        const storedIds = new Set(batches.slice(0, prefix).map((b) => b.batchId));
        for (const id of acked) assert.ok(storedIds.has(id), `round ${round}: acknowledged batch ${id} is stored`);
        // At most the group in flight (three batches) was committed without its acknowledgement reaching us.
        assert.ok(prefix - acked.size <= 3, `round ${round}: ${prefix} stored, ${acked.size} acknowledged`);
        // Aggregates were committed with their samples: equal to the sums over the stored prefix.
        const storedSamples = batches.slice(0, prefix).flatMap((b) => b.samples.map((s) => toStored(b, s)));
        for (const service of ['api', 'web']) {
          const q = { service, flags: 'all' as const };
          assertAggregatesEqual(
            await store.aggregates(q),
            expectedAggregates(storedSamples, q),
            `round ${round} ${service}`,
          );
        }
        // Re-sending an acknowledged batch stores nothing.
        const first = batches.find((b) => acked.has(b.batchId));
        assert.ok(first);
        assert.equal((await store.ingest(first)).stored, false);
        assert.equal(await store.sampleCount(), stored);
      } finally {
        await store.close();
      }
    }
  });
});
