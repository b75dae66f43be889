import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { studentQuantile } from 'ergometer';
import type { LoadResult } from './apps/load-generator';
import type { AppVariant, ProfilerRun, ServerReady } from './apps/server';
import { canPin, firstMessage, pct, procSnapshot, runLoadGenerator, startAppServer, stopServer } from './throughput';

/**
 * Two variants of the throughput app measured side by side: two server processes at the same time on the
 * same CPU, each under the same fixed request rate from its own load generator on the other CPU; the
 * ratio of their CPU per request (all threads, from /proc) is the cost of one against the other. Both see
 * the same machine at the same moments (the scheduler interleaves them by the millisecond), so what moves
 * separate runs minutes apart by tens of percent on a shared VM moves both alike: round-to-round ratios
 * stay within a few percent. Used where a goal is a percent or two (bench/src/agent-ab.ts,
 * bench/src/profiler-ab.ts).
 *
 * Pinning the two servers to different CPUs is worse, not better: this VM's two vCPUs differ by 20–50%
 * from moment to moment.
 *
 * Two kinds of load. At a fixed rate below what CPU 0 can serve, each process idles part of the time, and
 * the ratio is the cost at that load: a cost per unit of time (a profiler's timer-driven stack samples) is
 * spread over few requests. Saturated, each load generator sends as fast as its server answers, the two
 * processes share CPU 0 with no idle time, and the ratio is the cost in throughput: what a goal stated in
 * throughput means.
 */

/**
 * Requests per second sent to each server (together below one CPU, so neither waits for the other), or
 * `saturated`: as fast as each server answers on its 10 connections.
 */
export type Load = number | 'saturated';

export interface SideBySideSettings {
  rounds: number;
  warmupSeconds: number;
  durationSeconds: number;
  /** The load of a pair that names none. */
  rate: Load;
}

/** "1000 requests/s each (fixed rate …)", or what saturated means: the load in a benchmark's description. */
export function describeLoad(load: Load): string {
  return load === 'saturated'
    ? 'each load generator sends as fast as its server answers (autocannon, 10 connections): the two servers share CPU 0 with no idle time'
    : `${load} requests/s each (fixed rate, autocannon, 10 connections)`;
}

/** The baseline (`off`) and the variant whose cost is measured against it (`on`). */
export interface Pair {
  off: AppVariant;
  on: AppVariant;
  /** Where both servers' agents send (an `http:` collector and its ingest token); default a `file:` of their own. */
  collector?: { url: string; token: string };
  /**
   * Environment of one side's server only, over the bench's own: two settings of one variant side by side
   * (`ERGOMETER_PROFILE_SAMPLER`, say), where a variant of its own would only repeat another.
   */
  env?: { off?: NodeJS.ProcessEnv; on?: NodeJS.ProcessEnv };
}

/** One round: a fresh pair of processes, CPU µs per request of each (and its kernel part) and the requests each served. */
export interface PairRound {
  offMicros: number;
  onMicros: number;
  offKernelMicros: number;
  onKernelMicros: number;
  offRequests: number;
  onRequests: number;
  /** What each server's profiler ran on (ServerReady.profiler), where it started one. */
  offProfiler?: ProfilerRun;
  onProfiler?: ProfilerRun;
}

/** What a ratio of CPU per request is taken over: all of it, or the user-space part only (no kernel time). */
export type CpuPart = 'all' | 'user';

/** The cost of `on` over the rounds: geometric mean of the ratios of CPU per request, 95% t-interval. */
export interface PairCost {
  ratio: number;
  low: number;
  high: number;
}

interface Server {
  pid: number;
  port: number;
  profiler: ProfilerRun | undefined;
  stop: () => Promise<void>;
}

async function startServer(
  variant: AppVariant,
  pinning: boolean,
  collector: Pair['collector'],
  env: NodeJS.ProcessEnv = {},
): Promise<Server> {
  if (collector !== undefined) {
    const child = startAppServer(variant, collector.url, pinning, [], { ...env, ERGOMETER_TOKEN: collector.token });
    return ready(child, variant, async () => {});
  }
  // A `file:` collector of its own, in a folder removed with the server.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ergometer-bench-ab-'));
  const child = startAppServer(variant, `file:${path.join(dir, 'samples.ndjson')}`, pinning, [], env);
  return ready(child, variant, () => rm(dir, { recursive: true, force: true }));
}

async function ready(child: ChildProcess, variant: AppVariant, cleanUp: () => Promise<void>): Promise<Server> {
  const message = await firstMessage<ServerReady>(child, `the ${variant} server`);
  return {
    pid: child.pid as number,
    port: message.port,
    profiler: message.profiler,
    async stop() {
      await stopServer(child);
      await cleanUp();
    },
  };
}

function load(port: number, seconds: number, rate: Load, pinning: boolean): Promise<LoadResult> {
  return runLoadGenerator(
    {
      url: `http://127.0.0.1:${port}`,
      connections: 10,
      durationSeconds: seconds,
      ...(rate === 'saturated' ? {} : { overallRate: rate }),
    },
    pinning,
  );
}

/** BENCH_QUICK=1: a smoke run of every side-by-side benchmark, numbers not for the docs. */
const QUICK: SideBySideSettings = { rounds: 2, warmupSeconds: 2, durationSeconds: 5, rate: 500 };

/**
 * A pair, how the table and the progress lines name it, its load (the settings' `rate` if none), and its rounds in
 * a full run (the settings' `rounds` if none): a pair that decides a goal can take more than one that gives context.
 */
export interface LabelledPair {
  label: string;
  pair: Pair;
  load?: Load;
  rounds?: number;
}

/** What {@link measurePairs} ran and measured: the rounds of each pair, in the order of the pairs given. */
export interface PairsResult {
  settings: SideBySideSettings;
  pinning: boolean;
  rounds: PairRound[][];
}

/**
 * Runs each pair's rounds (`full.rounds` unless the pair names its own; QUICK's under BENCH_QUICK=1), the pairs
 * alternating within each round while they have rounds left, and prints a progress line per round on stderr,
 * prefixed by `name`.
 */
export async function measurePairs(
  name: string,
  pairs: readonly LabelledPair[],
  full: SideBySideSettings,
): Promise<PairsResult> {
  const quick = process.env.BENCH_QUICK === '1';
  const settings = quick ? QUICK : full;
  const roundsOf = (pair: LabelledPair) => (quick ? settings.rounds : (pair.rounds ?? settings.rounds));
  const pinning = canPin();
  const rounds: PairRound[][] = pairs.map(() => []);
  for (let i = 1; i <= Math.max(...pairs.map(roundsOf)); i++) {
    for (const [p, labelled] of pairs.entries()) {
      const { label, pair, load } = labelled;
      if (i > roundsOf(labelled)) continue;
      const round = await measurePair(pair, load ?? settings.rate, settings, pinning);
      rounds[p]?.push(round);
      console.error(
        `${name}: round ${i}/${roundsOf(labelled)}, ${label}: ${pair.off} ${round.offMicros.toFixed(1)} µs CPU/req, ` +
          `${pair.on} ${round.onMicros.toFixed(1)} µs CPU/req (×${(round.onMicros / round.offMicros).toFixed(4)})`,
      );
    }
  }
  return { settings, pinning, rounds };
}

/** Runs one round of `pair`: both servers started, warmed up and measured at the same time. */
async function measurePair(pair: Pair, rate: Load, settings: SideBySideSettings, pinning: boolean): Promise<PairRound> {
  const servers = await Promise.all([
    startServer(pair.off, pinning, pair.collector, pair.env?.off),
    startServer(pair.on, pinning, pair.collector, pair.env?.on),
  ]);
  try {
    await Promise.all(servers.map((s) => load(s.port, settings.warmupSeconds, rate, pinning)));
    const before = servers.map((s) => procSnapshot(s.pid));
    const loads = await Promise.all(servers.map((s) => load(s.port, settings.durationSeconds, rate, pinning)));
    const after = servers.map((s) => procSnapshot(s.pid));
    const perRequest = (i: number, part: 'cpuMicros' | 'kernelMicros' = 'cpuMicros') =>
      ((after[i]?.[part] ?? Number.NaN) - (before[i]?.[part] ?? Number.NaN)) / (loads[i]?.requests ?? 0);
    return {
      offMicros: perRequest(0),
      onMicros: perRequest(1),
      offKernelMicros: perRequest(0, 'kernelMicros'),
      onKernelMicros: perRequest(1, 'kernelMicros'),
      offRequests: loads[0]?.requests ?? 0,
      onRequests: loads[1]?.requests ?? 0,
      ...(servers[0]?.profiler === undefined ? {} : { offProfiler: servers[0].profiler }),
      ...(servers[1]?.profiler === undefined ? {} : { onProfiler: servers[1].profiler }),
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/**
 * The cost of `on` against `off` over `rounds` (the log-ratios are close to normal; the rounds few), in all CPU
 * time or in its user-space part: whether a cost is the kernel's work (syscalls, faults) or the process's own code.
 */
export function pairCost(rounds: readonly PairRound[], part: CpuPart = 'all'): PairCost {
  const kernel = (micros: number) => (part === 'user' ? micros : 0);
  const logs = rounds.map((r) =>
    Math.log((r.onMicros - kernel(r.onKernelMicros)) / (r.offMicros - kernel(r.offKernelMicros))),
  );
  const { mean, low, high } = meanInterval(logs);
  return { ratio: Math.exp(mean), low: Math.exp(low), high: Math.exp(high) };
}

/** The mean of `values` with its 95% t-interval (unbounded for fewer than two values). */
export function meanInterval(values: readonly number[]): { mean: number; low: number; high: number } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : Number.POSITIVE_INFINITY;
  const half = n > 1 ? studentQuantile(0.975, n - 1) * (sd / Math.sqrt(n)) : Number.POSITIVE_INFINITY;
  return { mean, low: mean - half, high: mean + half };
}

/** "+1.2%": a change as a signed percentage. */
export const signed = (ratio: number) => `${ratio >= 0 ? '+' : ''}${pct(ratio)}`;

/** "+4.3% (95% +3.3% to +5.3%)": the change of CPU per request. */
export function describeCost(cost: PairCost): string {
  return `${signed(cost.ratio - 1)} (95% ${signed(cost.low - 1)} to ${signed(cost.high - 1)})`;
}

/** Whether `cost` meets a goal of at most `goal` more CPU per request: met, missed, or not shown either way. */
export function goalVerdict(cost: PairCost, goal: number): string {
  if (cost.high - 1 <= goal) return `met: the upper bound is ${signed(cost.high - 1)}.`;
  if (cost.low - 1 > goal) return `missed: even the lower bound, ${signed(cost.low - 1)}, is above it.`;
  return `not shown: the interval (${signed(cost.low - 1)} to ${signed(cost.high - 1)}) holds values on both sides of it.`;
}

/** Where the two servers and their load generators ran, for a benchmark's description. */
export function describePinning(pinning: boolean): string {
  return pinning ? 'both on CPU 0 with their load generators on CPU 1' : 'unpinned (taskset unavailable)';
}

/** The table rows of every pair: one per round, then the pair's cost over all its rounds. */
export function pairRows(
  pairs: readonly LabelledPair[],
  rounds: readonly PairRound[][],
  costs: readonly PairCost[],
): string[][] {
  return pairs.flatMap(({ label }, p) => [
    ...(rounds[p] ?? []).map((r, i) => roundRow(`${label}, round ${i + 1}`, r)),
    costRow(`${label}, all rounds (geometric mean, 95% t-interval)`, costs[p] as PairCost),
  ]);
}

/** The table row of one round. */
function roundRow(label: string, r: PairRound): string[] {
  return [
    label,
    r.offMicros.toFixed(1),
    r.onMicros.toFixed(1),
    `×${(r.onMicros / r.offMicros).toFixed(3)}`,
    `${r.offKernelMicros.toFixed(1)} / ${r.onKernelMicros.toFixed(1)}`,
    `${r.offRequests} / ${r.onRequests}`,
  ];
}

/** The table row of all rounds of one pair. */
function costRow(label: string, cost: PairCost): string[] {
  return [label, '—', '—', `×${cost.ratio.toFixed(3)} (×${cost.low.toFixed(3)}–×${cost.high.toFixed(3)})`, '—', '—'];
}
