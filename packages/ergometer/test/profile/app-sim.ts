/**
 * A simulated service with a known call tree, for the root-cause and function-detector tests until
 * the agent's profiler lands: each request runs the tree below with a per-request cost factor
 * (log-normal, σ 0.5: some requests are heavier in every function, as real ones are), the request
 * sample carries the request's cost, and the profiles carry stack samples every 10 µs of CPU,
 * aggregated per stack and labels as a real pprof is (count + cost per distinct stack).
 *
 *   middleware → asyncWrapper → handleFeed → loadItems
 *                                          → renderFeed → escapeHtml
 *                                          → serialize
 *
 * Two generic wrapper layers (middleware, asyncWrapper) sit above the handler.
 */
import type { IngestBatch } from '../../src/store/types';
import { logNormalSampler, seededRandom } from '../stats/random';
import { buildPprof, type FixtureSample, type Frame } from './pprof';

const APP = '/srv/feed-app';
export const FRAMES: Record<string, Frame> = {
  middleware: { name: 'middleware', file: `${APP}/node_modules/framework/lib/chain.js`, line: 12 },
  asyncWrapper: { name: 'asyncWrapper', file: `${APP}/lib/async.js`, line: 3 },
  handleFeed: { name: 'handleFeed', file: `${APP}/src/feed.js`, line: 10 },
  loadItems: { name: 'loadItems', file: `${APP}/src/items.js`, line: 5 },
  renderFeed: { name: 'renderFeed', file: `${APP}/src/feed.js`, line: 42 },
  escapeHtml: { name: 'escapeHtml', file: `${APP}/src/html.js`, line: 1 },
  serialize: { name: 'serialize', file: `${APP}/src/feed.js`, line: 90 },
  // V8's pseudo-frame, as the agent's profiles carry it: no file, a root of its own.
  '(garbage collector)': { name: '(garbage collector)', file: '', line: 0 },
};

/** Call path (root first) of each function's own work. */
const PATHS: Record<string, string[]> = {
  middleware: ['middleware'],
  asyncWrapper: ['middleware', 'asyncWrapper'],
  handleFeed: ['middleware', 'asyncWrapper', 'handleFeed'],
  loadItems: ['middleware', 'asyncWrapper', 'handleFeed', 'loadItems'],
  renderFeed: ['middleware', 'asyncWrapper', 'handleFeed', 'renderFeed'],
  escapeHtml: ['middleware', 'asyncWrapper', 'handleFeed', 'renderFeed', 'escapeHtml'],
  serialize: ['middleware', 'asyncWrapper', 'handleFeed', 'serialize'],
  '(garbage collector)': ['(garbage collector)'],
};

/** Self CPU ns per request of each function at v1: 1 ms in all. */
export const V1_WORK: Record<string, number> = {
  middleware: 20_000,
  asyncWrapper: 20_000,
  handleFeed: 50_000,
  loadItems: 400_000,
  renderFeed: 100_000,
  escapeHtml: 110_000,
  serialize: 300_000,
};

export const ENDPOINT = 'GET /feed/:id';
const PERIOD_NS = 10_000;

export interface Version {
  commit: string;
  /** Self ns per request per function. */
  work: Record<string, number>;
  from: number;
  to: number;
  requests: number;
  profiles: number;
  /** Requests with `flag` = variant (share of them) spend `extra` more ns in `fn`. */
  flag?: { key: string; variant: string; control: string; share: number; fn: string; extra: number };
}

export interface Traffic {
  batches: IngestBatch[];
  /** One pprof (gzip) per profile with its time range. */
  profiles: Array<{ from: number; to: number; pprof: Buffer }>;
}

/** Request samples and profiles of one version, seeded. */
export function simulateVersion(service: string, v: Version, seed: number): Traffic {
  const random = seededRandom(seed);
  const factor = logNormalSampler(random, 1, 0.5);
  const batches: IngestBatch[] = [];
  const perBatch = 1000;
  const profileSpanMs = (v.to - v.from) / v.profiles;
  const profiles: Traffic['profiles'] = [];
  // Profiles see a part of the requests (one process of several): each covers its time slice.
  const stacks: Array<Map<string, { cost: number; flagVariant: string | undefined; fn: string }>> = Array.from(
    { length: v.profiles },
    () => new Map(),
  );
  let samples: IngestBatch['samples'] = [];
  for (let i = 0; i < v.requests; i++) {
    const ts = v.from + Math.floor(((i + random()) / v.requests) * (v.to - v.from));
    const f = factor();
    let variant: string | undefined;
    if (v.flag) variant = random() < v.flag.share ? v.flag.variant : v.flag.control;
    let cost = 0;
    const profile = stacks[
      Math.min(v.profiles - 1, Math.floor((ts - v.from) / profileSpanMs))
    ] as (typeof stacks)[number];
    for (const [fn, work] of Object.entries(v.work)) {
      let ns = work * f;
      if (v.flag && variant === v.flag.variant && fn === v.flag.fn) ns += v.flag.extra * f;
      cost += ns;
      const key = `${fn}\u0000${variant ?? ''}`;
      const acc = profile.get(key) ?? { cost: 0, flagVariant: variant, fn };
      acc.cost += ns;
      profile.set(key, acc);
    }
    samples.push({
      ts,
      endpoint: ENDPOINT,
      status: 200,
      cost: Math.round(cost),
      wallMs: cost / 1e6 + 2,
      db: 0,
      cache: 0,
      http: 0,
      flags: v.flag && variant !== undefined ? { [v.flag.key]: variant } : {},
      user: '',
      weight: 1,
      aborted: false,
    });
    if (samples.length === perBatch || i === v.requests - 1) {
      batches.push({
        batchId: `${service}-${v.commit}-${seed}-${batches.length}`,
        service,
        host: 'web-1',
        region: 'eu-1',
        commit: v.commit,
        hostClass: '',
        metric: 'cpu_ns',
        agentVersion: 'test',
        runtime: 'node test',
        dropped: 0,
        receivedAt: ts,
        samples,
        counts: [],
        users: [],
      });
      samples = [];
    }
  }
  stacks.forEach((stackCosts, p) => {
    const fixture: FixtureSample[] = [];
    for (const { cost, flagVariant, fn } of stackCosts.values()) {
      // A sample every PERIOD_NS of CPU: the count is what a sampler at that rate would see.
      const count = Math.max(0, Math.round(cost / PERIOD_NS + Math.sqrt(cost / PERIOD_NS) * (random() * 2 - 1)));
      if (count === 0) continue;
      const sample: FixtureSample = {
        stack: (PATHS[fn] as string[]).map((name) => FRAMES[name] as Frame),
        endpoint: ENDPOINT,
        cost: count * PERIOD_NS,
        count,
      };
      if (v.flag && flagVariant !== undefined) sample.flags = { [v.flag.key]: flagVariant };
      fixture.push(sample);
    }
    const from = Math.round(v.from + p * profileSpanMs);
    profiles.push({ from, to: Math.round(from + profileSpanMs), pprof: buildPprof('cpu_ns', fixture) });
  });
  return { batches, profiles };
}
