/**
 * The detection simulator: a world of services written through the real ingest path — wire
 * batches POSTed over HTTP to a collector (`createCollector`, what `ergometer serve` runs) into a
 * DuckDB file — in time order, while the detectors run on a schedule over the store as `serve` runs
 * them (`runDetectors` + `AlertBook`: an alert counts from the first run that raised it, even if a
 * later run drops it). Then the alerts are scored against what was injected.
 *
 * Rollout world: 20–50 endpoints per service with Zipf-unequal traffic and cost shapes (log-normal
 * σ 0.5–1, some with a 5% slow path ×10), diurnal load, endpoint mix moving over the day, two host
 * classes (B 1.5× dearer) whose share follows the load, a rollout every few hours alternating
 * canary (new commit on 25% of the traffic for an hour) and all-at-once, a flag on 20% of the
 * requests, and on some rollouts a regression of a known size on one endpoint.
 * Trend world: 15 days; a +0.3%/day creep over daily small rollouts, a one-day +20% spike that
 * goes away, and a flat service.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type Alert,
  AlertBook,
  type CostShape,
  createCollector,
  DEFAULT_DETECTOR_CONFIG,
  type DetectorConfig,
  detectRollouts,
  normalCdf,
  normalQuantile,
  openDuckDbStore,
  type Phase,
  resolveDetectorConfig,
  rolloutLook,
  runDetectors,
  type Store,
  scenarioBatches,
  seededRandom,
  toWire,
} from 'ergometer';
import type { BenchTable } from '../report';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Batches larger than this are split (the collector's default limit is 10 000 samples). */
const MAX_BATCH_SAMPLES = 5_000;
/** Uploads in flight at once, as a few agents would have. */
const UPLOADS_IN_FLIGHT = 4;

/** One commit of a simulated service: when it rolled out, how, and what it changed. */
export interface SimRollout {
  service: string;
  commit: string;
  startMs: number;
  how: 'canary' | 'all-at-once';
  /** The injected regression, if any: one endpoint made `pct`% dearer from this commit on. */
  effect?: { endpoint: string; pct: number; samplesPerHour: number };
}

interface SimService {
  name: string;
  /** Phases of the whole timeline (commits, canary splits, flag). */
  phases: Phase[];
  rollouts: SimRollout[];
  flagEffect?: { key: string; endpoint: string; pct: number };
  flagKey?: string;
}

/** What one world run measured: every alert the schedule raised, with when it was first raised. */
export interface WorldResult {
  raised: RaisedAlert[];
  /** Every detector run: for which service, when, and how many comparisons it made (its family). */
  runs: Array<{ service: string; atMs: number; tested: number }>;
  samples: number;
  detectorRuns: number;
  ingestSeconds: number;
  detectSeconds: number;
}

/** Diurnal load: 0.5× at 03:00, 1.5× at 15:00 (UTC of the simulated clock). */
function load(ms: number): number {
  return 1 + 0.5 * Math.sin((2 * Math.PI * ((ms % DAY) / HOUR - 9)) / 24);
}

/** A rollout world of `services` services over `hours` hours ending at `endMs`. */
export function rolloutWorld(options: {
  services: number;
  hours: number;
  endMs: number;
  seed: number;
  /** Sampled requests per hour of a whole service at average load. */
  samplesPerHour: number;
  /** Hours between two rollouts of a service (more than the 6 h window: every final look is reached). */
  rolloutEveryHours: number;
  /** Share of rollouts that carry a regression, and its sizes (%), drawn uniformly. */
  regressionShare: number;
  regressionPcts: number[];
  /** Traffic of the endpoint of rank k (from 0) ∝ 1/(k + 1)^zipf. */
  zipf: number;
  /** A regression lands on one of this many busiest endpoints. */
  regressedEndpoints: number;
  /** Per-service offset of the first rollout: at most this, ms (a multiple of 15 minutes). */
  maxOffsetMs: number;
}): SimService[] {
  const random = seededRandom(options.seed);
  const startMs = options.endMs - options.hours * HOUR;
  const services: SimService[] = [];
  for (let s = 0; s < options.services; s++) {
    const name = `svc-${s}`;
    const endpointCount = 20 + Math.floor(random() * 31);
    const medians: Record<string, number> = {};
    const weights: Record<string, number> = {};
    const phase: Record<string, number> = {};
    const shapes: Record<string, CostShape> = {};
    let weightSum = 0;
    for (let e = 0; e < endpointCount; e++) {
      const endpoint = `${e % 3 === 0 ? 'POST' : 'GET'} /s${s}/e${e}`;
      // 0.2 ms … 5 ms of CPU (ns), log-uniform.
      medians[endpoint] = Math.round(2e5 * 25 ** random());
      weights[endpoint] = 1 / (e + 1) ** options.zipf;
      weightSum += weights[endpoint];
      phase[endpoint] = random() * 24;
      shapes[endpoint] =
        e % 4 === 3 ? { sigma: 0.6, slowShare: 0.05, slowFactor: 10 } : { sigma: [0.5, 0.8, 1][e % 3] as number };
    }
    const endpoints = Object.keys(medians);
    // Per endpoint: its share of the service × the diurnal load × its own ±30% wave over the day (mix shift).
    const traffic = (endpoint: string, hourStartMs: number) =>
      ((weights[endpoint] as number) / weightSum) *
      load(hourStartMs) *
      (1 + 0.3 * Math.sin((2 * Math.PI * ((hourStartMs % DAY) / HOUR - (phase[endpoint] as number))) / 24));
    // More of the dearer host class at peak (autoscaling adds it): 20% at night, 60% at peak.
    const shareBAt = (hourStartMs: number) => 0.2 + 0.4 * ((load(hourStartMs) - 0.5) / 1);
    const flagEffect = s % 2 === 0 ? { key: `exp_${s}`, endpoint: endpoints[1] as string, pct: 15 } : undefined;
    const flag = {
      key: `exp_${s}`,
      variant: 'on',
      control: 'off',
      share: 0.2,
      factor: flagEffect ? { [flagEffect.endpoint]: 1 + flagEffect.pct / 100 } : {},
    };
    const rollouts: SimRollout[] = [];
    const phases: Phase[] = [];
    let levels = { ...medians };
    // Rollouts at a per-service offset, so the detector runs see rollouts at every hour of the day.
    const offsetMs = Math.floor(random() * Math.floor(options.maxOffsetMs / (HOUR / 4))) * (HOUR / 4);
    const commitStarts = [startMs];
    for (let t = startMs + offsetMs + options.rolloutEveryHours * HOUR; t < options.endMs; ) {
      commitStarts.push(t);
      t += options.rolloutEveryHours * HOUR;
    }
    const base = {
      perHour: options.samplesPerHour,
      shareB: 0,
      traffic,
      shareBAt,
      shapes,
      flag,
    };
    for (const [k, from] of commitStarts.entries()) {
      const commit = `${name}-c${k}`;
      const to = commitStarts[k + 1] ?? options.endMs;
      if (k === 0) {
        phases.push({ ...base, commit, from, to, endpoints: levels });
        continue;
      }
      const rollout: SimRollout = { service: name, commit, startMs: from, how: k % 2 === 0 ? 'canary' : 'all-at-once' };
      const previous = levels;
      if (random() < options.regressionShare) {
        // On one of the busiest endpoints, so the traffic can tell.
        const endpoint = endpoints[Math.floor(random() * options.regressedEndpoints)] as string;
        const pct = options.regressionPcts[Math.floor(random() * options.regressionPcts.length)] as number;
        const samplesPerHour = Math.round(options.samplesPerHour * ((weights[endpoint] as number) / weightSum));
        rollout.effect = { endpoint, pct, samplesPerHour };
        levels = { ...levels, [endpoint]: Math.round((levels[endpoint] as number) * (1 + pct / 100)) };
      }
      rollouts.push(rollout);
      if (rollout.how === 'canary') {
        // The new commit takes 25% of the traffic for an hour beside the old one, then all of it.
        const canaryEnd = Math.min(to, from + HOUR);
        const prev = phases[phases.length - 1] as Phase;
        prev.to = from;
        phases.push({
          ...base,
          commit: prev.commit,
          from,
          to: canaryEnd,
          endpoints: previous,
          perHour: 0.75 * base.perHour,
        });
        phases.push({ ...base, commit, from, to: canaryEnd, endpoints: levels, perHour: 0.25 * base.perHour });
        if (canaryEnd < to) phases.push({ ...base, commit, from: canaryEnd, to, endpoints: levels });
      } else {
        (phases[phases.length - 1] as Phase).to = from;
        phases.push({ ...base, commit, from, to, endpoints: levels });
      }
    }
    services.push({ name, phases, rollouts, flagEffect, flagKey: flag.key });
  }
  return services;
}

/** The trend world: 15 days of three services, one endpoint carrying most of the cost. */
export function trendWorld(endMs: number): SimService[] {
  const days = 15;
  const startMs = endMs - days * DAY;
  const endpoints = { 'GET /feed/:id': 1_000_000, 'GET /profile/:id': 400_000, 'POST /orders': 3_000_000 };
  const weights: Record<string, number> = { 'GET /feed/:id': 1, 'GET /profile/:id': 0.1, 'POST /orders': 0.05 };
  const traffic = (endpoint: string, hourStartMs: number) => (weights[endpoint] as number) * load(hourStartMs);
  const build = (name: string, level: (day: number) => number, dailyCommits: boolean): SimService => {
    const phases: Phase[] = [];
    for (let d = 0; d < days; d++) {
      phases.push({
        commit: dailyCommits ? `${name}-d${d}` : `${name}-c0`,
        from: startMs + d * DAY,
        to: startMs + (d + 1) * DAY,
        endpoints: { ...endpoints, 'GET /feed/:id': Math.round(endpoints['GET /feed/:id'] * level(d)) },
        perHour: 1000,
        shareB: 0,
        traffic,
        shareBAt: (ms) => 0.2 + 0.4 * (load(ms) - 0.5),
      });
    }
    return { name, phases, rollouts: [] };
  };
  return [
    // +0.3% with each daily rollout from day 8 on: no rollout alone is worth an alert, the week is.
    build('creep', (d) => (d < 8 ? 1 : 1.003 ** (d - 7)), true),
    // One day at +20% three days before the end, then back (not a trend).
    build('spike', (d) => (d === 11 ? 1.2 : 1), false),
    build('flat', () => 1, true),
  ];
}

/** The phases of a service clipped to [from, to). */
function clip(phases: Phase[], from: number, to: number): Phase[] {
  const out: Phase[] = [];
  for (const p of phases) {
    const a = Math.max(p.from, from);
    const b = Math.min(p.to, to);
    if (a < b) out.push({ ...p, from: a, to: b });
  }
  return out;
}

/** An alert as first raised by a detector run (what the sinks were sent), and when. */
export interface RaisedAlert {
  alert: Alert;
  atMs: number;
}

/** When a service's detectors must run for every look of its rollouts to be seen (rollout.ts). */
export function lookTimes(service: SimService, config: DetectorConfig): number[] {
  const grace = config.rolloutWindowMs / 32;
  const times: number[] = [];
  service.rollouts.forEach((rollout, i) => {
    for (let halvings = 0; halvings <= 5; halvings++)
      times.push(rollout.startMs + config.rolloutWindowMs / 2 ** halvings);
    // The final look of a comparison whose new commit was replaced before the full window.
    const next = service.rollouts[i + 1];
    if (next) times.push(next.startMs + grace);
  });
  return times.sort((a, b) => a - b);
}

/**
 * Writes a world through HTTP ingest in time slices, and after each slice runs the detectors of
 * every service that has a run due in it (`runsOf`), as `serve` would have at that time: between
 * two rollout looks its every-minute runs repeat the same comparisons (rollout.ts), so only the
 * runs at look times can raise new rollout alerts. Each service's runs keep their own AlertBook;
 * an alert counts from the first run that raised it.
 */
export async function runWorld(
  services: SimService[],
  options: {
    fromMs: number;
    toMs: number;
    sliceMs: number;
    seed: number;
    runsOf: (service: SimService) => number[];
    /** Called with the filled store and the runs before the store is removed. */
    inspect?: (store: Store, runs: WorldResult['runs']) => Promise<void>;
  },
  config: DetectorConfig,
): Promise<WorldResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ergometer-sim-'));
  const store = openDuckDbStore({ path: path.join(dir, 'sim.duckdb') });
  await store.init();
  let simNow = options.fromMs;
  const collector = createCollector({
    store,
    ingestTokens: ['sim-ingest'],
    readTokens: ['sim-read'],
    log: () => undefined,
    now: () => simNow,
  });
  const address: AddressInfo = await collector.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${address.port}/v1/samples`;
  const books = services.map(() => new AlertBook(undefined));
  const runs = services.map((service) => options.runsOf(service));
  const raised: RaisedAlert[] = [];
  const runLog: WorldResult['runs'] = [];
  let samples = 0;
  let detectorRuns = 0;
  let ingestMs = 0;
  let detectMs = 0;
  const post = async (body: string) => {
    // As the agent does: a batch whose connection was reset is sent again (its batchId makes that
    // safe). Keep-alive sockets left idle through a long detector run can be closed under a request.
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers: { authorization: 'Bearer sim-ingest', 'content-type': 'application/json' },
          body,
        });
        const text = await response.text();
        if (response.status !== 200) throw new Error(`ingest answered ${response.status}: ${text}`);
        return;
      } catch (error) {
        if (attempt >= 3 || (error as Error).message.startsWith('ingest answered')) throw error;
      }
    }
  };
  try {
    let slice = 0;
    for (let from = options.fromMs; from < options.toMs; from += options.sliceMs, slice++) {
      const to = Math.min(options.toMs, from + options.sliceMs);
      const started = performance.now();
      const bodies: string[] = [];
      for (const [s, service] of services.entries()) {
        const phases = clip(service.phases, from, to);
        if (phases.length === 0) continue;
        for (const batch of scenarioBatches(service.name, phases, options.seed + s * 1_000_003 + slice)) {
          for (let i = 0; i < batch.samples.length; i += MAX_BATCH_SAMPLES) {
            const part = {
              ...batch,
              batchId: `${batch.batchId}-${i}`,
              samples: batch.samples.slice(i, i + MAX_BATCH_SAMPLES),
            };
            samples += part.samples.length;
            bodies.push(JSON.stringify(toWire(part)));
          }
        }
      }
      // The agents' clocks: batches arrive up to the end of the slice.
      simNow = to;
      for (let i = 0; i < bodies.length; i += UPLOADS_IN_FLIGHT) {
        await Promise.all(bodies.slice(i, i + UPLOADS_IN_FLIGHT).map(post));
      }
      ingestMs += performance.now() - started;
      const detectStarted = performance.now();
      for (const [s, service] of services.entries()) {
        if (!(runs[s] as number[]).some((t) => t > from && t <= to)) continue;
        const run = await runDetectors(store, config, { now: to, service: service.name });
        for (const alert of (books[s] as AlertBook).merge(run.alerts, to)) raised.push({ alert, atMs: to });
        runLog.push({ service: service.name, atMs: to, tested: run.tested });
        detectorRuns++;
      }
      detectMs += performance.now() - detectStarted;
    }
    await options.inspect?.(store, runLog);
    return {
      raised,
      runs: runLog,
      samples,
      detectorRuns,
      ingestSeconds: ingestMs / 1000,
      detectSeconds: detectMs / 1000,
    };
  } finally {
    await collector.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The rollouts of a world that were watched to their final look, and how each was alerted. */
export interface RolloutScore {
  rollout: SimRollout;
  /** The injected regression's alert as first raised: the end of the look that raised it. */
  detectedAfterMs?: number;
  /** Samples on each side of that look. */
  detectedWith?: { baseline: number; candidate: number };
  /** Rollout alerts of this commit on endpoints that did not change. */
  falseAlerts: Alert[];
  /** The final look at the regressed endpoint (6 h): its samples and the expected power there. */
  finalLook?: FinalLook;
}

/** The final look's comparison of a regressed endpoint, and the power it gives the injected size. */
export interface FinalLook {
  n: { baseline: number; candidate: number };
  /** Standard error of ln(ratio) of that comparison. */
  seLogRatio: number;
  /** Comparisons in the detector run at that look (the Benjamini–Hochberg family). */
  family: number;
  /** P(alert at the final look): see {@link expectedPower}. */
  power: number;
}

/**
 * The power of the final look for a change of `pct`%: the comparison's z must pass the critical
 * value of α × (the final look's share, 0.9) after Benjamini–Hochberg over a family of `family`
 * comparisons of which this is the only real change (its adjusted p is p × family), and the
 * estimate must pass the threshold. Normal approximation with the comparison's own standard error
 * (the delta method's), as the detection power table.
 */
export function expectedPower(pct: number, seLogRatio: number, family: number, config: DetectorConfig): number {
  const share = rolloutLook(config.rolloutWindowMs, config.rolloutWindowMs)?.alphaShare ?? 1;
  const zCritical = normalQuantile(1 - (config.alpha * share) / (2 * Math.max(1, family)));
  const needed = Math.max(zCritical * seLogRatio, Math.log(1 + config.minEffectPct / 100));
  const z = (Math.log(1 + pct / 100) - needed) / seLogRatio;
  return normalCdf(z);
}

/**
 * The final look of each regressed rollout, run again on the filled store: what the detector
 * compared at 6 h (samples, standard error) and the power that gives (family size from the world's
 * run at that look).
 */
async function finalLooks(
  store: Store,
  services: SimService[],
  runs: WorldResult['runs'],
  config: DetectorConfig,
  watchedUntilMs: number,
): Promise<Map<string, FinalLook>> {
  const out = new Map<string, FinalLook>();
  for (const service of services) {
    for (const rollout of service.rollouts) {
      const effect = rollout.effect;
      const at = rollout.startMs + config.rolloutWindowMs;
      if (!effect || at > watchedUntilMs) continue;
      const tested = await detectRollouts(store, service.name, at, config);
      const c = tested.find(
        (t) => t.candidate.commit === rollout.commit && t.comparison.endpoint === effect.endpoint,
      )?.comparison;
      if (!c) continue;
      const run = runs.find((r) => r.service === service.name && r.atMs >= at);
      const family = run?.tested ?? tested.length;
      out.set(rollout.commit, {
        n: c.n,
        seLogRatio: c.seLogRatio,
        family,
        power: expectedPower(effect.pct, c.seLogRatio, family, config),
      });
    }
  }
  return out;
}

/** Matches the rollout alerts of a world to its rollouts (those watched to their final look). */
export function scoreRollouts(
  services: SimService[],
  raised: RaisedAlert[],
  watchedUntilMs: number,
  windowMs: number,
  looks: ReadonlyMap<string, FinalLook> = new Map(),
): RolloutScore[] {
  const byCommit = new Map<string, Alert[]>();
  const seen = new Set<string>();
  for (const { alert } of raised) {
    // A regression raised again after being resolved is still one alert.
    if (alert.kind !== 'rollout' || seen.has(alert.id)) continue;
    seen.add(alert.id);
    const list = byCommit.get(alert.candidate.commit) ?? [];
    list.push(alert);
    byCommit.set(alert.candidate.commit, list);
  }
  const scores: RolloutScore[] = [];
  for (const service of services) {
    for (const rollout of service.rollouts) {
      if (rollout.startMs + windowMs > watchedUntilMs) continue;
      const alerts = byCommit.get(rollout.commit) ?? [];
      const hit = alerts.find((a) => a.endpoint === rollout.effect?.endpoint);
      const score: RolloutScore = {
        rollout,
        falseAlerts: alerts.filter((a) => a !== hit),
      };
      const look = looks.get(rollout.commit);
      if (look) score.finalLook = look;
      if (hit) {
        // The alert's candidate window ends at the look that raised it: `serve`, running every
        // minute, raises it then (plus at most a minute).
        score.detectedAfterMs = (hit.candidate.to as number) - rollout.startMs;
        score.detectedWith = hit.n;
      }
      scores.push(score);
    }
  }
  return scores;
}

/** Flag alerts of a world: on the flag and endpoint that were made dearer, or not. */
export function scoreFlags(
  services: SimService[],
  raised: RaisedAlert[],
): { withEffect: number; found: number; rightlyNamed: number; withoutEffect: number; falseAlerts: Alert[] } {
  const flagAlerts = raised.filter((r) => r.alert.kind === 'flag').map((r) => r.alert);
  let withEffect = 0;
  let found = 0;
  let rightlyNamed = 0;
  let withoutEffect = 0;
  const falseAlerts: Alert[] = [];
  for (const service of services) {
    const own = flagAlerts.filter((a) => a.service === service.name);
    const effect = service.flagEffect;
    if (effect) {
      withEffect++;
      const onIt = own.filter((a) => a.endpoint === effect.endpoint);
      if (onIt.length > 0) found++;
      if (onIt.some((a) => a.flag?.key === effect.key && a.flag.variant === 'on' && a.flag.control === 'off'))
        rightlyNamed++;
      falseAlerts.push(...own.filter((a) => a.endpoint !== effect.endpoint));
    } else {
      if (service.flagKey !== undefined) withoutEffect++;
      falseAlerts.push(...own);
    }
  }
  return { withEffect, found, rightlyNamed, withoutEffect, falseAlerts };
}

const WINDOW_MS = DEFAULT_DETECTOR_CONFIG.rolloutWindowMs;

/** Everything one simulator run measured, shared by the three tables that report it. */
export interface SimulationReport {
  rollouts: RolloutScore[];
  flags: ReturnType<typeof scoreFlags>;
  trend: {
    creepFoundOnDay: number | undefined;
    creepRolloutAlerts: number;
    spikeAlerts: Alert[];
    /** Undefined when the flat service was not simulated (BENCH_QUICK). */
    flatAlerts: Alert[] | undefined;
  };
  world: {
    services: number;
    hours: number;
    samples: number;
    detectorRuns: number;
    seconds: number;
    ingestSeconds: number;
    detectSeconds: number;
  };
  trendWorld: { samples: number; detectorRuns: number; seconds: number };
}

let simulation: Promise<SimulationReport> | undefined;

/** Runs the simulator once (full, or BENCH_QUICK=1) and keeps its report for every table. */
export function simulateOnce(): Promise<SimulationReport> {
  simulation ??= simulate(process.env.BENCH_QUICK === '1');
  return simulation;
}

async function simulate(quick: boolean): Promise<SimulationReport> {
  const endMs = Date.UTC(2026, 10, 20);
  // A rollout every 7 h (offset by at most an hour per service) after 7 h of the first commit: every
  // rollout's final look at 6 h is reached before the next one, and 4 per service are watched to it.
  const hours = quick ? 21 : 35;
  const services = rolloutWorld({
    services: quick ? 2 : 3,
    hours,
    endMs,
    seed: 20261127,
    // The busiest endpoint gets about a third of it: thousands of sampled requests an hour, where the
    // detection power table says 2–10% are found within the 6 h window.
    samplesPerHour: 10_000,
    rolloutEveryHours: 7,
    maxOffsetMs: HOUR,
    zipf: 1.4,
    regressedEndpoints: 2,
    regressionShare: 0.75,
    regressionPcts: [2, 5, 10],
  });
  // Rollouts older than 8 h have had their last look: keep the runs to the ones that can change.
  const config = resolveDetectorConfig({ lookbackMs: WINDOW_MS + 2 * HOUR });
  const started = performance.now();
  let looks = new Map<string, FinalLook>();
  const world = await runWorld(
    services,
    {
      fromMs: endMs - hours * HOUR,
      toMs: endMs,
      // Hourly slices and runs: a run sees the latest look passed (the 11- and 22-minute looks of a
      // rollout are seen as the 45-minute one), which keeps the run count within the budget.
      sliceMs: HOUR,
      seed: 7,
      runsOf: (service) => lookTimes(service, config),
      inspect: async (store, runs) => {
        looks = await finalLooks(store, services, runs, config, endMs);
      },
    },
    config,
  );
  const seconds = (performance.now() - started) / 1000;
  // The trend world: the detectors at the end of each of the last seven days.
  const trendServices = trendWorld(endMs).filter((s) => !quick || s.name !== 'flat');
  const trendStarted = performance.now();
  const dailyRuns = Array.from({ length: 7 }, (_, d) => endMs - (6 - d) * DAY);
  const trends = await runWorld(
    trendServices,
    { fromMs: endMs - 15 * DAY, toMs: endMs, sliceMs: HOUR, seed: 11, runsOf: () => dailyRuns },
    resolveDetectorConfig(),
  );
  const of = (service: string) => trends.raised.filter((r) => r.alert.service === service);
  const creepTrend = of('creep').find((r) => r.alert.kind === 'trend');
  return {
    rollouts: scoreRollouts(services, world.raised, endMs, WINDOW_MS, looks),
    flags: scoreFlags(services, world.raised),
    trend: {
      // Days are numbered 0..14; the runs are at the ends of days 8..14; day 8 is the first dearer one.
      creepFoundOnDay: creepTrend ? 14 - Math.round((endMs - creepTrend.atMs) / DAY) : undefined,
      creepRolloutAlerts: of('creep').filter((r) => r.alert.kind === 'rollout').length,
      spikeAlerts: of('spike').map((r) => r.alert),
      flatAlerts: quick ? undefined : of('flat').map((r) => r.alert),
    },
    world: {
      services: services.length,
      hours,
      samples: world.samples,
      detectorRuns: world.detectorRuns,
      seconds,
      ingestSeconds: world.ingestSeconds,
      detectSeconds: world.detectSeconds,
    },
    trendWorld: {
      samples: trends.samples,
      detectorRuns: trends.detectorRuns,
      seconds: (performance.now() - trendStarted) / 1000,
    },
  };
}

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function minutes(ms: number | undefined): string {
  if (ms === undefined) return '–';
  const m = ms / MINUTE;
  return m < 90 ? `${m.toFixed(0)} min` : `${(m / 60).toFixed(1)} h`;
}

/** Power and time to alert per injected regression size, from the simulated world. */
export async function benchSimulatedRollouts(): Promise<BenchTable> {
  const report = await simulateOnce();
  const rows: (string | number)[][] = [];
  const pcts = [...new Set(report.rollouts.map((r) => r.rollout.effect?.pct).filter((p) => p !== undefined))].sort(
    (a, b) => a - b,
  );
  for (const pct of pcts) {
    for (const how of ['all-at-once', 'canary'] as const) {
      const scored = report.rollouts.filter((r) => r.rollout.effect?.pct === pct && r.rollout.how === how);
      if (scored.length === 0) continue;
      const found = scored.filter((r) => r.detectedAfterMs !== undefined);
      const powers = scored.map((r) => r.finalLook?.power).filter((p) => p !== undefined);
      const expected = powers.reduce((t, p) => t + p, 0);
      rows.push([
        `+${pct}%`,
        how,
        scored.length,
        `${found.length} (${((100 * found.length) / scored.length).toFixed(0)}%)`,
        powers.length === scored.length
          ? `${expected.toFixed(1)} (${((100 * expected) / scored.length).toFixed(0)}%)`
          : `${powers.length} of ${scored.length} compared`,
        scored
          .map((r) => `${(r.rollout.effect?.samplesPerHour ?? 0).toLocaleString('en-US')}`)
          .sort()
          .join(', '),
        (median(scored.map((r) => r.finalLook?.n.candidate ?? 0)) ?? 0).toLocaleString('en-US'),
        minutes(median(found.map((r) => r.detectedAfterMs as number))),
        minutes(found.length ? Math.max(...found.map((r) => r.detectedAfterMs as number)) : undefined),
      ]);
    }
  }
  const aa = report.rollouts.filter((r) => !r.rollout.effect);
  const falseOnChanged = report.rollouts.filter((r) => r.rollout.effect && r.falseAlerts.length > 0).length;
  const w = report.world;
  const families = report.rollouts.map((r) => r.finalLook?.family).filter((f) => f !== undefined);
  return {
    title: 'Detection simulator: regressions found through the real ingest path',
    description:
      `${w.services} services × ${w.hours} h of simulated traffic (20–50 endpoints each, Zipf-unequal traffic ∝ 1/rank^1.4 — the ` +
      'busiest endpoint gets about 40% of the 10 000 sampled requests an hour of a service, the next about 15% —, log-normal σ 0.5–1 and ' +
      '5%-slow-path ×10 costs, diurnal load 0.5–1.5×, each endpoint’s share moving ±30% over the day, host class B (1.5× dearer) ' +
      'from 20% of the traffic at night to 60% at peak, a flag on 20% of requests) written as wire batches over HTTP to a collector on a ' +
      'DuckDB file, in time order. After 7 h of the first commit, a rollout every 7 h per service (so every rollout reaches its final ' +
      'look at 6 h), alternately all-at-once and canary (the new commit on 25% of the traffic for an hour, then all of it); 75% of ' +
      'rollouts make one of the two busiest endpoints dearer by the size shown (it stays). The detectors (`runDetectors`, defaults) ' +
      'run for a service at the end of every simulated hour in which a look of one of its rollouts passed (between looks `serve`’s ' +
      'every-minute runs repeat the same comparisons); an alert counts from the first run that raised it. ' +
      `${w.samples.toLocaleString('en-US')} samples, ${w.detectorRuns} detector runs, ${w.seconds.toFixed(0)} s ` +
      `(${w.ingestSeconds.toFixed(0)} s ingest, ${w.detectSeconds.toFixed(0)} s detector runs${loadNote()}). ` +
      'Rollouts are scored once watched to their final look. “Expected” is the sum over the row’s rollouts of the power of the final ' +
      'look alone: the normal approximation of the detection power table with the final look’s own samples and standard error (the ' +
      'comparison the detector made at 6 h, run again on the filled store), α × 0.9 (the final look’s share), Benjamini–Hochberg over ' +
      `the run’s comparisons (${Math.min(...families)}–${Math.max(...families)} per run; the regression is the one real change, so its ` +
      'p-value is multiplied by their number) and the 1% minimum effect; the earlier looks can only add to it.',
    columns: [
      'regression',
      'rollout',
      'rollouts',
      'found',
      'expected at the final look',
      'sampled req/h of the regressed endpoint (each)',
      'samples of the new commit at the final look (median)',
      'time to alert (median)',
      'slowest',
    ],
    rows,
    notes: [
      `Unchanged endpoints: ${aa.length} rollouts changed nothing; ${aa.filter((r) => r.falseAlerts.length > 0).length} of them raised an alert. ` +
        `Of the ${report.rollouts.length - aa.length} rollouts with a regression, ${falseOnChanged} also raised an alert on an endpoint that did not change. ` +
        'The false-alert rate itself needs far more rollouts than a run of this size holds: see the false-alerts table.',
      'Time to alert is the end of the look that raised the alert, in whole minutes: the rollout test looks at 11, 22, 45, 90, 180 ' +
        'and 360 minutes after the rollout (docs/detectors.md), so a large regression on a busy endpoint is caught at an early look ' +
        '(with 2% of α each) and a small one only at the last. With hourly runs the 11- and 22-minute looks are seen as the 45-minute ' +
        'one; `serve`, running every minute, would raise a large regression up to half an hour sooner.',
    ],
  };
}

function loadNote(): string {
  const [one] = os.loadavg();
  return one !== undefined && one > os.cpus().length
    ? `; load average ${one.toFixed(0)} on ${os.cpus().length} cores`
    : '';
}

/** Flags named, creeping trends found, spikes not alerted: from the same simulator run. */
export async function benchSimulatedFlagsTrends(): Promise<BenchTable> {
  const report = await simulateOnce();
  const f = report.flags;
  const t = report.trend;
  const spikeTrends = t.spikeAlerts.filter((a) => a.kind === 'trend').length;

  return {
    title: 'Detection simulator: flags, creeping trends and spikes',
    description:
      'Flags: in the rollout world above, every other service’s flag makes its second-busiest endpoint 15% dearer for the 20% of ' +
      'requests that have it "on"; the other services’ flags change nothing. Trends: a second world of 15 days (diurnal load, host mix ' +
      'moving with it, 1 000 sampled req/h on the heavy endpoint), detectors run at the end of each of the last 7 days: `creep` ships a ' +
      'commit a day, each +0.3% from day 8 (no rollout alone worth an alert), `spike` is +20% for one day three days before the end and ' +
      `back, \`flat\` ships daily commits that change nothing. ${report.trendWorld.samples.toLocaleString('en-US')} samples, ` +
      `${report.trendWorld.detectorRuns} runs, ${report.trendWorld.seconds.toFixed(0)} s.`,
    columns: ['check', 'expected', 'measured'],
    rows: [
      ['flag regressions found', `${f.withEffect} of ${f.withEffect}`, `${f.found} of ${f.withEffect}`],
      ['… with the right flag, variant and control named', `${f.withEffect}`, `${f.rightlyNamed}`],
      [
        'false flag alerts (flags that changed nothing, other endpoints)',
        '0',
        `${f.falseAlerts.length} (${f.withoutEffect} flags without effect)`,
      ],
      [
        'creep +0.3%/day found by the trend detector',
        'within the week (by day 14)',
        t.creepFoundOnDay === undefined ? 'not found' : `day ${t.creepFoundOnDay}`,
      ],
      ['rollout alerts on the creep’s +0.3% commits', '0 (below the 1% threshold)', `${t.creepRolloutAlerts}`],
      ['trend alerts on the one-day spike', '0', `${spikeTrends}`],
      [
        'any alert on the flat service',
        '0',
        t.flatAlerts === undefined ? 'not run (BENCH_QUICK)' : `${t.flatAlerts.length}`,
      ],
    ],
    notes: [
      ...f.falseAlerts.map((a) => `False flag alert: ${a.summary}`),
      ...t.spikeAlerts.map((a) => `Spike service alert: ${a.summary}`),
      ...(t.flatAlerts ?? []).map((a) => `Flat service alert: ${a.summary}`),
    ],
  };
}
