import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { jsonDepthExceeds } from '../../src/ingest/json-depth';

/** Nesting depth of a parsed JSON value, computed the obvious way. */
function depthOf(value: unknown): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(depthOf));
  if (typeof value === 'object' && value !== null) return 1 + Math.max(0, ...Object.values(value).map(depthOf));
  return 0;
}

test('property: the byte scan agrees with the depth of the parsed value, brackets in strings included', () => {
  const strings = fc.string({ unit: fc.constantFrom('[', ']', '{', '}', '"', '\\', 'a', 'é', '\u0001') });
  const json = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      strings,
      fc.integer(),
      fc.array(tie('value'), { maxLength: 3 }),
      fc.dictionary(strings, tie('value'), { maxKeys: 3 }),
    ),
  })).value;
  fc.assert(
    fc.property(json, fc.integer({ min: 0, max: 6 }), (value, maxDepth) => {
      const text = Buffer.from(JSON.stringify(value));
      assert.equal(jsonDepthExceeds(text, maxDepth), depthOf(value) > maxDepth);
    }),
  );
});

test('a million open brackets exceed any small depth', () => {
  assert.equal(jsonDepthExceeds(Buffer.from('['.repeat(1_000_000)), 8), true);
  assert.equal(jsonDepthExceeds(Buffer.from(`"${'['.repeat(1000)}"`), 8), false);
});
