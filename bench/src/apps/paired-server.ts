import type { AddressInfo } from 'node:net';
import type { RequestHandler } from 'express';

/**
 * The server of the paired overhead benchmark (paired.ts): the throughput app
 * with the agent at sampleRate 1 (or PAIRED_SAMPLE_RATE), whose middleware is skipped every other
 * phase of PAIRED_PHASE_MS. CPU time per request is summed per phase, so
 * "agent on" and "agent off" are measured in the same process, interleaved
 * every few hundred milliseconds: both see the same machine, the same JIT
 * state and the same noisy neighbours, which separate processes a minute apart
 * do not on a shared VM.
 *
 *   BENCH_COLLECTOR  the agent's collector (`file:` URL in a temp dir)
 *   PAIRED_PHASE_MS  length of one phase (default 250)
 *   PAIRED_SAMPLE_RATE  the agent's sampleRate (default 1)
 *   PAIRED_PROFILER_INTERVAL_US  profiler mode (profiler.ts): the agent's middleware runs on every request
 *                    at sampleRate 0.01, and its profiler records windows of half of each 2 × PAIRED_PHASE_MS
 *                    period at this sampling interval; "on" is the CPU per request of the 5 ms ticks in which
 *                    the profiler recorded steadily, "off" of the ticks in which it did not, and the ticks
 *                    around the start and end of each window (the window's own cost) apart.
 *   PAIRED_LABEL_FRACTIONS=off,on  labelling mode (profiler.ts): the profiler records all the time, and the
 *                    fraction of requests it labels alternates between the two (see serveLabelling).
 *   PAIRED_PROFILER_LABEL_FRACTION  profiler mode: the fraction of requests labelled while it records
 *                    (profile.labelFraction; default 1 on the windows schedule used here).
 *
 * Talks to its parent over IPC: sends `{ type: 'listening', port }`; on
 * `{ type: 'measure' }` starts summing (after the warm-up); on
 * `{ type: 'stop' }` answers with a {@link PairedResult} and exits.
 */

/** CPU per request with the agent's middleware run (`on`) and skipped (`off`). */
export interface PairedResult {
  type: 'result';
  offCpuMicrosPerRequest: number;
  onCpuMicrosPerRequest: number;
  offRequests: number;
  onRequests: number;
  /** Profiler mode: the ticks around window starts and ends, and how many starts and ends there were. */
  edge?: { edgeCpuMicros: number; edgeRequests: number; edges: number };
  /** Per cycle: an "off" stretch and the "on" one after it (profiler mode: a window and the stretch before it). */
  cycles: PairedCycle[];
}

/** One "on" stretch and the "off" one before it. */
export interface PairedCycle {
  on: Phase;
  off: Phase;
}

interface Phase {
  cpuMicros: number;
  requests: number;
}

/** This process's CPU time so far (user + system, all threads), µs. */
export function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/**
 * Adds the process's CPU and the requests served since the previous call to each of `phases`
 * (nothing before `measuring`); both modes call it once per tick.
 */
function tickMeter(requests: () => number): (phases: Phase[], measuring: boolean) => void {
  let lastCpuMicros = cpuMicros();
  let lastRequests = requests();
  return (phases, measuring) => {
    const nowCpuMicros = cpuMicros();
    const nowRequests = requests();
    if (measuring) {
      for (const phase of phases) {
        phase.cpuMicros += nowCpuMicros - lastCpuMicros;
        phase.requests += nowRequests - lastRequests;
      }
    }
    lastCpuMicros = nowCpuMicros;
    lastRequests = nowRequests;
  };
}

/** Profiler mode: every request through the agent at 0.01; on and off are the profiler's recording windows. */
function serveProfiler(intervalMicros: number): void {
  const { start }: typeof import('@ergometer/agent') = require('@ergometer/agent');
  const phaseMs = Number(process.env.PAIRED_PHASE_MS ?? 250);
  const labelFraction = process.env.PAIRED_PROFILER_LABEL_FRACTION;
  const agent = start({
    service: 'bench-paired-profiler',
    collector: process.env.BENCH_COLLECTOR,
    sampleRate: 0.01,
    profile: {
      enabled: true,
      dutyCycle: 0.5,
      periodMs: 2 * phaseMs,
      intervalMicros,
      // A study of V8's profiler (bench/src/profiler.ts).
      sampler: 'v8',
      schedule: 'windows',
      // The fraction of requests labelled in the recording phases (the agent's default is 1 on this schedule).
      ...(labelFraction === undefined ? {} : { labelFraction: Number(labelFraction) }),
    },
  });
  const { server, requests } = listenCounting(agent.express());
  const phases: Record<'on' | 'off' | 'edge', Phase> = {
    on: { cpuMicros: 0, requests: 0 },
    off: { cpuMicros: 0, requests: 0 },
    edge: { cpuMicros: 0, requests: 0 },
  };
  const state = { measuring: false };
  const tick = tickMeter(requests);
  // A 1 ms poll sees the windows start and end (they run on the agent's timers). Ticks within EDGE_MS of a
  // start or an end are the window's own cost (starting V8's profiler, stopping it, serializing and
  // compressing the profile on the threadpool): "edge", kept apart from steady recording and not recording.
  let recording = agent.profiling?.recording === true;
  let lastEdgeAt = Number.NEGATIVE_INFINITY;
  let edges = 0;
  const EDGE_MS = 50;
  // One cycle per window: the steady recording ticks of the window and the not-recording ticks before it.
  const cycles: PairedCycle[] = [];
  let cycle: PairedCycle = { on: { cpuMicros: 0, requests: 0 }, off: { cpuMicros: 0, requests: 0 } };
  setInterval(() => {
    const now = agent.profiling?.recording === true;
    if (now !== recording) {
      recording = now;
      lastEdgeAt = performance.now();
      if (state.measuring) edges++;
      if (now) {
        if (cycle.on.requests > 0 && cycle.off.requests > 0) cycles.push(cycle);
        cycle = { on: { cpuMicros: 0, requests: 0 }, off: { cpuMicros: 0, requests: 0 } };
      }
    }
  }, 1).unref();
  setInterval(() => {
    const edge = performance.now() - lastEdgeAt < EDGE_MS;
    tick(edge ? [phases.edge] : recording ? [phases.on, cycle.on] : [phases.off, cycle.off], state.measuring);
  }, 5).unref();
  answerOnStop(server, phases, agent, state, cycles, () => ({
    edgeCpuMicros: phases.edge.cpuMicros,
    edgeRequests: phases.edge.requests,
    edges,
  }));
}

/**
 * Labelling mode: the profiler records all the time (continuous, every PAIRED_PROFILER_INTERVAL_US or 100 ms) and
 * the fraction of requests it labels alternates between `off` and `on` every PAIRED_PHASE_MS, so the pair measures
 * what labelling costs per request and nothing else (V8's sampling is the same in both phases). The fraction is set
 * on the agent's profiler object directly: a benchmark's reach into the agent, not an API.
 */
function serveLabelling(off: number, on: number): void {
  const { start }: typeof import('@ergometer/agent') = require('@ergometer/agent');
  const agent = start({
    service: 'bench-paired-labelling',
    collector: process.env.BENCH_COLLECTOR,
    sampleRate: 0.01,
    profile: {
      enabled: true,
      dutyCycle: 1,
      intervalMicros: Number(process.env.PAIRED_PROFILER_INTERVAL_US ?? 100_000),
      sampler: 'v8',
      schedule: 'continuous',
    },
  });
  const profiler = (agent as unknown as { profiler?: { labelFraction: number } }).profiler;
  if (profiler === undefined) throw new Error('the profiler did not start');
  profiler.labelFraction = off;
  const { server, requests } = listenCounting(agent.express());
  alternate(server, agent, requests, (isOn) => {
    profiler.labelFraction = isOn ? on : off;
  });
}

function serve(): void {
  const { start }: typeof import('@ergometer/agent') = require('@ergometer/agent');
  const agent = start({
    service: 'bench-paired',
    collector: process.env.BENCH_COLLECTOR,
    sampleRate: Number(process.env.PAIRED_SAMPLE_RATE ?? 1),
  });
  const middleware = agent.express();
  let agentOn = false;
  const { server, requests } = listenCounting((req, res, next) => {
    if (agentOn) middleware(req, res, next);
    else next();
  });
  alternate(server, agent, requests, (isOn) => {
    agentOn = isOn;
  });
}

/** Serves the benchmark app with `handle` as its first middleware, counting requests; tells the parent its port. */
function listenCounting(handle: RequestHandler): { server: import('node:http').Server; requests: () => number } {
  let requests = 0;
  const instrument: RequestHandler = (req, res, next) => {
    requests++;
    handle(req, res, next);
  };
  const { createBenchApp }: typeof import('./app') = require('./app');
  const server = createBenchApp(instrument).listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'listening', port: (server.address() as AddressInfo).port });
  });
  return { server, requests: () => requests };
}

/** Switches `setOn` every PAIRED_PHASE_MS and sums each phase's CPU and requests; answers `measure` and `stop`. */
function alternate(
  server: import('node:http').Server,
  agent: { shutdown(): Promise<unknown> },
  requests: () => number,
  setOn: (on: boolean) => void,
): void {
  const phases: Record<'on' | 'off', Phase> = { on: { cpuMicros: 0, requests: 0 }, off: { cpuMicros: 0, requests: 0 } };
  const state = { measuring: false };
  const tick = tickMeter(requests);
  const phaseMs = Number(process.env.PAIRED_PHASE_MS ?? 250);
  const cycles: PairedCycle[] = [];
  let cycle: PairedCycle = { on: { cpuMicros: 0, requests: 0 }, off: { cpuMicros: 0, requests: 0 } };
  let on = false;
  setOn(on);
  setInterval(() => {
    tick(on ? [phases.on, cycle.on] : [phases.off, cycle.off], state.measuring);
    // A cycle is an off phase and the on phase after it.
    if (state.measuring && on) {
      if (cycle.off.requests > 0 && cycle.on.requests > 0) cycles.push(cycle);
      cycle = { on: { cpuMicros: 0, requests: 0 }, off: { cpuMicros: 0, requests: 0 } };
    }
    on = !on;
    setOn(on);
  }, phaseMs).unref();

  answerOnStop(server, phases, agent, state, cycles);
}

/** The IPC protocol of both modes: `measure` starts summing, `stop` answers with the result and exits. */
function answerOnStop(
  server: import('node:http').Server,
  phases: Record<'on' | 'off', Phase>,
  agent: { shutdown(): Promise<unknown> },
  state: { measuring: boolean },
  cycles: PairedCycle[],
  edge?: () => PairedResult['edge'],
): void {
  process.on('message', (message: { type: string }) => {
    if (message.type === 'measure') state.measuring = true;
    if (message.type !== 'stop') return;
    const result: PairedResult = {
      type: 'result',
      offCpuMicrosPerRequest: phases.off.cpuMicros / phases.off.requests,
      onCpuMicrosPerRequest: phases.on.cpuMicros / phases.on.requests,
      offRequests: phases.off.requests,
      onRequests: phases.on.requests,
      cycles,
    };
    if (edge !== undefined) result.edge = edge();
    server.close();
    server.closeAllConnections();
    process.send?.(result, () => {
      agent.shutdown().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  });
}

if (require.main === module) {
  if (process.send === undefined) {
    console.error('usage: node paired-server.js, forked with an IPC channel (run paired.js)');
    process.exit(2);
  }
  const profilerInterval = process.env.PAIRED_PROFILER_INTERVAL_US;
  const labelFractions = process.env.PAIRED_LABEL_FRACTIONS?.split(',').map(Number);
  if (labelFractions !== undefined) serveLabelling(labelFractions[0] ?? 0, labelFractions[1] ?? 1);
  else if (profilerInterval !== undefined) serveProfiler(Number(profilerInterval));
  else serve();
}
