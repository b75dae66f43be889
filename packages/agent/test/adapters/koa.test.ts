/** Koa 3 + @koa/router through app.use(agent.koa()). */
import { adapterSuite } from './suite';

adapterSuite({
  title: 'Koa 3 + @koa/router: app.use(agent.koa())',
  fixture: 'koa.cjs',
  service: 'adapters-koa',
  mode: 'start',
  endpoints: { nested: 'GET /api/v1/items/:itemId', unmatched: 'GET (unmatched)' },
});
