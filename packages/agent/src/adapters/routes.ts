import type { IncomingMessage } from 'node:http';
import { templateFromPath } from '../context/endpoint';

/**
 * `req.baseUrl + req.route.path` as Express leaves them. `''` (which endpointName() names
 * `(unmatched)`) when Express handled the request but no route matched: its 404, or an answer
 * from a middleware. undefined when Express never saw the request.
 */
export function expressRouteOf(req: IncomingMessage): string | undefined {
  // Each property is read only when needed: in an Express app every request object has a map of its own, so
  // each read misses V8's inline caches (`app`, on the request's prototype, is the dearest of them).
  const express = req as IncomingMessage & { route?: { path?: unknown }; baseUrl?: unknown; app?: unknown };
  const route = express.route;
  if (route === undefined || route === null || route.path === undefined) {
    // Without this, an Express app instrumented only through node:http (register) would
    // name its 404s after their raw paths: one endpoint per path a scanner tries.
    return routedByExpress(express.app) ? '' : undefined;
  }
  const baseUrl = express.baseUrl;
  const routePath = Array.isArray(route.path) ? route.path.map(String).join('|') : String(route.path);
  // baseUrl is the concrete prefix matched by mounted routers (`/users/42`), not
  // its template: turn identifier segments back into `:id`.
  const prefix = typeof baseUrl === 'string' && baseUrl !== '' ? templateFromPath(baseUrl) : '';
  return prefix + (routePath === '/' && prefix !== '' ? '' : routePath);
}

/** Express 4 and 5 give every request they handle a prototype whose `app` is the Express app. */
function routedByExpress(app: unknown): boolean {
  return typeof app === 'function' && typeof (app as { settings?: unknown }).settings === 'object';
}
