import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AppVariant, ServerReady, TimelineReply, TimelineRequest, TimelineStep } from './apps/server';
import type { BenchTable } from './report';
import { meanInterval, signed } from './side-by-side';
import { canPin, firstMessage, pct, runLoadGenerator, startAppServer, stopServer } from './throughput';

/**
 * What one window of the profiler costs, and when: a single server of the throughput benchmark's app with the
 * profiler at its defaults, saturated for twenty minutes, reports its CPU and requests every 250 ms and whether
 * its profiler records; CPU per request around each window's start is set against the same process's in the
 * seconds before it. The side-by-side benchmark (profiler-ab.ts) measures the whole cost against a process without
 * a profiler; this one shows how much of it the windows themselves take, and whether anything follows them,
 * without the spread between two processes (which process of a pair the JIT favours) that widens its interval.
 * What a window might leave for the rest of a process's life is in neither's before and after here: only the
 * side-by-side sees it.
 */

const VARIANT: AppVariant = 'agent-0.01-profile-defaults-60s';
const STEP_MS = 250;
const STEPS_PER_SECOND = 1000 / STEP_MS;

interface Settings {
  /** Load before the steps that count: the first period has no window anyway (docs/agent.md, "warm-up"). */
  warmupSeconds: number;
  durationSeconds: number;
  env: NodeJS.ProcessEnv;
  /** Seconds around a window's start: its baseline's CPU per request, [from, to). */
  baseline: readonly [number, number];
  /** The CPU above the baseline's rate from `from` to each of `to`: the window's cost. */
  cost: { from: number; to: readonly [number, number] };
  /** The table's seconds; no other window may record from the baseline's start to the table's end. */
  table: readonly [number, number];
}

/** Twenty periods of the defaults, the first of them without a window. */
const FULL: Settings = {
  warmupSeconds: 60,
  durationSeconds: 1200,
  env: {},
  baseline: [-12, -3],
  cost: { from: -2, to: [3, 10] },
  table: [-4, 12],
};
/** BENCH_QUICK=1: short windows (a 8 s period) on a shorter stretch, numbers not for the docs. */
const QUICK: Settings = {
  warmupSeconds: 2,
  durationSeconds: 40,
  env: { ERGOMETER_PROFILE_PERIOD_MS: '8000' },
  baseline: [-3, -1],
  cost: { from: -1, to: [1, 2] },
  table: [-2, 3],
};

interface Step {
  cpuMicros: number;
  requests: number;
  recording: boolean;
}

/** Differences between successive samples: what happened in each step. */
function toSteps(samples: readonly TimelineStep[], fromMs: number): Step[] {
  const steps: Step[] = [];
  for (let i = 1; i < samples.length; i++) {
    const [at, cpu, requests, recording] = samples[i] as TimelineStep;
    const [, cpuBefore, requestsBefore] = samples[i - 1] as TimelineStep;
    if (at < fromMs) continue;
    steps.push({ cpuMicros: cpu - cpuBefore, requests: requests - requestsBefore, recording: recording === 1 });
  }
  return steps;
}

interface Sum {
  cpuMicros: number;
  requests: number;
}

function sum(steps: readonly Step[], from: number, to: number): Sum {
  let cpuMicros = 0;
  let requests = 0;
  for (const step of steps.slice(from, to)) {
    cpuMicros += step.cpuMicros;
    requests += step.requests;
  }
  return { cpuMicros, requests };
}

/**
 * The steps where a window starts, each with a clear stretch around it: no other window's recording from its
 * baseline to the end of the table, so that one window's cost is not another's baseline.
 */
function windowStarts(steps: readonly Step[], { baseline, table }: Settings): number[] {
  const from = baseline[0] * STEPS_PER_SECOND;
  const to = table[1] * STEPS_PER_SECOND;
  const starts: number[] = [];
  for (let i = 1; i < steps.length; i++) {
    if (!steps[i]?.recording || steps[i - 1]?.recording) continue;
    if (i + from < 0 || i + to > steps.length) continue;
    let end = i;
    while (steps[end]?.recording) end++;
    const others =
      steps.slice(i + from, i).some((s) => s.recording) || steps.slice(end, i + to).some((s) => s.recording);
    if (!others) starts.push(i);
  }
  return starts;
}

/** Each window's CPU above its own baseline's rate per request, from `fromS` to `toS` around its start, µs. */
function excessPerWindow(
  steps: readonly Step[],
  starts: readonly number[],
  [baseFromS, baseToS]: readonly [number, number],
  fromS: number,
  toS: number,
): number[] {
  return starts.map((i) => {
    const base = sum(steps, i + baseFromS * STEPS_PER_SECOND, i + baseToS * STEPS_PER_SECOND);
    const span = sum(steps, i + fromS * STEPS_PER_SECOND, i + toS * STEPS_PER_SECOND);
    return span.cpuMicros - (base.cpuMicros / base.requests) * span.requests;
  });
}

/** The sizes of the gzipped pprof files a `file:` collector at `samples` received, one per window, bytes. */
async function profileSizes(samples: string): Promise<number[]> {
  const dir = samples.replace(/\.ndjson$/, '.profiles');
  const files = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.pb.gz'));
  return Promise.all(files.map(async (name) => (await stat(path.join(dir, name))).size));
}

interface Timeline {
  ready: ServerReady;
  steps: Step[];
  /** Each window's profile as shipped (the one a window still open at the end sent at shutdown left out). */
  profileBytes: number[];
}

async function recordTimeline(settings: Settings, pinning: boolean): Promise<Timeline> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ergometer-bench-timeline-'));
  const samples = path.join(dir, 'samples.ndjson');
  const server = startAppServer(VARIANT, `file:${samples}`, pinning, [], {
    ...settings.env,
    BENCH_TIMELINE_MS: String(STEP_MS),
  });
  try {
    const ready = await firstMessage<ServerReady>(server, `the ${VARIANT} server`);
    const startedMs = Date.now();
    const url = `http://127.0.0.1:${ready.port}`;
    const seconds = settings.warmupSeconds + settings.durationSeconds;
    const result = await runLoadGenerator({ url, connections: 10, durationSeconds: seconds }, pinning);
    if (result.non2xx > 0 || result.errors > 0)
      throw new Error(`profiler timeline: ${result.non2xx} non-2xx answers and ${result.errors} errors under load`);
    const reply = firstMessage<TimelineReply>(server, 'the server, for its timeline');
    const request: TimelineRequest = { type: 'timeline' };
    server.send(request);
    const { steps } = await reply;
    // Before the server stops: its shutdown ships the window it may be in, cut short.
    const profileBytes = await profileSizes(samples);
    return { ready, steps: toSteps(steps, startedMs + settings.warmupSeconds * 1000), profileBytes };
  } finally {
    await stopServer(server);
    await rm(dir, { recursive: true, force: true });
  }
}

export async function benchProfilerTimeline(): Promise<BenchTable> {
  const settings = process.env.BENCH_QUICK === '1' ? QUICK : FULL;
  const pinning = canPin();
  const { ready, steps, profileBytes } = await recordTimeline(settings, pinning);
  if (ready.profiler?.schedule !== 'windows')
    throw new Error(
      `profiler timeline: the profiler runs ${ready.profiler?.sampler ?? 'nothing'} on the ` +
        `${ready.profiler?.schedule ?? 'no'} schedule here, with no windows to line up`,
    );
  const starts = windowStarts(steps, settings);
  const { baseline: baselineS, cost, table } = settings;
  if (starts.length < 2)
    throw new Error(`profiler timeline: ${starts.length} window(s) with a clear stretch around them; need 2 or more`);
  const all = sum(steps, 0, steps.length);
  const periodSeconds = Number(settings.env.ERGOMETER_PROFILE_PERIOD_MS ?? 60_000) / 1000;
  const cpuPerPeriod = (all.cpuMicros / steps.length) * STEPS_PER_SECOND * periodSeconds;
  const recordingSteps = steps.filter((s) => s.recording);
  const recorded = sum(recordingSteps, 0, recordingSteps.length);
  const baselines = starts.map((i) =>
    sum(steps, i + baselineS[0] * STEPS_PER_SECOND, i + baselineS[1] * STEPS_PER_SECOND),
  );
  const baseline = baselines.reduce((a, b) => a + b.cpuMicros, 0) / baselines.reduce((a, b) => a + b.requests, 0);

  const rows: string[][] = [];
  for (let second = table[0]; second < table[1]; second++) {
    const bin = starts.map((i) => sum(steps, i + second * STEPS_PER_SECOND, i + (second + 1) * STEPS_PER_SECOND));
    const cpuMicros = bin.reduce((a, b) => a + b.cpuMicros, 0);
    const requests = bin.reduce((a, b) => a + b.requests, 0);
    const recordingShare =
      starts.reduce(
        (a, i) =>
          a +
          steps.slice(i + second * STEPS_PER_SECOND, i + (second + 1) * STEPS_PER_SECOND).filter((s) => s.recording)
            .length,
        0,
      ) /
      (starts.length * STEPS_PER_SECOND);
    rows.push([
      `${second} to ${second + 1}`,
      `${Math.round(recordingShare * 100)}%`,
      (cpuMicros / requests).toFixed(1),
      signed(cpuMicros / requests / baseline - 1),
      (requests / starts.length).toFixed(0),
    ]);
  }

  const costs = cost.to.map((toS) => {
    const excess = meanInterval(excessPerWindow(steps, starts, baselineS, cost.from, toS));
    const share = (x: number) => pct(x / cpuPerPeriod, 2);
    const ms = (x: number) => `${(x / 1000).toFixed(0)} ms`;
    return (
      `from ${cost.from} s to +${toS} s: ${ms(excess.mean)} of CPU (95% ${ms(excess.low)} to ${ms(excess.high)}), ` +
      `${share(excess.mean)} of the CPU of its period of ${periodSeconds} s (${share(excess.low)} to ${share(excess.high)})`
    );
  });
  const windowSeconds = recordingSteps.length / STEPS_PER_SECOND / starts.length;
  return {
    title: `What one profiler window costs, and when (Node ${process.version})`,
    description:
      `bench/src/profiler-timeline.ts: one server of the throughput benchmark's Express app with the agent at sampleRate ` +
      `0.01 and the profiler at its defaults (${ready.profiler.sampler === 'interrupt' ? 'the interrupt sampler' : "V8's profiler"}, ` +
      `one window in each period of ${periodSeconds} s, at a random offset), ${pinning ? 'on CPU 0 with its load generator on CPU 1' : 'unpinned'}; its load ` +
      `generator sends as fast as it answers (autocannon, 10 connections), for ${settings.durationSeconds} s after ` +
      `${settings.warmupSeconds} s. Every ${STEP_MS} ms the server notes its CPU (all threads) and requests so far and ` +
      `whether its profiler records. ${starts.length} windows with no other within ${-baselineS[0]} s before or ` +
      `${table[1]} s after their start are lined up by the ${STEP_MS} ms step where recording starts; each second ` +
      `around that start is set against the same windows' CPU per request from ${-baselineS[0]} s to ` +
      `${-baselineS[1]} s before it (${baseline.toFixed(1)} µs). Within one process, so without the spread between ` +
      `two processes of the side-by-side benchmarks; and blind, like any before-and-after, to whatever a window ` +
      `leaves for the rest of the process's life, which only those see.`,
    columns: [
      'seconds from the window’s start',
      'share of the second recording',
      'CPU µs/req',
      'vs the same windows’ baseline',
      'requests (per window)',
    ],
    rows,
    notes: [
      `**One window (${windowSeconds.toFixed(2)} s recording on average) costs the process ${costs[0]}.** ` +
        `Counted ${costs[1]}.`,
      `One window's profile as shipped (gzipped pprof, the profile data of one ${periodSeconds} s period): ` +
        `${describeSizes(profileBytes)}, at ${((all.requests / steps.length) * STEPS_PER_SECOND).toFixed(0)} requests/s.`,
      `While it records, CPU per request is ${signed(recorded.cpuMicros / recorded.requests / baseline - 1)} against the ` +
        `baseline; ${pct(recordingSteps.length / steps.length, 2)} of the steps recorded.`,
    ],
  };
}

/** "median 9.1 KiB (8.2–10.4 KiB, 19 profiles)". */
function describeSizes(bytes: readonly number[]): string {
  if (bytes.length === 0) return 'none received';
  const sorted = [...bytes].sort((a, b) => a - b);
  const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  const median = sorted[Math.floor(sorted.length / 2)] as number;
  return `median ${kib(median)} (${kib(sorted[0] as number)}–${kib(sorted.at(-1) as number)}, ${sorted.length} profiles)`;
}
