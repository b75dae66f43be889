import type { IncomingMessage } from 'node:http';
import { templateFromPath } from '../context/endpoint';

/** `req.baseUrl + req.route.path` as Express leaves them; undefined when no route matched. */
export function expressRouteOf(req: IncomingMessage): string | undefined {
  const { route, baseUrl } = req as IncomingMessage & { route?: { path?: unknown }; baseUrl?: unknown };
  if (route === undefined || route === null || route.path === undefined) return undefined;
  const routePath = Array.isArray(route.path) ? route.path.map(String).join('|') : String(route.path);
  // baseUrl is the concrete prefix matched by mounted routers (`/users/42`), not
  // its template: turn identifier segments back into `:id`.
  const prefix = typeof baseUrl === 'string' && baseUrl !== '' ? templateFromPath(baseUrl) : '';
  return prefix + (routePath === '/' && prefix !== '' ? '' : routePath);
}
