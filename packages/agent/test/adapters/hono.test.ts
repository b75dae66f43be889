/** Hono on @hono/node-server through app.use(agent.hono()). */
import { adapterSuite } from './suite';

adapterSuite({
  title: 'Hono on @hono/node-server: app.use(agent.hono())',
  fixture: 'hono.cjs',
  service: 'adapters-hono',
  mode: 'start',
  endpoints: { nested: 'GET /api/v1/items/:itemId', unmatched: 'GET (unmatched)' },
});
