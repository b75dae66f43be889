import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { appendColumnar, type Column } from '../../src/store/duckdb/columns';
import { StoreError } from '../../src/store/errors';
import { emptyPartial, type PartialAggregate, rollUpInto, rollUpSamples } from '../../src/store/rollup';
import { generateDataset, seededRandom } from './dataset';

describe('duckdb store: column-wise appends (columns.ts)', () => {
  let instance: DuckDBInstance;
  let connection: DuckDBConnection;
  before(async () => {
    instance = await DuckDBInstance.create(':memory:');
    connection = await instance.connect();
  });
  after(() => {
    connection.closeSync();
    instance.closeSync();
  });

  async function roundTrip(table: string, columns: Column[]): Promise<Record<string, unknown>[]> {
    const appender = await connection.createAppender(table);
    try {
      appendColumnar(appender, columns);
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    const result = await connection.runAndReadAll(
      `SELECT i::DOUBLE AS i, n::DOUBLE AS n, d, b, s, map_keys(h) AS k, map_values(h) AS v FROM ${table} ORDER BY row_id`,
    );
    return result.getRowObjectsJS() as Record<string, unknown>[];
  }

  it('writes every kind, from plain and typed arrays, across chunk boundaries, and reads back the same values', async () => {
    await connection.run(
      `CREATE TABLE t (row_id INTEGER, i BIGINT, n INTEGER, d DOUBLE, b BOOLEAN, s VARCHAR, h MAP(SMALLINT, INTEGER))`,
    );
    const random = seededRandom(7);
    // 5000 rows: two full chunks of 2048 and a partial one.
    const rows = 5000;
    const ids: number[] = [];
    const bigints: number[] = [];
    const ints = new Int32Array(rows);
    const doubles = new Float64Array(rows);
    const booleans: boolean[] = [];
    const strings: string[] = [];
    const hists: Array<Map<number, number>> = [];
    const edgeBigints = [0, -1, 1, 2 ** 32, 2 ** 32 - 1, -(2 ** 32), 2 ** 53 - 1, -(2 ** 53 - 1), 1_795_779_494_235];
    const edgeStrings = [
      '',
      'a',
      'exactly12chr',
      'thirteen char',
      'GET /api/products/:id',
      'ünïcødé ✓ 😀',
      '{"k":"v"}',
      // Short, but not ASCII: the path for strings of up to 12 bytes must not take these.
      'é',
      'ab😀',
      '\u0000x',
    ];
    for (let r = 0; r < rows; r++) {
      ids.push(r);
      bigints.push(edgeBigints[r] ?? Math.round((random() - 0.5) * 2 ** 52));
      ints[r] = Math.round((random() - 0.5) * 2 ** 31);
      doubles[r] = r === 0 ? Number.NaN : (random() - 0.5) * 1e12;
      booleans.push(random() < 0.5);
      strings.push(edgeStrings[r % edgeStrings.length] + (r % 3 === 0 ? String(r) : ''));
      const hist = new Map<number, number>();
      // Some rows have no bins at all.
      const bins = r % 10 === 0 ? 0 : 1 + Math.floor(random() * 40);
      for (let k = 0; k < bins; k++) hist.set(Math.floor(random() * 1025), 1 + Math.floor(random() * 1000));
      hists.push(hist);
    }
    const read = await roundTrip('t', [
      { kind: 'integer', values: ids },
      { kind: 'bigint', values: bigints },
      { kind: 'integer', values: ints },
      { kind: 'double', values: doubles },
      { kind: 'boolean', values: booleans },
      { kind: 'varchar', values: strings },
      { kind: 'hist', values: hists },
    ]);
    assert.equal(read.length, rows);
    for (let r = 0; r < rows; r++) {
      const row = read[r] as Record<string, unknown>;
      assert.equal(row.i, bigints[r], `bigint of row ${r}`);
      assert.equal(row.n, ints[r], `integer of row ${r}`);
      assert.ok(Object.is(row.d, doubles[r]), `double of row ${r}: ${row.d} vs ${doubles[r]}`);
      assert.equal(row.b, booleans[r], `boolean of row ${r}`);
      assert.equal(row.s, strings[r], `string of row ${r}`);
      const hist = hists[r] as Map<number, number>;
      assert.deepEqual(row.k, [...hist.keys()], `histogram bins of row ${r}`);
      assert.deepEqual(row.v, [...hist.values()], `histogram counts of row ${r}`);
    }
  });

  it('writes short strings that DuckDB compares, groups, sorts and searches as it does the strings of an INSERT', async () => {
    await connection.run('CREATE TABLE strs (s VARCHAR)');
    const words = ['', 'a', 'u61294', 'GET /', 'exactly12chr', 'GET /api/search', '{}', 'é'];
    const appended = Array.from({ length: 3000 }, (_, i) => words[i % words.length] as string);
    const appender = await connection.createAppender('strs');
    try {
      appendColumnar(appender, [{ kind: 'varchar', values: appended }]);
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    // The same words again, written by DuckDB itself.
    await connection.run(`INSERT INTO strs SELECT unnest(${JSON.stringify(words).replace(/"/g, "'")})`);
    const groups = await connection.runAndReadAll(
      'SELECT s, count(*)::INTEGER AS n, length(s)::INTEGER AS len FROM strs GROUP BY s ORDER BY s',
    );
    const expected = [...words].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));
    assert.deepEqual(
      groups.getRowObjectsJS().map((row) => row.s),
      expected,
      'one group per word, in byte order',
    );
    for (const row of groups.getRowObjectsJS()) {
      const word = row.s as string;
      assert.equal(row.n, 1 + appended.filter((w) => w === word).length, `rows of ${JSON.stringify(word)}`);
      assert.equal(row.len, [...word].length, `length of ${JSON.stringify(word)}`);
    }
    const equal = await connection.runAndReadAll(
      "SELECT count(*)::INTEGER AS n FROM strs WHERE s = 'u61294' OR s LIKE 'GET /%' OR s = 'exactly12chr'",
    );
    const want = appended.filter((w) => w === 'u61294' || w.startsWith('GET /') || w === 'exactly12chr').length + 4;
    assert.equal(equal.getRowObjectsJS()[0]?.n, want);
  });

  it('refuses a value that is not an integer below 2^53 in a BIGINT column, and columns of different lengths', async () => {
    await connection.run('CREATE TABLE u (i BIGINT)');
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) {
      const appender = await connection.createAppender('u');
      try {
        assert.throws(
          () => appendColumnar(appender, [{ kind: 'bigint', values: [1, bad] }]),
          (error: unknown) => error instanceof StoreError && error.code === 'ERGOMETER_STORE_QUERY_FAILED',
        );
        appender.clear();
      } finally {
        appender.closeSync();
      }
    }
    const appender = await connection.createAppender('t');
    try {
      assert.throws(() =>
        appendColumnar(appender, [
          { kind: 'integer', values: [1, 2] },
          { kind: 'bigint', values: [1] },
        ]),
      );
      appender.clear();
    } finally {
      appender.closeSync();
    }
    const count = await connection.runAndReadAll('SELECT count(*)::INTEGER AS n FROM u');
    assert.equal(count.getRowObjectsJS()[0]?.n, 0);
  });
});

describe('rollUpInto', () => {
  it('accumulating batches gives the rows of rolling each up alone and merging them', () => {
    const batches = generateDataset(11, 6).batches;
    const accumulated = new Map<string, PartialAggregate>();
    let created = 0;
    for (const batch of batches) {
      created += rollUpInto(accumulated, emptyPartial, batch.samples);
    }
    const expected = new Map<string, PartialAggregate>();
    for (const row of batches.flatMap((batch) => rollUpSamples(batch.samples))) {
      const key = JSON.stringify([row.minute, row.endpoint, row.flagKey, row.flagVariant]);
      const acc = expected.get(key);
      if (acc === undefined) {
        expected.set(key, { ...row, costHist: new Map(row.costHist), wallHist: new Map(row.wallHist) });
        continue;
      }
      acc.n += row.n;
      acc.weight += row.weight;
      acc.sumCost += row.sumCost;
      acc.sumWall += row.sumWall;
      acc.minTs = Math.min(acc.minTs, row.minTs);
      acc.maxTs = Math.max(acc.maxTs, row.maxTs);
      for (const [bin, count] of row.costHist) acc.costHist.set(bin, (acc.costHist.get(bin) ?? 0) + count);
      for (const [bin, count] of row.wallHist) acc.wallHist.set(bin, (acc.wallHist.get(bin) ?? 0) + count);
    }
    assert.equal(accumulated.size, expected.size);
    assert.equal(created, accumulated.size, 'rollUpInto returns the rows it created');
    for (const row of accumulated.values()) {
      const want = expected.get(JSON.stringify([row.minute, row.endpoint, row.flagKey, row.flagVariant]));
      assert.ok(want, `unexpected row ${row.endpoint} ${row.flagKey}=${row.flagVariant} at ${row.minute}`);
      assert.equal(row.n, want.n);
      assert.ok(Math.abs(row.weight - want.weight) <= 1e-9 * Math.abs(want.weight));
      assert.ok(Math.abs(row.sumCost - want.sumCost) <= 1e-9 * Math.abs(want.sumCost));
      assert.ok(Math.abs(row.sumWall - want.sumWall) <= 1e-9 * Math.abs(want.sumWall));
      assert.equal(row.minTs, want.minTs);
      assert.equal(row.maxTs, want.maxTs);
      assert.deepEqual(new Map([...row.costHist].sort()), new Map([...want.costHist].sort()));
      assert.deepEqual(new Map([...row.wallHist].sort()), new Map([...want.wallHist].sort()));
    }
  });

  it('keeps endpoints and flags apart whatever characters they hold, in one accumulator and in two', () => {
    const sample = (endpoint: string, flags: Record<string, string>, cost: number) => ({
      ts: 1_700_000_000_000,
      endpoint,
      status: 200,
      cost,
      wallMs: 1,
      db: 0,
      cache: 0,
      http: 0,
      flags,
      user: '',
      weight: 1,
      aborted: false,
    });
    const samples = [
      sample('GET /a', { 'k:1': 'v' }, 10),
      sample('GET /a', { k: '1:v' }, 20),
      sample('GET /a1:', {}, 40),
      sample('GET /a', {}, 80),
    ];
    const first = new Map<string, PartialAggregate>();
    const second = new Map<string, PartialAggregate>();
    assert.equal(rollUpInto(first, emptyPartial, samples.slice(0, 2)), 3);
    assert.equal(rollUpInto(second, emptyPartial, samples), 4);
    assert.equal(rollUpInto(first, emptyPartial, samples.slice(2)), 1);
    for (const rows of [first, second]) {
      const cost = (endpoint: string, flagKey: string, flagVariant: string) =>
        [...rows.values()].find(
          (r) => r.endpoint === endpoint && r.flagKey === flagKey && r.flagVariant === flagVariant,
        )?.sumCost;
      assert.equal(cost('GET /a', '', ''), 110);
      assert.equal(cost('GET /a', 'k:1', 'v'), 10);
      assert.equal(cost('GET /a', 'k', '1:v'), 20);
      assert.equal(cost('GET /a1:', '', ''), 40);
    }
    assert.equal(first.size, 4);
  });
});
