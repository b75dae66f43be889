/** Fastify 4 and 5 through `await fastify.register(agent.fastify)`. */
import { adapterSuite } from './suite';

for (const [title, fastifyModule] of [
  ['Fastify 5', 'fastify'],
  ['Fastify 4', 'fastify4'],
] as const) {
  adapterSuite({
    title: `${title}: register(agent.fastify)`,
    fixture: 'fastify.cjs',
    service: `adapters-${fastifyModule}`,
    env: { FASTIFY_MODULE: fastifyModule },
    mode: 'start',
    endpoints: { nested: 'GET /api/v1/items/:itemId', unmatched: 'GET (unmatched)' },
  });
}
