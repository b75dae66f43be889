import type { AddressInfo } from 'node:net';
import type { RequestHandler } from 'express';

/**
 * The server of the paired overhead benchmark (paired.ts): the throughput app
 * with the agent at sampleRate 1, whose middleware is skipped every other
 * phase of PAIRED_PHASE_MS. CPU time per request is summed per phase, so
 * "agent on" and "agent off" are measured in the same process, interleaved
 * every few hundred milliseconds: both see the same machine, the same JIT
 * state and the same noisy neighbours, which separate processes a minute apart
 * do not on a shared VM.
 *
 *   BENCH_COLLECTOR  the agent's collector (`file:` URL in a temp dir)
 *   PAIRED_PHASE_MS  length of one phase (default 250)
 *   PAIRED_PROFILER_INTERVAL_US  profiler mode (profiler.ts): the agent's middleware runs on every request
 *                    at sampleRate 0.01, and its profiler records windows of half of each 2 × PAIRED_PHASE_MS
 *                    period at this sampling interval; "on" is the CPU per request of the 5 ms ticks in which
 *                    the profiler recorded (or started, or stopped and serialized: the windows' own cost
 *                    counts as recording), "off" of the ticks in which it did not.
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
}

interface Phase {
  cpuMicros: number;
  requests: number;
}

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** Profiler mode: every request through the agent at 0.01; on and off are the profiler's recording windows. */
function serveProfiler(intervalMicros: number): void {
  const { start }: typeof import('@ergometer/agent') = require('@ergometer/agent');
  const phaseMs = Number(process.env.PAIRED_PHASE_MS ?? 250);
  const agent = start({
    service: 'bench-paired-profiler',
    collector: process.env.BENCH_COLLECTOR,
    sampleRate: 0.01,
    profile: { enabled: true, dutyCycle: 0.5, periodMs: 2 * phaseMs, intervalMicros, schedule: 'windows' },
  });
  let requests = 0;
  const middleware = agent.express();
  const instrument: RequestHandler = (req, res, next) => {
    requests++;
    middleware(req, res, next);
  };
  const { createBenchApp }: typeof import('./app') = require('./app');
  const server = createBenchApp(instrument).listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'listening', port: (server.address() as AddressInfo).port });
  });
  const phases: Record<'on' | 'off', Phase> = { on: { cpuMicros: 0, requests: 0 }, off: { cpuMicros: 0, requests: 0 } };
  let measuring = false;
  let lastCpuMicros = cpuMicros();
  let lastRequests = 0;
  let recordedSinceTick = false;
  // The windows start and end on the agent's timers: a tick counts as "on" if the profiler recorded at any
  // moment of it that a 1 ms poll saw, so the start and the end of a window (stop, serialization) count as on.
  setInterval(() => {
    if (agent.profiling?.recording === true) recordedSinceTick = true;
  }, 1).unref();
  setInterval(() => {
    const nowCpuMicros = cpuMicros();
    const recording = recordedSinceTick || agent.profiling?.recording === true;
    if (measuring) {
      const phase = recording ? phases.on : phases.off;
      phase.cpuMicros += nowCpuMicros - lastCpuMicros;
      phase.requests += requests - lastRequests;
    }
    lastCpuMicros = nowCpuMicros;
    lastRequests = requests;
    recordedSinceTick = agent.profiling?.recording === true;
  }, 5).unref();
  answerOnStop(server, phases, agent, () => {
    measuring = true;
  });
}

function serve(): void {
  const { start }: typeof import('@ergometer/agent') = require('@ergometer/agent');
  const agent = start({ service: 'bench-paired', collector: process.env.BENCH_COLLECTOR, sampleRate: 1 });
  const middleware = agent.express();
  let agentOn = false;
  let requests = 0;
  const instrument: RequestHandler = (req, res, next) => {
    requests++;
    if (agentOn) middleware(req, res, next);
    else next();
  };
  const { createBenchApp }: typeof import('./app') = require('./app');
  const server = createBenchApp(instrument).listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'listening', port: (server.address() as AddressInfo).port });
  });

  const phases: Record<'on' | 'off', Phase> = { on: { cpuMicros: 0, requests: 0 }, off: { cpuMicros: 0, requests: 0 } };
  let measuring = false;
  let lastCpuMicros = cpuMicros();
  let lastRequests = 0;
  const phaseMs = Number(process.env.PAIRED_PHASE_MS ?? 250);
  setInterval(() => {
    const nowCpuMicros = cpuMicros();
    if (measuring) {
      const phase = agentOn ? phases.on : phases.off;
      phase.cpuMicros += nowCpuMicros - lastCpuMicros;
      phase.requests += requests - lastRequests;
    }
    lastCpuMicros = nowCpuMicros;
    lastRequests = requests;
    agentOn = !agentOn;
  }, phaseMs).unref();

  answerOnStop(server, phases, agent, () => {
    measuring = true;
  });
}

/** The IPC protocol of both modes: `measure` starts summing, `stop` answers with the result and exits. */
function answerOnStop(
  server: import('node:http').Server,
  phases: Record<'on' | 'off', Phase>,
  agent: { shutdown(): Promise<unknown> },
  startMeasuring: () => void,
): void {
  process.on('message', (message: { type: string }) => {
    if (message.type === 'measure') startMeasuring();
    if (message.type !== 'stop') return;
    const result: PairedResult = {
      type: 'result',
      offCpuMicrosPerRequest: phases.off.cpuMicros / phases.off.requests,
      onCpuMicrosPerRequest: phases.on.cpuMicros / phases.on.requests,
      offRequests: phases.off.requests,
      onRequests: phases.on.requests,
    };
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
  if (profilerInterval !== undefined) serveProfiler(Number(profilerInterval));
  else serve();
}
