import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FunctionDiff } from '../../src/profile/diff';
import { pickRootCause } from '../../src/profile/root-cause';

function fn(name: string, base: [number, number], head: [number, number]): FunctionDiff {
  return {
    function: name,
    file: `src/${name}.js`,
    line: 1,
    base: { self: base[0], total: base[1] },
    head: { self: head[0], total: head[1] },
    deltaSelf: head[0] - base[0],
    deltaTotal: head[1] - base[1],
    deltaPct: ((head[0] - base[0]) / 1000) * 100,
  };
}

describe('pickRootCause', () => {
  it('names the deepest function explaining the change, not the wrappers above it', () => {
    // wrapper → inner → leafWork (the change, in a callee of inner); sibling unchanged.
    const functions = [
      fn('wrapper', [10, 1000], [10, 1100]),
      fn('inner', [40, 700], [40, 800]),
      fn('leafWork', [200, 200], [300, 300]),
      fn('sibling', [290, 290], [290, 290]),
    ];
    const cause = pickRootCause(functions, 1000, 1100);
    assert.equal(cause[0]?.function, 'leafWork');
    assert.equal(cause[0]?.deltaPct, 10);
    assert.deepEqual(
      cause.map((c) => c.function),
      ['leafWork'],
    );
  });

  it('never names a native frame: the JavaScript that called it is the root cause', () => {
    // handler → hashPayload → digest (C++ binding, no script): the new hashing is charged to hashPayload.
    const digest = { ...fn('digest', [0, 50], [0, 150]), file: '', line: 0 };
    const functions = [fn('handler', [10, 1000], [10, 1100]), fn('hashPayload', [50, 100], [150, 200]), digest];
    const cause = pickRootCause(functions, 1000, 1100);
    assert.deepEqual(
      cause.map((c) => c.function),
      ['hashPayload'],
    );
  });

  it('a change spread over a callee tree goes to the function above it', () => {
    const functions = [
      fn('wrapper', [10, 1000], [10, 1100]),
      fn('render', [100, 500], [100, 600]),
      fn('a', [200, 200], [250, 250]),
      fn('b', [200, 200], [250, 250]),
    ];
    const cause = pickRootCause(functions, 1000, 1100);
    assert.equal(cause[0]?.function, 'render');
    assert.deepEqual(
      cause
        .slice(1)
        .map((c) => c.function)
        .sort(),
      ['a', 'b'],
    );
  });

  it('no cause for an improvement or an unchanged endpoint', () => {
    const functions = [fn('a', [500, 500], [400, 400])];
    assert.deepEqual(pickRootCause(functions, 1000, 900), []);
    assert.deepEqual(pickRootCause(functions, 1000, 1000), []);
  });
});
