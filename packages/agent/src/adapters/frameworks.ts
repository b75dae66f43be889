/**
 * Framework adapters. Each one only tells the agent where a request starts, how
 * to run the rest of the framework's chain inside it, and how to read the
 * route template once the framework has routed it. The types below describe the
 * few members we touch, so that the agent depends on no framework at runtime.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Agent } from '../agent';
import { expressRouteOf } from './routes';

type Next = (error?: unknown) => void;

/** Express 4 and 5: `app.use(agent.express())` before the routes. */
export function expressMiddleware(agent: Agent) {
  return function ergometerExpress(req: IncomingMessage, res: ServerResponse, next: Next): void {
    agent.runRequest(req, res, next, expressRouteOf, req);
  };
}

/** The parts of a Fastify (4 or 5) instance and request the plugin uses. */
interface FastifyLike {
  addHook(
    name: 'onRequest',
    hook: (request: FastifyRequestLike, reply: { raw: ServerResponse }, done: Next) => void,
  ): unknown;
}
interface FastifyRequestLike {
  raw: IncomingMessage;
  routeOptions?: { url?: string };
  /** Fastify 4 before routeOptions existed. */
  routerPath?: string;
}

/** Fastify 4 and 5: `await fastify.register(agent.fastify)`. Applies to every route (not encapsulated). */
export function fastifyPlugin(agent: Agent) {
  function ergometerFastify(instance: FastifyLike, _options: unknown, done: Next): void {
    instance.addHook('onRequest', (request, reply, hookDone) => {
      agent.runRequest(request.raw, reply.raw, hookDone, fastifyRoute, request);
    });
    done();
  }
  // What fastify-plugin does: make the hook apply outside this plugin's encapsulation context.
  Object.assign(ergometerFastify, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: 'ergometer',
  });
  return ergometerFastify;
}

function fastifyRoute(request: FastifyRequestLike): string | undefined {
  // routeOptions.url is undefined for the 404 handler (Fastify 4 and 5). Read
  // routerPath only in the old Fastify 4 releases without routeOptions.url: in
  // later 4.x, reading it prints a DeprecationWarning (FSTDEP017) in the app.
  const routeOptions = request.routeOptions;
  return routeOptions !== undefined && 'url' in routeOptions ? routeOptions.url : request.routerPath;
}

/** The parts of a Koa context the middleware uses. @koa/router sets `_matchedRoute`. */
interface KoaContextLike {
  req: IncomingMessage;
  res: ServerResponse;
  _matchedRoute?: string | RegExp;
}

const koaRoute = (ctx: KoaContextLike) => (ctx._matchedRoute === undefined ? undefined : String(ctx._matchedRoute));

/** Koa 2 and 3 (+ @koa/router): `app.use(agent.koa())` first. */
export function koaMiddleware(agent: Agent) {
  return function ergometerKoa(ctx: KoaContextLike, next: () => Promise<unknown>): Promise<unknown> {
    return agent.runRequest(ctx.req, ctx.res, next, koaRoute, ctx);
  };
}

/** The parts of a Hono context the middleware uses, on @hono/node-server. */
interface HonoContextLike {
  env?: { incoming?: IncomingMessage; outgoing?: ServerResponse };
  req: { matchedRoutes?: { path: string; method: string }[] };
}

/** Hono on @hono/node-server: `app.use(agent.hono())` first. Elsewhere (no node:http request) it passes through. */
export function honoMiddleware(agent: Agent) {
  return function ergometerHono(c: HonoContextLike, next: () => Promise<void>): Promise<void> {
    const incoming = c.env?.incoming;
    const outgoing = c.env?.outgoing;
    if (incoming === undefined || outgoing === undefined) return next();
    return agent.runRequest(incoming, outgoing, next, honoRoute, c);
  };
}

/** The last matched route that is a handler, not a catch-all middleware such as ours. */
function honoRoute(c: HonoContextLike): string | undefined {
  const routes = c.req.matchedRoutes ?? [];
  for (let i = routes.length - 1; i >= 0; i--) {
    const route = routes[i]!;
    if (route.path !== '*' && route.path !== '/*') return route.path;
  }
  return undefined;
}
