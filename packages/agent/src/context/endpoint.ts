/**
 * Endpoint names are `METHOD route-template` (`GET /feed/:id`), never raw URLs:
 * a raw URL per user id would make every request its own endpoint.
 */

/** Name of requests that matched no route. */
export const UNMATCHED = '(unmatched)';

export function endpointName(method: string, route: string | undefined): string {
  return `${method} ${route === undefined || route === '' ? UNMATCHED : route}`;
}

// A path segment that is an identifier rather than a name: numbers, UUIDs,
// hex or base64-ish tokens of 16+ characters, and e-mail-like strings.
const ID_SEGMENT =
  /^(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,}|[A-Za-z0-9_-]{24,}|[^/@]+@[^/]+)$/i;

/**
 * A route template guessed from a raw path, for servers with no router
 * (plain node:http): the query is dropped and identifier-like segments become
 * `:id`. `/users/42/posts?x=1` → `/users/:id/posts`. Frameworks with a router
 * never go through this: their own template is used.
 */
export function templateFromPath(url: string): string {
  const queryAt = url.search(/[?#]/);
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  if (path === '' || path === '/') return '/';
  return path
    .split('/')
    .map((segment) => (segment !== '' && ID_SEGMENT.test(segment) ? ':id' : segment))
    .join('/');
}

/**
 * Caps the number of distinct endpoint names one process reports, so that an
 * unexpected source of cardinality (a router-less app with slugs in its paths)
 * cannot grow memory or flood the collector. Past the cap, new names become
 * `METHOD (other)`.
 */
export class EndpointCardinalityGuard {
  private readonly seen = new Set<string>();
  /** Admitted names by method and route: the same route string every request, so no name is built per request. */
  private readonly admitted = new Map<string, Map<string, string>>();
  overflowed = 0;

  constructor(private readonly maxEndpoints = 500) {}

  /**
   * `admit(method, endpointName(method, route))`. An admitted name is looked up by its parts (a router gives the
   * same route string every time, its hash already computed), not built and hashed again for every request.
   */
  name(method: string, route: string | undefined): string {
    // endpointName() names undefined and '' alike: one entry for both.
    const key = route ?? '';
    let routes = this.admitted.get(method);
    const known = routes?.get(key);
    if (known !== undefined) return known;
    const name = this.admit(method, endpointName(method, route));
    // Only admitted names are kept (at most maxEndpoints of them); those past the cap go through admit() each
    // time, which counts them.
    if (this.seen.has(name)) {
      if (routes === undefined) {
        routes = new Map();
        this.admitted.set(method, routes);
      }
      routes.set(key, name);
    }
    return name;
  }

  admit(method: string, name: string): string {
    if (this.seen.has(name)) return name;
    if (this.seen.size >= this.maxEndpoints) {
      this.overflowed++;
      return `${method} (other)`;
    }
    this.seen.add(name);
    return name;
  }
}
