/**
 * Plain node:http, with no router: through agent.http(handler), and zero-code from an
 * ESM app under --import register. The endpoint is the path with identifiers replaced.
 */
import { adapterSuite } from './suite';

const endpoints = { nested: 'GET /api/v1/items/:id', unmatched: 'GET /nothing/here' };

adapterSuite({
  title: 'node:http: http.createServer(agent.http(handler))',
  fixture: 'http.cjs',
  service: 'adapters-http',
  mode: 'start',
  endpoints,
});

adapterSuite({
  title: 'node:http ESM app: node --import @ergometer/agent/register',
  fixture: 'register-http.mjs',
  service: 'adapters-http-register',
  mode: 'register',
  registerWith: '--import',
  endpoints,
});
