import type { AddressInfo } from 'node:net';
import type { BackendSource } from '@ergometer/agent';

/**
 * The app of the backend benchmark, one process per run: Express 5, and per
 * request one Redis GET (ioredis) and one PostgreSQL query (pg pool), the
 * per-request pattern of a cached read API.
 *
 *   BENCH_VARIANT    one of BACKEND_VARIANTS
 *   BENCH_COLLECTOR  the agent's collector (`file:` URL in a temp dir)
 *   PG_URL, REDIS_PORT  the servers backend.ts started
 *
 * The agent starts before pg and ioredis load, as in an app that calls start()
 * first. IPC with the parent as in server.ts: { type: 'listening', port } once
 * ready, exit on { type: 'stop' }.
 */

/** What each variant runs: no agent, or the agent at a sample rate with some backend instrumentations on. */
export const BACKEND_VARIANTS = {
  none: undefined,
  '1-off': { sampleRate: 1, backend: [] },
  '1-pg': { sampleRate: 1, backend: ['pg'] },
  '1-ioredis': { sampleRate: 1, backend: ['ioredis'] },
  '1-on': { sampleRate: 1, backend: 'all' },
  '0.01-off': { sampleRate: 0.01, backend: [] },
  '0.01-on': { sampleRate: 0.01, backend: 'all' },
} as const satisfies Record<string, { sampleRate: number; backend: readonly BackendSource[] | 'all' } | undefined>;
export type BackendVariant = keyof typeof BACKEND_VARIANTS;

export function isBackendVariant(value: unknown): value is BackendVariant {
  return typeof value === 'string' && Object.hasOwn(BACKEND_VARIANTS, value);
}

/** Keys the app reads; set once at start so that GET finds a value. */
const KEYS = 100;

async function serve(variant: BackendVariant): Promise<void> {
  const config = BACKEND_VARIANTS[variant];
  let shutdown: () => Promise<void> = () => Promise.resolve();
  let instrument: import('express').RequestHandler | undefined;
  if (config !== undefined) {
    const { BACKEND_SOURCES, start }: typeof import('@ergometer/agent') = require('@ergometer/agent');
    const agent = start({
      service: 'bench-backend',
      collector: process.env.BENCH_COLLECTOR,
      sampleRate: config.sampleRate,
      // Everything else off, so that each variant measures exactly what it names.
      backend:
        config.backend === 'all'
          ? true
          : Object.fromEntries(BACKEND_SOURCES.map((s) => [s, (config.backend as readonly string[]).includes(s)])),
    });
    instrument = agent.express();
    shutdown = () => agent.shutdown();
  }
  // Loaded after start(): the agent patches pg as it loads.
  const express: typeof import('express') = require('express');
  const pg: typeof import('pg') = require('pg');
  const Redis: typeof import('ioredis').default = require('ioredis');

  const pool = new pg.Pool({ connectionString: process.env.PG_URL, max: 10 });
  const redis = new Redis({ host: '127.0.0.1', port: Number(process.env.REDIS_PORT), lazyConnect: true });
  await redis.connect();
  for (let i = 0; i < KEYS; i++) await redis.set(`item:${i}`, JSON.stringify({ id: i, name: `item ${i}` }));
  // Open the pool's connections now: connecting is not what the benchmark measures.
  const clients = await Promise.all(Array.from({ length: 10 }, () => pool.connect()));
  for (const client of clients) client.release();

  const app = express();
  if (instrument !== undefined) app.use(instrument);
  let counter = 0;
  app.get('/item/:id', async (req, res, next) => {
    try {
      const id = Number(req.params.id) % KEYS;
      const cached = await redis.get(`item:${id}`);
      const { rows } = await pool.query('SELECT $1::int AS id, $2::int AS n', [id, counter++]);
      res.json({ item: cached === null ? null : JSON.parse(cached), row: rows[0] });
    } catch (error) {
      next(error);
    }
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  process.on('message', (message: { type?: string }) => {
    if (message.type !== 'stop') return;
    server.close();
    server.closeAllConnections();
    Promise.all([pool.end(), redis.quit()])
      .then(() => shutdown())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  });
  process.send?.({ type: 'listening', port: (server.address() as AddressInfo).port });
}

if (require.main === module) {
  const variant = process.env.BENCH_VARIANT;
  if (!isBackendVariant(variant) || process.send === undefined) {
    console.error(
      `usage: BENCH_VARIANT=<${Object.keys(BACKEND_VARIANTS).join('|')}> node backend-server.js, forked with an IPC channel`,
    );
    process.exit(2);
  }
  serve(variant).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
