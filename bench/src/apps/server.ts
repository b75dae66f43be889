import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Agent } from '@ergometer/agent';
import type { RequestHandler } from 'express';

/**
 * One server of the throughput benchmark, run in a process of its own (pinned
 * to one CPU by throughput.ts) so that each variant starts clean and
 * OpenTelemetry can patch modules before they load.
 *
 *   BENCH_VARIANT    which instrumentation, one of APP_VARIANTS
 *   BENCH_COLLECTOR  the agent's collector (`file:` URL in a temp dir), agent-* variants
 *
 * The register-* variants are started by the parent with
 * `--require @ergometer/agent/register` and ERGOMETER_* variables: the agent
 * is running before this file loads, and the app itself has no middleware.
 *
 * Talks to its parent over the IPC channel: sends {@link ServerReady} once
 * listening on 127.0.0.1, exits after a `{ type: 'stop' }`.
 */

/** The instrumentations compared, in the order they run in each round. */
export const APP_VARIANTS = [
  'none',
  'noop-middleware',
  'agent-0',
  'agent-0.01',
  'register-0.01',
  'agent-1',
  'otel',
] as const;
/** Variants of the profiler benchmark (profiler.ts), not run by the throughput benchmark. */
export const PROFILER_VARIANTS = ['agent-0.01', 'agent-0.01-profile', 'agent-0.01-profile-default'] as const;
/** The profiler at its real defaults (60 s period), for runs of minutes side by side (profiler-ab.ts). */
export const PROFILER_AB_VARIANTS = ['agent-0.01', 'agent-0.01-profile-defaults-60s'] as const;
/** Variants only the instruction count (instructions.ts) runs. */
export const INSTRUCTION_VARIANTS = ['register-0'] as const;
export type AppVariant =
  | (typeof APP_VARIANTS)[number]
  | (typeof PROFILER_VARIANTS)[number]
  | (typeof PROFILER_AB_VARIANTS)[number]
  | (typeof INSTRUCTION_VARIANTS)[number];

/** Sent to the parent once the server accepts connections. */
export interface ServerReady {
  type: 'listening';
  port: number;
  /** The agent's counter source (e.g. `task-clock`), agent variants only. */
  counter?: string;
  /** What the agent's profiler runs on, when it started one: what the agent chose. */
  profiler?: ProfilerRun;
}

/** A profiler's sampler and schedule, as the agent reports them (`agent.profiling`). */
export type ProfilerRun = Pick<NonNullable<Agent['profiling']>, 'sampler' | 'schedule'>;

/** Sent by the parent to end the server. */
export interface ServerStop {
  type: 'stop';
}

/** Sent by the parent to a server started with BENCH_TIMELINE_MS: answered with a {@link TimelineReply}. */
export interface TimelineRequest {
  type: 'timeline';
}

/**
 * One step of a server's timeline (profiler-timeline.ts), taken every BENCH_TIMELINE_MS from listening on: when,
 * the process's CPU so far (all threads, µs), the requests it has been sent so far, and whether its profiler was
 * recording.
 */
export type TimelineStep = [atMs: number, cpuMicros: number, requests: number, recording: 0 | 1];

export interface TimelineReply {
  type: 'timeline';
  steps: TimelineStep[];
}

export function isAppVariant(value: unknown): value is AppVariant {
  return (
    typeof value === 'string' &&
    [APP_VARIANTS, PROFILER_VARIANTS, PROFILER_AB_VARIANTS, INSTRUCTION_VARIANTS].some((list) =>
      (list as readonly string[]).includes(value),
    )
  );
}

/** Sample rate of the variants that start the agent with `start()` and mount `agent.express()`. */
const MIDDLEWARE_SAMPLE_RATES: Partial<Record<AppVariant, number>> = {
  'agent-0': 0,
  'agent-0.01': 0.01,
  'agent-1': 1,
  'agent-0.01-profile': 0.01,
  'agent-0.01-profile-default': 0.01,
  'agent-0.01-profile-defaults-60s': 0.01,
};

/**
 * The profiler of the profiler benchmarks' variants. The profiler benchmark (profiler.ts) studies V8's profiler
 * (`sampler: "v8"`): `agent-0.01-profile` records all the time (dutyCycle 1), otherwise at its defaults: what it
 * costs while it records; `agent-0.01-profile-default` at its defaults (dutyCycle 0.1: on Node 20 a window of a
 * tenth of each period, on Node 24 all the time at 25 Hz labelling two fifths of the requests), except a period
 * of 2 s instead of 60 s so that every few-second round holds whole periods: that starts, stops and ships profiles
 * 30 times as often as the default, so if anything it overstates the default's cost.
 * `agent-0.01-profile-defaults-60s` (profiler-ab.ts, profiler-not-chosen.ts): the real defaults, sampler included.
 */
type ProfileVariant = { enabled: true; dutyCycle?: number; periodMs?: number; sampler?: 'v8' };
const PROFILES: Partial<Record<AppVariant, ProfileVariant>> = {
  'agent-0.01-profile': { enabled: true, dutyCycle: 1, sampler: 'v8' },
  'agent-0.01-profile-default': { enabled: true, periodMs: 2000, sampler: 'v8' },
  'agent-0.01-profile-defaults-60s': { enabled: true },
};

/** Sample rate of the variants started with `--require @ergometer/agent/register`. */
export const REGISTER_SAMPLE_RATES: Partial<Record<AppVariant, number>> = {
  'register-0': 0,
  'register-0.01': 0.01,
};

/** Does nothing: the cost of one more Express layer, the floor of any `app.use()` instrumentation. */
const noopMiddleware: RequestHandler = (_req, _res, next) => next();

async function serve(variant: AppVariant): Promise<void> {
  let shutdown: () => Promise<void> = () => Promise.resolve();
  let instrument: RequestHandler | undefined;
  let counter: string | undefined;
  let profiler: ProfilerRun | undefined;
  let recording = () => false;

  // Modules are required here, not imported at the top, for two reasons: OpenTelemetry has to
  // patch node:http and express before anything loads them, and a variant must not pay (in
  // memory or start-up) for the instrumentation of another.
  if (variant === 'otel') {
    const otel: typeof import('./otel') = require('./otel');
    shutdown = otel.startOpenTelemetry();
  }
  if (variant === 'noop-middleware') instrument = noopMiddleware;
  const sampleRate = MIDDLEWARE_SAMPLE_RATES[variant];
  if (sampleRate !== undefined) {
    const { start }: typeof import('@ergometer/agent') = require('@ergometer/agent');
    const profile = PROFILES[variant];
    const agent = start({
      service: 'bench-throughput',
      collector: process.env.BENCH_COLLECTOR,
      sampleRate,
      ...(profile === undefined ? {} : { profile }),
    });
    instrument = agent.express();
    counter = agent.counter.source;
    recording = () => agent.profiling?.recording === true;
    const profiling = agent.profiling;
    if (profiling !== undefined) profiler = { sampler: profiling.sampler, schedule: profiling.schedule };
    shutdown = () => agent.shutdown();
  }
  if (REGISTER_SAMPLE_RATES[variant] !== undefined) {
    const { getAgent }: typeof import('@ergometer/agent') = require('@ergometer/agent');
    const agent = getAgent();
    if (agent === undefined) throw new Error(`${variant}: start node with --require @ergometer/agent/register`);
    counter = agent.counter.source;
    shutdown = () => agent.shutdown();
  }
  const { createBenchApp }: typeof import('./app') = require('./app');

  const app = createBenchApp(instrument);
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const timeline = recordTimeline(server, Number(process.env.BENCH_TIMELINE_MS ?? 0), recording);
  process.on('message', (message: ServerStop | TimelineRequest) => {
    if (message.type === 'timeline') {
      const reply: TimelineReply = { type: 'timeline', steps: timeline };
      process.send?.(reply);
      return;
    }
    if (message.type !== 'stop') return;
    server.close();
    server.closeAllConnections();
    shutdown().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  const ready: ServerReady = {
    type: 'listening',
    port: (server.address() as AddressInfo).port,
    counter,
    ...(profiler === undefined ? {} : { profiler }),
  };
  process.send?.(ready);
}

/** Every `everyMs` (none when 0), a {@link TimelineStep}: what profiler-timeline.ts lines up around each window. */
function recordTimeline(server: Server, everyMs: number, recording: () => boolean): TimelineStep[] {
  const steps: TimelineStep[] = [];
  if (!(everyMs > 0)) return steps;
  let requests = 0;
  server.on('request', () => {
    requests++;
  });
  setInterval(() => {
    const { user, system } = process.cpuUsage();
    steps.push([Date.now(), user + system, requests, recording() ? 1 : 0]);
  }, everyMs).unref();
  return steps;
}

if (require.main === module) {
  const variant = process.env.BENCH_VARIANT;
  if (!isAppVariant(variant) || process.send === undefined) {
    console.error(`usage: BENCH_VARIANT=<${APP_VARIANTS.join('|')}> node server.js, forked with an IPC channel`);
    process.exit(2);
  }
  serve(variant).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
