/**
 * Seeded synthetic ingest batches for the store tests: several services, commits, endpoints, flags,
 * host classes and weights. Kept apart from conformance.ts so that child processes (crash tests)
 * can generate the same batches without loading node:test.
 */
import { randomBytes } from 'node:crypto';
import { addUserHash, createUsersSketch, encodeUsersSketch } from '@ergometer/agent/users-sketch';
import { seededRandom } from '../../src/stats/random';
import type { IngestBatch, Metric, StoredSample } from '../../src/store/types';

export type WireSample = IngestBatch['samples'][number];

/** Minute-aligned start of the generated data: 2025-11-27T00:00:00Z. */
export const T0_MS = 1_764_201_600_000;
export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export { seededRandom };

export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

function normal(random: () => number): number {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

interface HostSpec {
  host: string;
  region: string;
  hostClass: string;
  weight: number;
}

interface ServiceSpec {
  service: string;
  metrics: Metric[];
  commits: string[];
  endpoints: string[];
  hosts: HostSpec[];
}

/** An endpoint for which no batch carries counts: its `requests` must fall back to the sum of weights. */
export const ENDPOINT_WITHOUT_COUNTS = 'GET /no-counts';

const SERVICES: ServiceSpec[] = [
  {
    service: 'api',
    metrics: ['instructions'],
    commits: ['c1', 'c2', 'c3'],
    endpoints: ['GET /feed/:id', 'POST /like', 'GET /profile/:user', 'GET /search', ENDPOINT_WITHOUT_COUNTS],
    hosts: [
      { host: 'web-1', region: 'eu-1', hostClass: 'xeon-8375c', weight: 100 },
      { host: 'web-2', region: 'eu-1', hostClass: 'xeon-8375c', weight: 10 },
      { host: 'web-3', region: 'us-1', hostClass: 'epyc-7r13', weight: 2.5 },
    ],
  },
  {
    service: 'web',
    metrics: ['cpu_ns', 'instructions'],
    commits: ['w1', 'w2'],
    endpoints: ['GET /', 'GET /about', 'POST /login'],
    hosts: [
      { host: 'front-1', region: 'eu-1', hostClass: '', weight: 1 },
      { host: 'front-2', region: 'us-1', hostClass: 'graviton3', weight: 20 },
    ],
  },
];

export interface Dataset {
  batches: IngestBatch[];
  /** Every sample as the store must keep it (batch fields inherited). */
  samples: StoredSample[];
}

/** Seeded synthetic batches: several services, commits, endpoints, flags, host classes and weights. */
export function generateDataset(seed: number, batchCount: number, startMs = T0_MS): Dataset {
  const random = seededRandom(seed);
  const batches: IngestBatch[] = [];
  const samples: StoredSample[] = [];
  for (let b = 0; b < batchCount; b++) {
    const spec = pick(random, SERVICES);
    const host = pick(random, spec.hosts);
    const metric = pick(random, spec.metrics);
    // Commits roll out over time: later batches see later commits, with overlap (canaries).
    const commitIndex = Math.min(
      spec.commits.length - 1,
      Math.max(0, Math.floor((b / batchCount) * spec.commits.length + (random() - 0.5))),
    );
    const commit = spec.commits[commitIndex] as string;
    const batchStart = startMs + Math.floor((b / batchCount) * 3 * HOUR_MS);
    const sampleCount = 1 + Math.floor(random() * 120);
    const wire: WireSample[] = [];
    for (let i = 0; i < sampleCount; i++) {
      const endpointIndex = Math.floor(random() * spec.endpoints.length);
      const endpoint = spec.endpoints[endpointIndex] as string;
      const base = (metric === 'instructions' ? 2_000_000 : 400_000) * (1 + endpointIndex) * (1 + commitIndex * 0.05);
      const flagDraw = random();
      const flags: Record<string, string> = {};
      if (flagDraw > 0.5) flags.new_ranker = random() < 0.5 ? 'on' : 'off';
      if (flagDraw > 0.8) flags.cache_v2 = pick(random, ['a', 'b', 'c']);
      const cost = random() < 0.01 ? 0 : Math.round(base * Math.exp(0.5 * normal(random)));
      wire.push({
        ts: batchStart + Math.floor(random() * 3 * MINUTE_MS),
        endpoint,
        status: pick(random, [200, 200, 200, 201, 404, 500]),
        cost,
        wallMs: 1 + Math.exp(1.5 + normal(random)),
        db: random() < 0.3 ? 0 : random() * 20,
        cache: random() < 0.5 ? 0 : random() * 3,
        http: random() < 0.8 ? 0 : random() * 50,
        flags,
        user: `u${Math.floor(random() * 500)}`,
        weight: host.weight,
        aborted: random() < 0.03,
      });
    }
    // Counts: every request, sampled or not (≥ the sampled weight), never for ENDPOINT_WITHOUT_COUNTS.
    const countMap = new Map<string, { minute: number; endpoint: string; requests: number }>();
    for (const s of wire) {
      if (s.endpoint === ENDPOINT_WITHOUT_COUNTS) continue;
      const minute = Math.floor(s.ts / MINUTE_MS) * MINUTE_MS;
      const key = `${minute}\u0000${s.endpoint}`;
      const row = countMap.get(key) ?? { minute, endpoint: s.endpoint, requests: 0 };
      row.requests += Math.ceil(s.weight) + Math.floor(random() * 3);
      countMap.set(key, row);
    }
    const minutes = [...new Set(wire.map((s) => Math.floor(s.ts / MINUTE_MS) * MINUTE_MS))];
    const batch: IngestBatch = {
      batchId: `batch-${seed}-${b}`,
      service: spec.service,
      host: host.host,
      region: host.region,
      commit,
      hostClass: host.hostClass,
      metric,
      agentVersion: '0.1.0',
      runtime: 'node v20.20.2',
      dropped: Math.floor(random() * 3),
      receivedAt: batchStart + 4 * MINUTE_MS,
      samples: wire,
      counts: [...countMap.values()],
      // Real (small: 2^4 registers) users sketches: the collector decodes them at ingest.
      users: minutes.map((minute) => {
        const sketch = createUsersSketch(4);
        for (let u = 0; u < 5; u++) addUserHash(sketch, randomBytes(8));
        return { minute, sketch: encodeUsersSketch(sketch) };
      }),
    };
    batches.push(batch);
    for (const s of wire) samples.push(toStored(batch, s));
  }
  return { batches, samples };
}

export function toStored(batch: IngestBatch, s: WireSample): StoredSample {
  return {
    ...s,
    service: batch.service,
    commit: batch.commit,
    host: batch.host,
    region: batch.region,
    hostClass: batch.hostClass,
    metric: batch.metric,
  };
}
