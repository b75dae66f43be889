/**
 * Endpoint names: `METHOD route-template`, never raw URLs (SPEC §2), and a cap
 * on how many distinct names one process reports.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { EndpointCardinalityGuard, endpointName, templateFromPath, UNMATCHED } from '../../src/context/endpoint';

describe('templateFromPath', () => {
  const GOLDEN: [input: string, template: string][] = [
    ['/users/42/posts?x=1', '/users/:id/posts'],
    ['/users/42/posts', '/users/:id/posts'],
    ['/users/42', '/users/:id'],
    ['/a/1/b/2/c/3', '/a/:id/b/:id/c/:id'],
    ['/0', '/:id'],
    // UUIDs, any case
    ['/orders/123e4567-e89b-12d3-a456-426614174000', '/orders/:id'],
    ['/orders/123E4567-E89B-12D3-A456-426614174000/items', '/orders/:id/items'],
    // hex of 16 or more characters (hashes, object ids); shorter stays a name
    ['/blob/0123456789abcdef', '/blob/:id'],
    ['/commit/da39a3ee5e6b4b0d3255bfef95601890afd80709', '/commit/:id'],
    ['/color/c0ffee', '/color/c0ffee'],
    ['/x/0123456789abcde', '/x/0123456789abcde'],
    // long opaque tokens (base64url, 24+ characters)
    ['/t/aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRva2Vu', '/t/:id'],
    ['/session/Ab3_-xYz0123456789ABCDEFGH', '/session/:id'],
    // e-mail addresses
    ['/u/jane@example.com/x', '/u/:id/x'],
    ['/invite/a.b+tag@mail.example.org', '/invite/:id'],
    // the root, the empty string, trailing and double slashes
    ['/', '/'],
    ['', '/'],
    ['/feed/', '/feed/'],
    ['/users/42/', '/users/:id/'],
    ['//a//7', '//a//:id'],
    // query and fragment are dropped, whichever comes first
    ['/?q=1', '/'],
    ['?q=1', '/'],
    ['#top', '/'],
    ['/search?q=a/b#c', '/search'],
    ['/docs#section?x', '/docs'],
    ['/feed?', '/feed'],
    ['/a/1?b=/2', '/a/:id'],
    // names stay names
    ['/feed', '/feed'],
    ['/v2/search', '/v2/search'],
    ['/static/app.js', '/static/app.js'],
    ['/api/v1/users/me', '/api/v1/users/me'],
    ['/files/report-2024.pdf', '/files/report-2024.pdf'],
    ['/health', '/health'],
  ];

  for (const [input, expected] of GOLDEN) {
    test(`${JSON.stringify(input)} → ${expected}`, () => {
      assert.equal(templateFromPath(input), expected);
    });
  }

  /** Raw request targets: web paths with ids mixed in, queries and fragments, and arbitrary strings. */
  const idSegment = fc.oneof(
    fc.nat().map(String),
    fc.uuid(),
    fc.stringMatching(/^[0-9a-f]{16,40}$/),
    fc.emailAddress().filter((address) => !/[/?#]/.test(address)),
    fc.string({ minLength: 24, maxLength: 40, unit: fc.constantFrom(...'abcXYZ019_-') }),
  );
  const pathWithIds = fc
    .array(fc.oneof(fc.webSegment(), idSegment), { maxLength: 8 })
    .map((segments) => `/${segments.join('/')}`);
  const requestTarget = fc.oneof(
    fc
      .tuple(
        fc.oneof(fc.webPath(), pathWithIds),
        fc.option(fc.webQueryParameters(), { nil: undefined }),
        fc.option(fc.webFragments(), { nil: undefined }),
      )
      .map(
        ([p, query, fragment]) =>
          `${p}${query === undefined ? '' : `?${query}`}${fragment === undefined ? '' : `#${fragment}`}`,
      ),
    fc.string(),
    fc.string({ unit: 'binary' }),
  );

  test('property: no query or fragment, idempotent, no segment of only digits, same number of segments', () => {
    fc.assert(
      fc.property(requestTarget, (url) => {
        const template = templateFromPath(url);
        assert.ok(!template.includes('?') && !template.includes('#'), `${url} → ${template}`);
        assert.equal(templateFromPath(template), template, `not idempotent: ${url} → ${template}`);
        const segments = template.split('/');
        assert.ok(!segments.some((segment) => /^\d+$/.test(segment)), `${url} → ${template}`);
        // Only whole segments are replaced: the shape of the path is kept.
        const pathPart = url.split(/[?#]/)[0] ?? '';
        if (pathPart !== '' && pathPart !== '/') assert.equal(segments.length, pathPart.split('/').length);
      }),
      { numRuns: 2000 },
    );
  });

  test('property: every identifier segment becomes :id and the names around it survive', () => {
    fc.assert(
      fc.property(idSegment, (id) => {
        assert.equal(templateFromPath(`/users/${id}/posts?page=2`), '/users/:id/posts');
      }),
    );
  });
});

describe('endpointName', () => {
  test('METHOD route, or METHOD (unmatched) when no route matched', () => {
    assert.equal(endpointName('GET', '/feed/:id'), 'GET /feed/:id');
    assert.equal(endpointName('POST', undefined), 'POST (unmatched)');
    assert.equal(endpointName('DELETE', ''), 'DELETE (unmatched)');
    assert.equal(UNMATCHED, '(unmatched)');
  });
});

describe('EndpointCardinalityGuard', () => {
  test('admits the first maxEndpoints distinct names; later new names become METHOD (other)', () => {
    const guard = new EndpointCardinalityGuard(3);
    const admitted = ['GET /a', 'GET /b', 'GET /a', 'POST /c', 'GET /d', 'PUT /e', 'GET /b', 'POST /c'].map((name) =>
      guard.admit(name.split(' ')[0]!, name),
    );
    assert.deepEqual(admitted, [
      'GET /a',
      'GET /b',
      'GET /a',
      'POST /c',
      'GET (other)',
      'PUT (other)',
      'GET /b',
      'POST /c',
    ]);
    assert.equal(guard.overflowed, 2, 'overflowed counts the requests folded into (other)');
  });

  test('the default cap is 500', () => {
    const guard = new EndpointCardinalityGuard();
    for (let i = 0; i < 500; i++) assert.equal(guard.admit('GET', `GET /p${i}`), `GET /p${i}`);
    assert.equal(guard.admit('GET', 'GET /p500'), 'GET (other)');
  });

  test('property: at most maxEndpoints distinct names plus one (other) per method; admitted names are stable', () => {
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE');
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.tuple(method, fc.integer({ min: 0, max: 60 })), { maxLength: 300 }),
        (max, requests) => {
          const guard = new EndpointCardinalityGuard(max);
          const first = new Map<string, string>();
          const outputs = new Set<string>();
          let overflowed = 0;
          for (const [m, route] of requests) {
            const name = `${m} /r${route}`;
            const out = guard.admit(m, name);
            outputs.add(out);
            if (out === `${m} (other)`) overflowed++;
            else assert.equal(out, name, 'a name is either itself or METHOD (other)');
            // A name admitted once is always admitted; a name refused once is always refused.
            const before = first.get(name);
            if (before === undefined) first.set(name, out);
            else assert.equal(out, before, `${name} changed from ${before} to ${out}`);
          }
          const real = [...outputs].filter((o) => !o.endsWith(' (other)'));
          assert.ok(real.length <= max, `${real.length} distinct names with a cap of ${max}`);
          // The cap is filled before anything is folded: the first `max` distinct names are the admitted ones.
          const distinct = [...new Set(requests.map(([m, route]) => `${m} /r${route}`))];
          assert.deepEqual(real.sort(), distinct.slice(0, max).sort());
          assert.equal(guard.overflowed, overflowed);
        },
      ),
    );
  });

  test('property: name(method, route) answers as admit(method, endpointName(method, route)), overflow counts included', () => {
    const route = fc.oneof(
      fc.constant(undefined),
      fc.constant(''),
      fc.integer({ min: 0, max: 30 }).map((n) => `/r${n}`),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.array(fc.tuple(fc.constantFrom('GET', 'POST'), route), { maxLength: 200 }),
        (max, requests) => {
          const byParts = new EndpointCardinalityGuard(max);
          const byName = new EndpointCardinalityGuard(max);
          for (const [m, r] of requests) assert.equal(byParts.name(m, r), byName.admit(m, endpointName(m, r)));
          assert.equal(byParts.overflowed, byName.overflowed);
        },
      ),
    );
  });
});
