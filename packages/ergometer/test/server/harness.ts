/**
 * An in-process collector on 127.0.0.1:0 over a real DuckDB file in a temp dir, torn down (server
 * closed, store closed, dir removed) when the test ends, passed or failed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { type Collector, type CollectorOptions, createCollector } from '../../src/server/collector';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import type { IngestBatch, IngestResult, Store } from '../../src/store/types';

export const INGEST_TOKEN = 'test-ingest-token';
export const READ_TOKEN = 'test-read-token';

export interface TestCollector {
  url: string;
  store: Store;
  collector: Collector;
  dir: string;
  /** POST with the ingest token; a Buffer/string body as is, any other value as JSON. */
  post(
    route: string,
    body: unknown,
    options?: { token?: string | null; gzip?: boolean; headers?: Record<string, string> },
  ): Promise<Answer>;
  /** GET with the read token. */
  get(route: string, options?: { token?: string | null }): Promise<Answer>;
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed JSON body (undefined when not JSON). */
  json: unknown;
}

async function answer(response: Response): Promise<Answer> {
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/**
 * Starts a collector for one test. `wrapStore` may put a real store behind a gate (to hold a
 * write open) — the store underneath is always the real DuckDB one.
 */
export async function startTestCollector(
  t: TestContext,
  options: Partial<Omit<CollectorOptions, 'store'>> & { wrapStore?: (store: Store) => Store } = {},
): Promise<TestCollector> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ergometer-serve-'));
  const duckdb = openDuckDbStore({ path: path.join(dir, 'test.duckdb'), threads: 1 });
  await duckdb.init();
  const store = options.wrapStore ? options.wrapStore(duckdb) : duckdb;
  const { wrapStore: _unused, ...rest } = options;
  const collector = createCollector({
    ingestTokens: [INGEST_TOKEN],
    readTokens: [READ_TOKEN],
    log: () => undefined,
    ...rest,
    store,
  });
  t.after(async () => {
    await collector.close().catch(() => undefined);
    await duckdb.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  const address = await collector.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${address.port}`;
  return {
    url,
    store: duckdb,
    collector,
    dir,
    async post(route, body, { token = INGEST_TOKEN, gzip = false, headers = {} } = {}) {
      let payload: Buffer = Buffer.isBuffer(body)
        ? body
        : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
      const sent: Record<string, string> = { 'content-type': 'application/json', ...headers };
      if (gzip) {
        payload = gzipSync(payload);
        sent['content-encoding'] = 'gzip';
      }
      if (token !== null) sent.authorization = `Bearer ${token}`;
      return answer(await fetch(`${url}${route}`, { method: 'POST', headers: sent, body: payload }));
    },
    async get(route, { token = READ_TOKEN } = {}) {
      const headers: Record<string, string> = {};
      if (token !== null) headers.authorization = `Bearer ${token}`;
      return answer(await fetch(`${url}${route}`, { headers }));
    },
  };
}

/**
 * A real store whose writes wait at a gate the test opens: lets a test hold one write in flight
 * and see what queues behind it. Records the batch count of every ingestMany call.
 */
export function gated(
  store: Store,
  /** Fault injection: a write containing a batch this matches fails, as a store error would. */
  failIf: (batch: IngestBatch) => boolean = () => false,
): { store: Store; open(): void; groups: number[] } {
  let release: () => void = () => undefined;
  let gate = new Promise<void>((resolve) => (release = resolve));
  const groups: number[] = [];
  const ingestMany = async (batches: IngestBatch[]): Promise<IngestResult[]> => {
    groups.push(batches.length);
    await gate;
    if (batches.some(failIf)) throw new Error('injected store failure');
    return store.ingestMany(batches);
  };
  // Every other member goes to the real store, bound to it.
  const wrapped = new Proxy(store, {
    get(target, key) {
      if (key === 'ingestMany') return ingestMany;
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return {
    store: wrapped,
    groups,
    open() {
      release();
      gate = Promise.resolve();
    },
  };
}

/** Parses Prometheus text exposition into `name{labels}` → value; throws on a malformed line. */
export function parsePrometheus(text: string): Map<string, number> {
  const values = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      typed.add(type[1] as string);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue;
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*",?)*\})? (-?[0-9.]+(?:e[+-]?\d+)?|\+Inf|NaN)$/.exec(
        line,
      );
    if (!sample) throw new Error(`malformed metrics line: ${JSON.stringify(line)}`);
    const name = sample[1] as string;
    const family = name.replace(/_(bucket|sum|count)$/, '');
    if (!typed.has(name) && !typed.has(family)) throw new Error(`metric ${name} has no # TYPE line before it`);
    values.set(`${name}${sample[2] ?? ''}`, Number(sample[3]));
  }
  return values;
}
