/** Express 4 and 5 through agent.express(), and an Express app with no adapter under --require register. */
import { adapterSuite } from './suite';

for (const [title, expressModule] of [
  ['Express 5', 'express'],
  ['Express 4', 'express4'],
] as const) {
  adapterSuite({
    title: `${title}: app.use(agent.express())`,
    fixture: 'express.cjs',
    service: `adapters-${expressModule}`,
    env: { EXPRESS_MODULE: expressModule },
    mode: 'start',
    endpoints: { nested: 'GET /api/v1/items/:itemId', unmatched: 'GET (unmatched)' },
  });
}

// Zero-code, CommonJS: the agent only sees node:http, and reads the route Express leaves on req.
adapterSuite({
  title: 'Express 5 without the adapter: node --require @ergometer/agent/register',
  fixture: 'express.cjs',
  service: 'adapters-express-register',
  env: { EXPRESS_MODULE: 'express' },
  mode: 'register',
  registerWith: '--require',
  endpoints: { nested: 'GET /api/v1/items/:itemId', unmatched: 'GET (unmatched)' },
});
