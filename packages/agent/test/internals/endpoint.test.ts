import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { EndpointCardinalityGuard, endpointName, templateFromPath } from '../../src/context/endpoint';

test('templateFromPath: golden cases', () => {
  const cases: [string, string][] = [
    ['/users/42/posts?x=1', '/users/:id/posts'],
    ['/', '/'],
    ['', '/'],
    ['/?q=1', '/'],
    ['/feed', '/feed'],
    ['/feed/', '/feed/'],
    ['/o/123e4567-e89b-12d3-a456-426614174000', '/o/:id'],
    ['/blob/0123456789abcdef0123', '/blob/:id'],
    ['/u/jane@example.com/x#frag', '/u/:id/x'],
    ['/t/aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRva2Vu', '/t/:id'],
    ['/static/app.js', '/static/app.js'],
    ['/v2/search', '/v2/search'],
  ];
  for (const [input, expected] of cases) assert.equal(templateFromPath(input), expected, input);
});

test('templateFromPath: no query or fragment, idempotent, no all-digit segment', () => {
  fc.assert(
    fc.property(fc.webPath(), fc.option(fc.webQueryParameters()), fc.option(fc.webFragments()), (p, q, f) => {
      const url = `${p}${q ? `?${q}` : ''}${f ? `#${f}` : ''}`;
      const template = templateFromPath(url);
      assert.ok(!template.includes('?') && !template.includes('#'), template);
      assert.equal(templateFromPath(template), template);
      assert.ok(!template.split('/').some((segment) => /^\d+$/.test(segment)), template);
    }),
  );
});

test('endpointName and the cardinality cap', () => {
  assert.equal(endpointName('GET', '/a/:id'), 'GET /a/:id');
  assert.equal(endpointName('POST', undefined), 'POST (unmatched)');
  const guard = new EndpointCardinalityGuard(3);
  assert.deepEqual(
    ['GET /a', 'GET /b', 'GET /c', 'GET /d', 'GET /a', 'POST /e'].map((name) => guard.admit(name.split(' ')[0]!, name)),
    ['GET /a', 'GET /b', 'GET /c', 'GET (other)', 'GET /a', 'POST (other)'],
  );
  assert.equal(guard.overflowed, 2);
});
