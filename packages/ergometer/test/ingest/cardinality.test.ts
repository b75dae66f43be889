import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CardinalityGuard } from '../../src/ingest/cardinality';
import { resolveLimits } from '../../src/ingest/limits';
import { validateBatch } from '../../src/ingest/validate';
import { wireBatch } from './support';

const NOW = Date.UTC(2026, 10, 27, 12);

function batchOf(endpoints: string[], flags: Record<string, string> = {}, service = 'api') {
  return validateBatch(wireBatch(endpoints.length, { now: NOW, endpoints, flags, service }), resolveLimits(), NOW);
}

test('samples with endpoints past the limit are refused; known endpoints keep flowing', () => {
  const guard = new CardinalityGuard(3, 10);
  const first = batchOf(['a', 'b', 'c', 'd', 'e', 'a']);
  assert.deepEqual(guard.apply(first), { refusedEndpoint: 2, refusedFlag: 0, refusedCounts: 0 });
  assert.deepEqual(
    first.samples.map((s) => s.endpoint),
    ['a', 'b', 'c', 'a'],
  );
  const second = batchOf(['c', 'z']);
  assert.equal(guard.apply(second).refusedEndpoint, 1);
  assert.deepEqual(
    second.samples.map((s) => s.endpoint),
    ['c'],
  );
  // Each service has its own budget.
  assert.equal(guard.apply(batchOf(['x', 'y', 'z'], {}, 'other')).refusedEndpoint, 0);
});

test('samples adding flag keys past the limit are refused; counts rows of refused endpoints dropped', () => {
  const guard = new CardinalityGuard(1, 2);
  assert.equal(guard.apply(batchOf(['a'], { f1: 'on', f2: 'off' })).refusedFlag, 0);
  const over = batchOf(['a', 'a'], { f1: 'on', f3: 'on' });
  assert.equal(guard.apply(over).refusedFlag, 2);
  assert.equal(over.samples.length, 0);
  const counts = batchOf(['b']);
  const result = guard.apply(counts);
  assert.equal(result.refusedEndpoint, 1);
  assert.equal(result.refusedCounts, 1);
  assert.equal(counts.counts.length, 0);
});

test('seeding from the store counts stored names against the limit', () => {
  const guard = new CardinalityGuard(2, 1);
  guard.seed('api', { endpoints: ['a', 'b'], flagKeys: ['f'] });
  assert.ok(guard.has('api'));
  const batch = batchOf(['a', 'c'], { f: 'on' });
  assert.deepEqual(guard.apply(batch), { refusedEndpoint: 1, refusedFlag: 0, refusedCounts: 0 });
  assert.equal(guard.apply(batchOf(['b'], { g: 'on' })).refusedFlag, 1);
});
