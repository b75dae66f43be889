/**
 * The ingest benchmark's workload: realistic wire-format batches of 1000 samples (SPEC §4) as an
 * agent sends them — one service, a few commits and host classes, a skewed mix of endpoints, flags
 * on part of the traffic, user ids, per-minute request counts and a users sketch per minute.
 * Seeded, so every run sends the same bytes.
 */
import { gzipSync } from 'node:zlib';
import { addUserHash, createUsersSketch, encodeUsersSketch } from '@ergometer/agent/users-sketch';
import { encodeColumns } from '@ergometer/agent/wire';
import { DuckDbStore, type IngestBatch, type Store } from 'ergometer';

export const SAMPLES_PER_BATCH = 1000;
export const SERVICE = 'checkout';
export const COMMITS = ['c1a2b3', 'c4d5e6', 'c7f8a9', 'cb0c1d'] as const;
const MINUTE_MS = 60_000;
/** Time one batch covers: an agent sends what it sampled every 10 s. */
export const BATCH_SPAN_MS = 10_000;
/** Hosts of the fleet; batch `index` comes from host `index % FLEET_HOSTS`. */
export const FLEET_HOSTS = 64;

/**
 * When batch `index` of the fleet starts: every host sends one batch per {@link BATCH_SPAN_MS}, the
 * hosts' flushes spread evenly over it, so consecutive batches are the fleet's traffic in time order
 * and each host's batches follow each other without gaps or overlaps.
 */
export function fleetBatchStart(index: number, startMs: number): number {
  const round = Math.floor(index / FLEET_HOSTS);
  return startMs + round * BATCH_SPAN_MS + Math.floor(((index % FLEET_HOSTS) * BATCH_SPAN_MS) / FLEET_HOSTS);
}

const ENDPOINTS: readonly string[] = [
  'GET /',
  'GET /api/products',
  'GET /api/products/:id',
  'GET /api/cart',
  'POST /api/cart/items',
  'DELETE /api/cart/items/:id',
  'POST /api/checkout',
  'GET /api/orders',
  'GET /api/orders/:id',
  'GET /api/search',
  'GET /api/recommendations',
  'POST /api/login',
  'POST /api/logout',
  'GET /api/users/me',
  'PUT /api/users/me',
  'GET /api/inventory/:sku',
  'POST /api/payments',
  'GET /api/shipping/quote',
  'GET /health',
  'GET /api/categories',
  'GET /api/categories/:id/products',
  'POST /api/reviews',
  'GET /api/reviews/:productId',
  'GET /api/promotions',
  'POST /api/coupons/validate',
  'GET /static/*',
  'GET /api/wishlist',
  'POST /api/wishlist',
  'GET /api/stores/nearby',
  'POST /api/events',
];

/** Deterministic PRNG (mulberry32). */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** One batch as the agent puts it on the wire (the JSON object before gzip). */
export interface WireBatch {
  v: 1;
  batchId: string;
  service: string;
  commit: string;
  host: string;
  region: string;
  hostClass: string;
  metric: 'instructions';
  agent: { version: string; runtime: string; counter: string; dropped: number };
  samples: Array<{
    ts: number;
    endpoint: string;
    status: number;
    cost: number;
    wallMs: number;
    backend?: { db: number; cache: number; http: number };
    flags?: Record<string, string>;
    user?: string;
    weight: number;
    aborted?: boolean;
  }>;
  counts: Array<{ minute: number; endpoint: string; requests: number }>;
  users: Array<{ minute: number; sketch: string }>;
}

/**
 * Batch number `index` of a seeded fleet: its samples start at `startMs` and cover 10 s.
 * Endpoints follow a Zipf-like mix (a few hot routes, a long tail).
 */
export function makeWireBatch(
  seed: number,
  index: number,
  startMs: number,
  sampleCount = SAMPLES_PER_BATCH,
): WireBatch {
  const random = seededRandom(seed * 1_000_003 + index);
  const hostNumber = index % FLEET_HOSTS;
  const commit = COMMITS[index % COMMITS.length] as string;
  const samples: WireBatch['samples'] = new Array(sampleCount);
  for (let i = 0; i < sampleCount; i++) {
    const e = Math.min(ENDPOINTS.length - 1, Math.floor(ENDPOINTS.length * random() ** 2.2));
    const base = 3_000_000 * (1 + ((e * 7) % 11));
    const flagDraw = random();
    const sample: WireBatch['samples'][number] = {
      ts: startMs + Math.floor((i / sampleCount) * BATCH_SPAN_MS),
      endpoint: ENDPOINTS[e] as string,
      status: random() < 0.97 ? 200 : random() < 0.5 ? 404 : 500,
      cost: Math.round(base * Math.exp(0.6 * normal(random))),
      wallMs: Math.round((1 + Math.exp(1.5 + normal(random))) * 1000) / 1000,
      weight: 10,
    };
    if (random() < 0.6) {
      sample.backend = {
        db: Math.round(random() * 20_000) / 1000,
        cache: Math.round(random() * 3000) / 1000,
        http: random() < 0.8 ? 0 : Math.round(random() * 50_000) / 1000,
      };
    }
    if (flagDraw < 0.5) sample.flags = { new_ranker: random() < 0.5 ? 'on' : 'off' };
    else if (flagDraw < 0.6) sample.flags = { new_ranker: 'on', cache_v2: random() < 0.5 ? 'a' : 'b' };
    if (random() < 0.8) sample.user = `u${Math.floor(random() * 100_000)}`;
    if (random() < 0.01) sample.aborted = true;
    samples[i] = sample;
  }
  const counts = new Map<string, { minute: number; endpoint: string; requests: number }>();
  for (const s of samples) {
    const minute = s.ts - (s.ts % MINUTE_MS);
    const key = `${minute} ${s.endpoint}`;
    const row = counts.get(key) ?? { minute, endpoint: s.endpoint, requests: 0 };
    row.requests += s.weight;
    counts.set(key, row);
  }
  const minutes = [...new Set(samples.map((s) => s.ts - (s.ts % MINUTE_MS)))];
  return {
    v: 1,
    batchId: `bench-${seed}-${index}`,
    service: SERVICE,
    commit,
    host: `web-${hostNumber}.prod.internal`,
    region: hostNumber % 2 === 0 ? 'eu-west-1' : 'us-east-1',
    hostClass: hostNumber % 4 === 0 ? 'c6i.xlarge' : 'm6i.large',
    metric: 'instructions',
    agent: { version: '0.1.0', runtime: 'node v20.20.2', counter: 'instructions', dropped: 0 },
    samples,
    counts: [...counts.values()],
    // The agent's users sketch (HyperLogLog, 4096 registers), one per minute the batch covers.
    users: minutes.map((minute) => ({ minute, sketch: usersSketch(random, 200) })),
  };
}

/** A real users sketch of `users` distinct random user hashes, as the agent encodes it. */
function usersSketch(random: () => number, users: number): string {
  const sketch = createUsersSketch();
  const hash = new Uint8Array(8);
  for (let u = 0; u < users; u++) {
    for (let b = 0; b < hash.length; b++) hash[b] = Math.floor(random() * 256);
    addUserHash(sketch, hash);
  }
  return encodeUsersSketch(sketch);
}

/**
 * The gzip request body of a wire batch, as the agent sends it: wire format 2 (samples as columns, the
 * agent's own encoder), or 1 as agents before it did.
 */
export function gzipBody(batch: WireBatch, version: 1 | 2 = 2): Buffer {
  const body = version === 1 ? batch : { ...batch, v: 2, samples: encodeColumns(batch.samples) };
  return gzipSync(JSON.stringify(body), { level: 6 });
}

/**
 * The store's view of a wire batch (what the collector's validator produces), for driving a
 * store directly. `receivedAt` is the batch's last sample time plus one second.
 */
export function toIngestBatch(wire: WireBatch): IngestBatch {
  const last = wire.samples[wire.samples.length - 1]?.ts ?? 0;
  return {
    batchId: wire.batchId,
    service: wire.service,
    host: wire.host,
    region: wire.region,
    commit: wire.commit,
    hostClass: wire.hostClass,
    metric: wire.metric,
    agentVersion: wire.agent.version,
    runtime: wire.agent.runtime,
    dropped: wire.agent.dropped,
    receivedAt: last + 1000,
    samples: wire.samples.map((s) => ({
      ts: s.ts,
      endpoint: s.endpoint,
      status: s.status,
      cost: s.cost,
      wallMs: s.wallMs,
      db: s.backend?.db ?? 0,
      cache: s.backend?.cache ?? 0,
      http: s.backend?.http ?? 0,
      flags: s.flags ?? {},
      user: s.user ?? '',
      weight: s.weight,
      aborted: s.aborted ?? false,
    })),
    counts: wire.counts.map((c) => ({ ...c })),
    users: wire.users.map((u) => ({ ...u })),
  };
}

/**
 * Does now the work a store defers after ingest (a DuckDB store: writes its pending aggregates, merges
 * partial aggregate rows, checkpoints its log into the file), so that a measurement counts it with the
 * samples that caused it. Nothing to do for ClickHouse (its merges run in the server).
 */
export async function settleStore(store: Store): Promise<void> {
  if (!(store instanceof DuckDbStore)) return;
  await store.flushAggregates();
  await store.compact();
  await store.checkpoint();
}
