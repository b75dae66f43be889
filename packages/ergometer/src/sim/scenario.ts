/**
 * Seeded synthetic traffic in the store's batch shape: the detectors' tests, `bench/` (the
 * detection simulator posts these batches to a real collector) and anything else that needs
 * realistic skewed costs with known injected changes use this one generator.
 */
import { logNormalSampler, normalSampler, seededRandom } from '../stats/random';
import type { IngestBatch } from '../store/types';

export const HOUR = 3_600_000;

/** Cost noise of one endpoint around its median: log-normal, optionally with a rare slow path. */
export interface CostShape {
  /** Log-sd of the log-normal body. */
  sigma: number;
  /** Share of requests that take the slow path (0..1). */
  slowShare?: number;
  /** How much dearer the slow path is than the median. */
  slowFactor?: number;
}

/** One stretch of traffic of one commit: which endpoints cost what, on which hosts, with which flags. */
export interface Phase {
  commit: string;
  from: number;
  to: number;
  /** endpoint → median cost (ns) on host class A; class B costs 1.5× as much. */
  endpoints: Record<string, number>;
  /** Samples per endpoint per hour (times `traffic`, when given). */
  perHour: number;
  /** Share of traffic on host class B (`shareBAt` overrides it hour by hour). */
  shareB: number;
  /** Flags: key → { share of requests that get `variant`, the other variant, cost factor per endpoint }. */
  flag?: { key: string; variant: string; control: string; share: number; factor: Record<string, number> };
  /** Multiplier of `perHour` for an endpoint in the hour starting at `hourStartMs` (unequal, diurnal traffic). */
  traffic?: (endpoint: string, hourStartMs: number) => number;
  /** Share of host class B in the hour starting at `hourStartMs` (a mix shift over the day). */
  shareBAt?: (hourStartMs: number) => number;
  /** endpoint → cost shape; endpoints not named are log-normal σ = 0.5. */
  shapes?: Record<string, CostShape>;
  /**
   * The phase's processes get dearer or cheaper for stretches of `periodMs` (aligned to the epoch):
   * every cost in a stretch is multiplied by one log-normal factor of log-sd `sigma`, as a neighbour
   * on the core or a heap that grew does to CPU time. Drawn from its own seeded source, so other
   * phases' draws do not change with it.
   */
  drift?: { sigma: number; periodMs: number; seed: number };
  /**
   * The processes of host class A: host name → its cost factor (a process slower or faster than
   * others of the same code). Each class-A sample runs on one of them, at random. Default: all of
   * class A on web-1, factor 1 (class B is always web-2).
   */
  hosts?: Record<string, number>;
}

/**
 * The phases as batches (one per phase-hour and host class, in time order within a phase), seeded:
 * the same arguments give the same batches on every run and machine.
 */
export function scenarioBatches(service: string, phases: Phase[], seed: number): IngestBatch[] {
  const batches: IngestBatch[] = [];
  const random = seededRandom(seed);
  const noise = logNormalSampler(random, 1, 0.5);
  const normal = normalSampler(random);
  const shaped = (shape: CostShape) => () =>
    shape.slowShare !== undefined && random() < shape.slowShare
      ? (shape.slowFactor ?? 1) * Math.exp(0.3 * normal())
      : Math.exp(shape.sigma * normal());
  let batchNo = 0;
  for (const phase of phases) {
    const hostsA = Object.entries(phase.hosts ?? { 'web-1': 1 });
    const driftAt = phase.drift ? driftLevels(phase.drift) : undefined;
    const draws = new Map<string, () => number>();
    for (const endpoint of Object.keys(phase.endpoints)) {
      const shape = phase.shapes?.[endpoint];
      draws.set(endpoint, shape ? shaped(shape) : noise);
    }
    for (let start = phase.from; start < phase.to; start += HOUR) {
      const end = Math.min(phase.to, start + HOUR);
      const hourStart = start - (start % HOUR);
      const shareB = phase.shareBAt ? phase.shareBAt(hourStart) : phase.shareB;
      // Host and class are per batch (per process), so samples are grouped by the host they ran on.
      const batchesByHost = new Map<string, { hostClass: string; samples: IngestBatch['samples'] }>();
      for (const [endpoint, median] of Object.entries(phase.endpoints)) {
        const draw = draws.get(endpoint) as () => number;
        const perHour = phase.perHour * (phase.traffic ? phase.traffic(endpoint, hourStart) : 1);
        const count = Math.round((perHour * (end - start)) / HOUR);
        for (let i = 0; i < count; i++) {
          const onB = random() < shareB;
          let cost = median * draw() * (onB ? 1.5 : 1);
          const flags: Record<string, string> = {};
          if (phase.flag) {
            const on = random() < phase.flag.share;
            flags[phase.flag.key] = on ? phase.flag.variant : phase.flag.control;
            if (on) cost *= phase.flag.factor[endpoint] ?? 1;
          }
          const hostClass = onB ? 'B x4' : 'A x2';
          // Drawn only when the phase names its hosts, so other scenarios keep their seeded draws.
          const [host, factor] = onB
            ? ['web-2', 1]
            : ((phase.hosts ? hostsA[Math.floor(random() * hostsA.length)] : hostsA[0]) as [string, number]);
          cost *= factor;
          const batch = batchesByHost.get(host) ?? { hostClass, samples: [] };
          const list = batch.samples;
          const ts = start + Math.floor(random() * (end - start));
          if (driftAt) cost *= driftAt(ts);
          list.push({
            ts,
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
          batchesByHost.set(host, batch);
        }
      }
      for (const [host, { hostClass, samples: list }] of batchesByHost) {
        batches.push({
          batchId: `${service}-${seed}-${batchNo++}`,
          service,
          host,
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

/** An IngestBatch as the agent would send it (wire format v1, SPEC §4), every field (users, aborted) included. */
export function toWire(batch: IngestBatch): Record<string, unknown> {
  const counter = batch.metric === 'instructions' ? 'instructions' : 'task-clock';
  return {
    v: 1,
    batchId: batch.batchId,
    service: batch.service,
    host: batch.host,
    region: batch.region,
    commit: batch.commit,
    metric: batch.metric,
    hostClass: batch.hostClass,
    agent: { version: batch.agentVersion, runtime: batch.runtime, counter, dropped: batch.dropped },
    samples: batch.samples.map((s) => ({
      ts: s.ts,
      endpoint: s.endpoint,
      status: s.status,
      cost: s.cost,
      wallMs: s.wallMs,
      backend: { db: s.db, cache: s.cache, http: s.http },
      flags: s.flags,
      user: s.user,
      weight: s.weight,
      aborted: s.aborted,
    })),
    counts: batch.counts,
    users: batch.users,
  };
}

/** The cost level of a drifting phase at `ts`: one seeded log-normal factor per stretch. */
function driftLevels(drift: NonNullable<Phase['drift']>): (ts: number) => number {
  const normal = normalSampler(seededRandom(drift.seed));
  const levels = new Map<number, number>();
  return (ts) => {
    const period = Math.floor(ts / drift.periodMs);
    let level = levels.get(period);
    if (level === undefined) {
      level = Math.exp(drift.sigma * normal());
      levels.set(period, level);
    }
    return level;
  };
}
