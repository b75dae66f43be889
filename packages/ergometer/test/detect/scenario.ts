import type { IngestBatch, Store } from '../../src/store/types';
import { logNormalSampler, seededRandom } from '../stats/random';

export const HOUR = 3_600_000;

/** One stretch of traffic of one commit: which endpoints cost what, on which hosts, with which flags. */
export interface Phase {
  commit: string;
  from: number;
  to: number;
  /** endpoint → median cost (ns) on host class A; class B costs 1.5× as much. */
  endpoints: Record<string, number>;
  /** Samples per endpoint per hour. */
  perHour: number;
  /** Share of traffic on host class B. */
  shareB: number;
  /** Flags: key → { share of requests that get `variant`, the other variant, cost factor per endpoint }. */
  flag?: { key: string; variant: string; control: string; share: number; factor: Record<string, number> };
}

/**
 * Writes the phases through the real store's ingest (one batch per phase-hour), seeded, so the
 * detectors see realistic skewed costs with known injected changes.
 */
export async function writeScenario(store: Store, service: string, phases: Phase[], seed: number): Promise<number> {
  let written = 0;
  for (const batch of scenarioBatches(service, phases, seed)) {
    await store.ingest(batch);
    written += batch.samples.length;
  }
  return written;
}

/** The scenario as batches (one per phase-hour and host class), without writing them. */
export function scenarioBatches(service: string, phases: Phase[], seed: number): IngestBatch[] {
  const batches: IngestBatch[] = [];
  const random = seededRandom(seed);
  const noise = logNormalSampler(random, 1, 0.5);
  let batchNo = 0;
  for (const phase of phases) {
    for (let start = phase.from; start < phase.to; start += HOUR) {
      const end = Math.min(phase.to, start + HOUR);
      const count = Math.round((phase.perHour * (end - start)) / HOUR);
      // Host class is per batch (per process), so samples are grouped by the class they ran on.
      const batchesByClass = new Map<string, IngestBatch['samples']>();
      for (const [endpoint, median] of Object.entries(phase.endpoints)) {
        for (let i = 0; i < count; i++) {
          const onB = random() < phase.shareB;
          let cost = median * noise() * (onB ? 1.5 : 1);
          const flags: Record<string, string> = {};
          if (phase.flag) {
            const on = random() < phase.flag.share;
            flags[phase.flag.key] = on ? phase.flag.variant : phase.flag.control;
            if (on) cost *= phase.flag.factor[endpoint] ?? 1;
          }
          const hostClass = onB ? 'B x4' : 'A x2';
          const list = batchesByClass.get(hostClass) ?? [];
          list.push({
            ts: start + Math.floor(random() * (end - start)),
            endpoint,
            status: 200,
            cost: Math.round(cost),
            wallMs: cost / 1e6 + 1,
            db: 0,
            cache: 0,
            http: 0,
            flags,
            user: '',
            weight: 1,
            aborted: false,
          });
          batchesByClass.set(hostClass, list);
        }
      }
      for (const [hostClass, list] of batchesByClass) {
        batches.push({
          batchId: `${service}-${seed}-${batchNo++}`,
          service,
          host: hostClass === 'A x2' ? 'web-1' : 'web-2',
          region: 'eu-1',
          commit: phase.commit,
          hostClass,
          metric: 'cpu_ns',
          agentVersion: 'test',
          runtime: 'node test',
          dropped: 0,
          receivedAt: end,
          samples: list,
          counts: [],
          users: [],
        });
      }
    }
  }
  return batches;
}

/** An IngestBatch as the agent would send it (wire format v1, SPEC §4). */
export function toWire(batch: IngestBatch): Record<string, unknown> {
  return {
    v: 1,
    batchId: batch.batchId,
    service: batch.service,
    host: batch.host,
    region: batch.region,
    commit: batch.commit,
    metric: batch.metric,
    hostClass: batch.hostClass,
    agent: { version: batch.agentVersion, runtime: batch.runtime, counter: 'task-clock', dropped: batch.dropped },
    samples: batch.samples.map((s) => ({
      ts: s.ts,
      endpoint: s.endpoint,
      status: s.status,
      cost: s.cost,
      wallMs: s.wallMs,
      backend: { db: s.db, cache: s.cache, http: s.http },
      flags: s.flags,
      weight: s.weight,
    })),
    counts: batch.counts,
    users: batch.users,
  };
}

export const NOW = Date.UTC(2026, 10, 20, 12);
export const T0 = NOW - 12 * HOUR;
export const BASE = { 'GET /feed/:id': 1_000_000, 'GET /profile/:id': 400_000, 'GET /search': 2_000_000 };

/**
 * The story the demo tells, on a real DuckDB file:
 *   v1 (4 h) → v2 canary beside v1 for 1 h, then alone: GET /feed/:id +6% (a rollout regression)
 *   → v3 (before/after, no overlap): feed fixed; flag new_ranker "on" for 20% of requests makes
 *     GET /search 30% dearer for them (so +6% on the endpoint's mean at v3's rollout: one regression,
 *     reported once, as the flag's); and traffic moves to the dearer host class B (a mix shift
 *     that must not look like a regression) → v4: changes nothing.
 */
export function storyPhases(): Phase[] {
  return [
    // A 6% change needs a few thousand samples a side to be sure of (docs/MATH.md §1).
    { commit: 'v1', from: T0, to: T0 + 4 * HOUR, endpoints: BASE, perHour: 3000, shareB: 0.3 },
    {
      commit: 'v2',
      from: T0 + 3 * HOUR,
      to: T0 + 6 * HOUR,
      endpoints: { ...BASE, 'GET /feed/:id': BASE['GET /feed/:id'] * 1.06 },
      perHour: 3000,
      shareB: 0.3,
    },
    {
      commit: 'v3',
      from: T0 + 6 * HOUR,
      to: T0 + 9 * HOUR,
      endpoints: BASE,
      perHour: 1500,
      shareB: 0.7,
      flag: { key: 'new_ranker', variant: 'on', control: 'off', share: 0.2, factor: { 'GET /search': 1.3 } },
    },
    {
      commit: 'v4',
      from: T0 + 9 * HOUR,
      to: T0 + 12 * HOUR,
      endpoints: BASE,
      perHour: 1500,
      shareB: 0.7,
      flag: { key: 'new_ranker', variant: 'on', control: 'off', share: 0.2, factor: { 'GET /search': 1.3 } },
    },
  ];
}
