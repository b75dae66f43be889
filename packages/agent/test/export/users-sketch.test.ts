/**
 * The distinct-user sketch of wire `users` (src/export/users-sketch.ts): estimate accuracy against the
 * truth, merge = union, and an encoding the server can rely on.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ErgometerError } from '../../src/errors';
import {
  addUserHash,
  createUsersSketch,
  decodeUsersSketch,
  encodeUsersSketch,
  estimateDistinctUsers,
  mergeUsersSketches,
  type UsersSketch,
} from '../../src/export/users-sketch';
import { RequestTotals } from '../../src/totals/request-totals';

/** The bytes the agent feeds the sketch for user `id` (RequestTotals: bytes 16..23 of its HMAC). */
function userHash(id: string, key = 'k'): Buffer {
  return createHmac('sha256', key).update(id).digest().subarray(16, 24);
}

function sketchOf(ids: Iterable<string>): UsersSketch {
  const sketch = createUsersSketch();
  for (const id of ids) addUserHash(sketch, userHash(id));
  return sketch;
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `user-${from + i}`);

describe('estimate', () => {
  test('100k distinct users, each seen three times: within 5% of the truth', () => {
    const sketch = createUsersSketch();
    for (let round = 0; round < 3; round++) for (const id of range(0, 100_000)) addUserHash(sketch, userHash(id));
    const estimate = estimateDistinctUsers(sketch);
    assert.ok(Math.abs(estimate / 100_000 - 1) < 0.05, `estimate ${estimate.toFixed(0)} for 100000`);
  });

  test('small and medium counts too (where a ρ−1 register layout undercounts by half)', () => {
    for (const n of [1, 10, 100, 1000, 5000, 20_000]) {
      const estimate = estimateDistinctUsers(sketchOf(range(0, n)));
      const tolerance = Math.max(1, 0.05 * n);
      assert.ok(Math.abs(estimate - n) <= tolerance, `estimate ${estimate.toFixed(1)} for ${n}`);
    }
  });

  test('an empty sketch estimates 0', () => {
    assert.equal(estimateDistinctUsers(createUsersSketch()), 0);
  });
});

describe('merge', () => {
  test('merging the sketches of two sets equals the sketch of their union, register for register', () => {
    const a = range(0, 30_000);
    const b = range(20_000, 60_000);
    const merged = mergeUsersSketches(sketchOf(a), sketchOf(b));
    assert.deepEqual(merged.registers, sketchOf([...a, ...b]).registers);
    const estimate = estimateDistinctUsers(merged);
    assert.ok(Math.abs(estimate / 60_000 - 1) < 0.05, `estimate ${estimate.toFixed(0)} for 60000`);
  });

  test('property: merge is commutative, associative and idempotent, and equals the sketch of the union', () => {
    const ids = fc.array(fc.string({ maxLength: 8 }), { maxLength: 200 });
    fc.assert(
      fc.property(ids, ids, ids, (a, b, c) => {
        const [sa, sb, sc] = [sketchOf(a), sketchOf(b), sketchOf(c)];
        assert.deepEqual(mergeUsersSketches(sa, sb).registers, mergeUsersSketches(sb, sa).registers);
        assert.deepEqual(
          mergeUsersSketches(mergeUsersSketches(sa, sb), sc).registers,
          mergeUsersSketches(sa, mergeUsersSketches(sb, sc)).registers,
        );
        assert.deepEqual(mergeUsersSketches(sa, sa).registers, sa.registers);
        assert.deepEqual(mergeUsersSketches(sa, sb, sc).registers, sketchOf([...a, ...b, ...c]).registers);
      }),
      { numRuns: 100 },
    );
  });

  test('sketches of different sizes do not merge', () => {
    assert.throws(
      () => mergeUsersSketches(createUsersSketch(12), createUsersSketch(10)),
      (error: unknown) => error instanceof ErgometerError && error.code === 'ERGOMETER_BAD_SKETCH',
    );
  });
});

describe('encoding', () => {
  test('base64 of [1, log2(registers), one byte per register]', () => {
    const sketch = sketchOf(range(0, 500));
    const bytes = Buffer.from(encodeUsersSketch(sketch), 'base64');
    assert.equal(bytes.length, 2 + 4096);
    assert.equal(bytes[0], 1);
    assert.equal(bytes[1], 12);
    assert.deepEqual(new Uint8Array(bytes.subarray(2)), sketch.registers);
  });

  test('property: decode(encode(s)) is s', () => {
    fc.assert(
      fc.property(fc.array(fc.string(), { maxLength: 100 }), fc.integer({ min: 4, max: 14 }), (ids, p) => {
        const sketch = createUsersSketch(p);
        for (const id of ids) addUserHash(sketch, userHash(id));
        const decoded = decodeUsersSketch(encodeUsersSketch(sketch));
        assert.equal(decoded.log2Registers, p);
        assert.deepEqual(decoded.registers, sketch.registers);
      }),
    );
  });

  test('what is not a version-1 sketch is refused with a reason', () => {
    const good = Buffer.from(encodeUsersSketch(sketchOf(range(0, 10))), 'base64');
    const cases: [string, RegExp][] = [
      ['not base64!', /not a base64 string/],
      [Buffer.from([1]).toString('base64'), /shorter than its 2-byte header/],
      [Buffer.concat([Buffer.from([2]), good.subarray(1)]).toString('base64'), /version 2/],
      [Buffer.concat([Buffer.from([1, 30]), good.subarray(2)]).toString('base64'), /2\^30 registers/],
      [good.subarray(0, 100).toString('base64'), /98 register bytes for 2\^12 registers/],
      [
        Buffer.concat([good.subarray(0, 2), Buffer.from([99]), good.subarray(3)]).toString('base64'),
        /register 0 is 99/,
      ],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => decodeUsersSketch(text),
        (error: unknown) =>
          error instanceof ErgometerError && error.code === 'ERGOMETER_BAD_SKETCH' && message.test(error.message),
        text.slice(0, 20),
      );
    }
  });
});

describe('RequestTotals', () => {
  test('counts per minute and endpoint; one sketch per minute; a drain starts over', () => {
    let pendingCalls = 0;
    const totals = new RequestTotals('key', () => pendingCalls++);
    const minute = 1_764_201_600_000;
    totals.countRequest('GET /a', minute + 5);
    totals.countRequest('GET /a', minute + 59_999);
    totals.countRequest('GET /b', minute + 10);
    totals.countRequest('GET /a', minute + 60_000);
    assert.equal(pendingCalls, 1, 'the batcher is told once, when totals start to wait');
    const hashes = ['u1', 'u2', 'u1'].map((id) => totals.countUser(id, minute + 1));
    assert.equal(hashes[0], hashes[2], 'the same user, the same hash');
    assert.notEqual(hashes[0], hashes[1]);
    assert.match(hashes[0]!, /^[A-Za-z0-9_-]{22}$/, '128 bits in base64url');
    const { counts, users } = totals.drain();
    assert.deepEqual(counts, [
      { minute, endpoint: 'GET /a', requests: 2 },
      { minute, endpoint: 'GET /b', requests: 1 },
      { minute: minute + 60_000, endpoint: 'GET /a', requests: 1 },
    ]);
    assert.equal(users.length, 1);
    assert.equal(users[0]!.minute, minute);
    assert.equal(Math.round(estimateDistinctUsers(decodeUsersSketch(users[0]!.sketch))), 2);
    assert.equal(totals.pending, false);
    assert.deepEqual(totals.drain(), { counts: [], users: [] });
    totals.countRequest('GET /a', minute + 70_000);
    assert.equal(pendingCalls, 2);
  });

  test('the hash is keyed: another key, another hash', () => {
    const a = new RequestTotals('key-a', () => undefined).countUser('alice', 0);
    const b = new RequestTotals('key-b', () => undefined).countUser('alice', 0);
    assert.notEqual(a, b);
    assert.ok(!a!.includes('alice'));
  });

  test('without a key (no userId option) users are not counted', () => {
    const totals = new RequestTotals(undefined, () => undefined);
    assert.equal(totals.countUser('alice', 0), undefined);
    assert.equal(totals.pending, false);
  });
});
