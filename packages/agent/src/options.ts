import { execFileSync } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import { type CounterPreference, parsePreference } from '@ergometer/counters';
import { type BackendOption, type BackendSources, resolveBackendSources } from './backend/sources';
import { ErgometerError } from './errors';

/** Options of {@link start}. Each has an environment variable; an explicit option wins over it. */
export interface AgentOptions {
  /** Name of the service (`ERGOMETER_SERVICE`). Required. */
  service?: string;
  /**
   * Where batches go (`ERGOMETER_COLLECTOR`): `file:./samples.ndjson` appends one NDJSON line per batch
   * in wire format v1. Required.
   */
  collector?: string;
  /** Ingest token sent as `Authorization: Bearer` (`ERGOMETER_TOKEN`). */
  token?: string;
  /** Fraction of requests measured, 0..1 (`ERGOMETER_SAMPLE_RATE`). Default 0.01. */
  sampleRate?: number;
  /**
   * Per-endpoint sample rates that replace `sampleRate` for those endpoints, keyed by endpoint name
   * (`GET /feed/:id`). `ERGOMETER_ENDPOINT_SAMPLE_RATES="GET /health=0,GET /feed/:id=0.1"`.
   */
  endpointSampleRates?: Record<string, number>;
  /** Commit being run (`ERGOMETER_COMMIT`, else common CI variables, else `git rev-parse HEAD`). */
  commit?: string;
  /** Region (`ERGOMETER_REGION`). Default empty. */
  region?: string;
  /** Host name (`ERGOMETER_HOST`). Default `os.hostname()`. */
  host?: string;
  /** Counter source (`ERGOMETER_COUNTER`): `auto` (default), `instructions`, `task-clock`, `thread-cputime`. */
  counter?: CounterPreference;
  /** Longest time a sample waits before its batch is written, ms (`ERGOMETER_FLUSH_INTERVAL_MS`). Default 10000. */
  flushIntervalMs?: number;
  /** Samples per batch (`ERGOMETER_MAX_BATCH_SAMPLES`). Default 1000. */
  maxBatchSamples?: number;
  /** Samples kept in memory while the collector is slow; the oldest go first (`ERGOMETER_MAX_QUEUED_SAMPLES`). Default 20000. */
  maxQueuedSamples?: number;
  /**
   * Most bytes of samples (estimated JSON size) in one batch (`ERGOMETER_MAX_BATCH_BYTES`). Default 524288
   * (512 KiB); a batch is cut at whichever of this and `maxBatchSamples` comes first.
   */
  maxBatchBytes?: number;
  /**
   * Most bytes of samples (estimated JSON size) held in memory — waiting, and the batch on its way, retries
   * included (`ERGOMETER_MAX_QUEUED_BYTES`). Default 4194304 (4 MiB); at least twice `maxBatchBytes`. When
   * full, the oldest waiting samples are dropped and counted.
   */
  maxQueuedBytes?: number;
  /**
   * Longest one POST to an HTTP collector may take, connect to last byte of the answer, ms
   * (`ERGOMETER_REQUEST_TIMEOUT_MS`). Default 10000. A hanging collector costs one socket for this long.
   */
  requestTimeoutMs?: number;
  /**
   * On SIGTERM and `beforeExit`, how long the agent may hold the process to write what is queued, ms
   * (`ERGOMETER_EXIT_FLUSH_TIMEOUT_MS`). Default 2000; 0 installs no handler. See docs/agent.md.
   */
  exitFlushTimeoutMs?: number;
  /**
   * Who made the request, called once per request when the response ends (so `req.user` set by an auth
   * middleware is visible): a string, or undefined for anonymous requests. The id is hashed with
   * HMAC-SHA256 before it leaves the process. Enables `users` (distinct users per minute) and `sample.user`.
   */
  userId?: (req: IncomingMessage) => string | undefined;
  /**
   * Secret key of the user-id HMAC (`ERGOMETER_USER_HASH_KEY`), the same on every process of the service
   * so their sketches merge. Without it a key is derived from the service name: hashes are then only
   * pseudonymous (anyone who knows the service name can test a guessed user id).
   */
  userHashKey?: string;
  /**
   * Length of one sampling window, ms (`ERGOMETER_SAMPLE_WINDOW_MS`). Below a rate of 1 the agent samples
   * every request that starts inside short windows placed at random (exponential gaps), so that its
   * accounting hooks are enabled only around sampled requests. Default 50.
   */
  sampleWindowMs?: number;
  /**
   * Backend time per request (`backend.db`, `.cache`, `.http`): `true` (default) for every
   * instrumentation, `false` for none, or per instrumentation (`{ mongodb: false }`), among
   * http, undici, pg, mysql2, mongodb, ioredis, redis, memcached, memjs (`ERGOMETER_BACKEND`:
   * `on`, `off`, `pg,ioredis` for only those, or `-mongodb` for all but those).
   */
  backend?: BackendOption;
  /**
   * The function-level profiler (docs/agent.md, "Profiler"): labelled, CPU-weighted stack samples shipped
   * as pprof. Off by default; `ERGOMETER_PROFILE=1` turns it on. When off, nothing of it is loaded.
   */
  profile?: ProfileOptions;
}

/** Options of the profiler (`profile: { enabled: true }`). Each has an environment variable. */
export interface ProfileOptions {
  /** Turns the profiler on (`ERGOMETER_PROFILE=1`). Default false. */
  enabled?: boolean;
  /**
   * Which processes profile (`ERGOMETER_PROFILE_PROCESS_FRACTION`). A number 0..1: the fraction of processes,
   * each drawing once at start. `"collector"`: the collector chooses, per service × commit, at least
   * `--profile-min-processes` (2) and about `--profile-process-fraction` (a tenth) of the live processes
   * (docs/agent.md, "Which processes profile"). Default `"collector"` with an `http:`/`https:` collector, else 1.
   * Cost per request comes from shares within an endpoint, so a subset of processes is enough.
   */
  processFraction?: number | 'collector';
  /**
   * Fraction of the samples recording all the time would take, 0..1 (`ERGOMETER_PROFILE_DUTY_CYCLE`): one window
   * per period holding `dutyCycle × periodMs / intervalMicros` samples, taken at `windowIntervalMicros` (1.5 s a
   * minute at the defaults), at a random offset within the period, from the second period on (none while the
   * process warms up); the profile of each window is shipped when it ends. Default 0.1: recording costs more than
   * 2% of throughput on a busy server (docs/benchmarks.md), so by default it takes a tenth of the samples. 1
   * records continuously.
   * From Node 22 on, a stopped V8 profiler loses track of code, so it records all the time at
   * `intervalMicros × labelFraction / dutyCycle` instead (the same labelled samples per period; docs/agent.md,
   * "Profiler").
   */
  dutyCycle?: number;
  /** Length of one profile, ms (`ERGOMETER_PROFILE_PERIOD_MS`); one profile is shipped per period. Default 60000. */
  periodMs?: number;
  /**
   * Mean time between two stack samples, µs (`ERGOMETER_PROFILE_INTERVAL_US`), recording all the time: with
   * `dutyCycle` it sets how many samples a period holds, `dutyCycle × periodMs / intervalMicros`. Default 10000
   * (100 Hz).
   */
  intervalMicros?: number;
  /**
   * Mean time between two stack samples inside a window, µs (`ERGOMETER_PROFILE_WINDOW_INTERVAL_US`; the
   * `windows` schedule): a window takes its period's samples at this interval (never sparser than
   * `intervalMicros`), and so lasts `dutyCycle × periodMs × windowIntervalMicros / intervalMicros`. Default 2500
   * (400 Hz: 1.5 s a minute at the defaults): what a window costs grows with its length more than with its
   * samples (docs/agent.md, "Dense windows"). Set it to `intervalMicros` for windows of `dutyCycle × periodMs`.
   */
  windowIntervalMicros?: number;
  /**
   * What takes the stack samples (`ERGOMETER_PROFILE_SAMPLER`): `interrupt`, the agent's own sampler, which asks
   * V8 to interrupt the JavaScript thread and reads the stack at its next safe point, and never starts V8's CPU
   * profiler; or `v8`, V8's CPU profiler through @datadog/pprof, which samples at the exact instruction but costs
   * more from Node 22 on. `auto` (default): `interrupt` when its addon is built for this Node.js, else `v8`
   * (docs/agent.md, "The interrupt sampler").
   */
  sampler?: 'auto' | 'interrupt' | 'v8';
  /**
   * How a `dutyCycle` below 1 is realised (`ERGOMETER_PROFILE_SCHEDULE`): `auto` (default) picks `windows`,
   * except with the `v8` sampler from Node 22 on, where it picks `continuous`; `windows` forces windows there
   * too, where V8 then charges samples in code optimized between windows to its callers (docs/agent.md, "How the
   * duty cycle is realised"): for measuring the profiler's cost (bench/), not for root causes.
   */
  schedule?: 'auto' | 'windows' | 'continuous';
  /**
   * Fraction of requests whose stack samples carry labels while the profiler records, above 0 up to 1
   * (`ERGOMETER_PROFILE_LABEL_FRACTION`); each request draws once. Labelling a request is the profiler's main
   * cost per request (docs/agent.md, "What labelling costs"), and a function's cost per request comes from its
   * share of its endpoint's labelled samples, which a random subset of requests estimates without bias. On the
   * `continuous` schedule the profiler samples `1 / labelFraction` times as often to keep the labelled samples
   * per period (never faster than `intervalMicros`). Default: 0.4 (at least `dutyCycle`) on `continuous` with
   * AsyncContextFrame (Node 24), else 1: a window is the subset already, and on the async-hooks path a label
   * costs little beside the hook that runs on every callback anyway.
   */
  labelFraction?: number;
}

/** Profiler options after defaults, environment variables and validation. */
export interface ResolvedProfileOptions {
  enabled: boolean;
  processFraction: number | 'collector';
  dutyCycle: number;
  periodMs: number;
  intervalMicros: number;
  windowIntervalMicros: number;
  sampler: 'auto' | 'interrupt' | 'v8';
  schedule: 'auto' | 'windows' | 'continuous';
  /** undefined: the schedule's default (see ProfileOptions.labelFraction). */
  labelFraction: number | undefined;
}

/** Options after defaults, environment variables and validation. */
export interface ResolvedOptions {
  service: string;
  collector: string;
  token: string | undefined;
  sampleRate: number;
  endpointSampleRates: Map<string, number>;
  commit: string;
  region: string;
  host: string;
  counter: CounterPreference;
  flushIntervalMs: number;
  maxBatchSamples: number;
  maxQueuedSamples: number;
  maxBatchBytes: number;
  maxQueuedBytes: number;
  requestTimeoutMs: number;
  exitFlushTimeoutMs: number;
  userId: ((req: IncomingMessage) => string | undefined) | undefined;
  userHashKey: string | undefined;
  sampleWindowMs: number;
  backend: BackendSources;
  profile: ResolvedProfileOptions;
}

type Env = Record<string, string | undefined>;

const MAX_NAME_LENGTH = 200;

/**
 * Merges options with environment variables and checks every value. Throws an
 * {@link ErgometerError} with code `ERGOMETER_BAD_OPTION` naming the option (and its
 * environment variable) on the first bad one.
 */
export function resolveOptions(options: AgentOptions = {}, env: Env = process.env): ResolvedOptions {
  if (options === null || typeof options !== 'object') {
    throw bad('options', 'start(options) takes an object');
  }
  const service = requiredName('service', 'ERGOMETER_SERVICE', options.service ?? env.ERGOMETER_SERVICE);
  const collector = requiredName('collector', 'ERGOMETER_COLLECTOR', options.collector ?? env.ERGOMETER_COLLECTOR);
  const maxBatchBytes = integer(
    'maxBatchBytes',
    'ERGOMETER_MAX_BATCH_BYTES',
    options.maxBatchBytes ?? env.ERGOMETER_MAX_BATCH_BYTES,
    512 * 1024,
    1024,
    64 * 1024 * 1024,
  );
  const maxQueuedBytes = integer(
    'maxQueuedBytes',
    'ERGOMETER_MAX_QUEUED_BYTES',
    options.maxQueuedBytes ?? env.ERGOMETER_MAX_QUEUED_BYTES,
    4 * 1024 * 1024,
    2048,
    1024 * 1024 * 1024,
  );
  if (maxQueuedBytes < 2 * maxBatchBytes) {
    // One batch may be on its way while the next fills: the bound must hold both.
    throw bad(
      'maxQueuedBytes',
      `must be at least twice maxBatchBytes (${maxBatchBytes}), got ${maxQueuedBytes}; raise it or lower maxBatchBytes (ERGOMETER_MAX_BATCH_BYTES)`,
      'ERGOMETER_MAX_QUEUED_BYTES',
    );
  }
  if (options.userId !== undefined && typeof options.userId !== 'function') {
    throw bad('userId', `expected a function (req) => string | undefined, got ${describe(options.userId)}`);
  }
  return {
    service,
    collector,
    token: optionalName('token', 'ERGOMETER_TOKEN', options.token ?? env.ERGOMETER_TOKEN),
    sampleRate: rate('sampleRate', 'ERGOMETER_SAMPLE_RATE', options.sampleRate ?? env.ERGOMETER_SAMPLE_RATE, 0.01),
    endpointSampleRates: endpointRates(options.endpointSampleRates ?? env.ERGOMETER_ENDPOINT_SAMPLE_RATES),
    commit: optionalName('commit', 'ERGOMETER_COMMIT', options.commit) ?? detectCommit(env),
    region: optionalName('region', 'ERGOMETER_REGION', options.region ?? env.ERGOMETER_REGION) ?? '',
    host: optionalName('host', 'ERGOMETER_HOST', options.host ?? env.ERGOMETER_HOST) ?? os.hostname(),
    counter: counterPreference(options.counter ?? env.ERGOMETER_COUNTER),
    flushIntervalMs: integer(
      'flushIntervalMs',
      'ERGOMETER_FLUSH_INTERVAL_MS',
      options.flushIntervalMs ?? env.ERGOMETER_FLUSH_INTERVAL_MS,
      10_000,
      10,
      3_600_000,
    ),
    maxBatchSamples: integer(
      'maxBatchSamples',
      'ERGOMETER_MAX_BATCH_SAMPLES',
      options.maxBatchSamples ?? env.ERGOMETER_MAX_BATCH_SAMPLES,
      1000,
      1,
      100_000,
    ),
    maxQueuedSamples: integer(
      'maxQueuedSamples',
      'ERGOMETER_MAX_QUEUED_SAMPLES',
      options.maxQueuedSamples ?? env.ERGOMETER_MAX_QUEUED_SAMPLES,
      20_000,
      1,
      10_000_000,
    ),
    maxBatchBytes,
    maxQueuedBytes,
    requestTimeoutMs: integer(
      'requestTimeoutMs',
      'ERGOMETER_REQUEST_TIMEOUT_MS',
      options.requestTimeoutMs ?? env.ERGOMETER_REQUEST_TIMEOUT_MS,
      10_000,
      10,
      600_000,
    ),
    exitFlushTimeoutMs: integer(
      'exitFlushTimeoutMs',
      'ERGOMETER_EXIT_FLUSH_TIMEOUT_MS',
      options.exitFlushTimeoutMs ?? env.ERGOMETER_EXIT_FLUSH_TIMEOUT_MS,
      2000,
      0,
      60_000,
    ),
    userId: options.userId,
    userHashKey: optionalName(
      'userHashKey',
      'ERGOMETER_USER_HASH_KEY',
      options.userHashKey ?? env.ERGOMETER_USER_HASH_KEY,
    ),
    sampleWindowMs: integer(
      'sampleWindowMs',
      'ERGOMETER_SAMPLE_WINDOW_MS',
      options.sampleWindowMs ?? env.ERGOMETER_SAMPLE_WINDOW_MS,
      50,
      1,
      60_000,
    ),
    backend: resolveBackendSources(options.backend, env.ERGOMETER_BACKEND),
    profile: profileOptions(options.profile, env, collector),
  };
}

function profileOptions(value: unknown, env: Env, collector: string): ResolvedProfileOptions {
  if (value !== undefined && (value === null || typeof value !== 'object')) {
    throw bad('profile', `expected an object such as { enabled: true }, got ${describe(value)}`);
  }
  const options = (value ?? {}) as ProfileOptions;
  const periodMs = integer(
    'profile.periodMs',
    'ERGOMETER_PROFILE_PERIOD_MS',
    options.periodMs ?? env.ERGOMETER_PROFILE_PERIOD_MS,
    60_000,
    100,
    3_600_000,
  );
  const intervalMicros = integer(
    'profile.intervalMicros',
    'ERGOMETER_PROFILE_INTERVAL_US',
    options.intervalMicros ?? env.ERGOMETER_PROFILE_INTERVAL_US,
    10_000,
    100,
    1_000_000,
  );
  if (intervalMicros >= periodMs * 1000) {
    throw bad(
      'profile.intervalMicros',
      `must be shorter than profile.periodMs (${periodMs} ms), got ${intervalMicros} µs`,
      'ERGOMETER_PROFILE_INTERVAL_US',
    );
  }
  return {
    enabled: flag('profile.enabled', 'ERGOMETER_PROFILE', options.enabled ?? env.ERGOMETER_PROFILE, false),
    processFraction: processFraction(options.processFraction ?? env.ERGOMETER_PROFILE_PROCESS_FRACTION, collector),
    dutyCycle: rate(
      'profile.dutyCycle',
      'ERGOMETER_PROFILE_DUTY_CYCLE',
      options.dutyCycle ?? env.ERGOMETER_PROFILE_DUTY_CYCLE,
      0.1,
    ),
    periodMs,
    intervalMicros,
    windowIntervalMicros: integer(
      'profile.windowIntervalMicros',
      'ERGOMETER_PROFILE_WINDOW_INTERVAL_US',
      options.windowIntervalMicros ?? env.ERGOMETER_PROFILE_WINDOW_INTERVAL_US,
      2_500,
      100,
      1_000_000,
    ),
    sampler: oneOf(
      'profile.sampler',
      'ERGOMETER_PROFILE_SAMPLER',
      SAMPLERS,
      options.sampler ?? env.ERGOMETER_PROFILE_SAMPLER,
    ),
    schedule: oneOf(
      'profile.schedule',
      'ERGOMETER_PROFILE_SCHEDULE',
      SCHEDULES,
      options.schedule ?? env.ERGOMETER_PROFILE_SCHEDULE,
    ),
    labelFraction: labelFraction(options.labelFraction ?? env.ERGOMETER_PROFILE_LABEL_FRACTION),
  };
}

/** `profile.processFraction`: a number 0..1, or `collector` (the default with an http(s) collector). */
function processFraction(value: unknown, collector: string): number | 'collector' {
  const overHttp = /^https?:\/\//i.test(collector);
  if (value === undefined || value === '') return overHttp ? 'collector' : 1;
  if (value === 'collector') {
    if (overHttp) return 'collector';
    throw bad(
      'profile.processFraction',
      `"collector" needs an http: or https: collector to choose the processes, got collector ${describe(collector)}; give a fraction from 0 to 1 instead`,
      'ERGOMETER_PROFILE_PROCESS_FRACTION',
    );
  }
  const n = toNumber(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) {
    throw bad(
      'profile.processFraction',
      `expected "collector" or a number from 0 to 1, got ${describe(value)}`,
      'ERGOMETER_PROFILE_PROCESS_FRACTION',
    );
  }
  return n;
}

function labelFraction(value: unknown): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = toNumber(value);
  if (!Number.isFinite(n) || n <= 0 || n > 1) {
    throw bad(
      'profile.labelFraction',
      `expected a number above 0 up to 1, got ${describe(value)}${n === 0 ? ' (to turn the profiler off: profile.enabled false)' : ''}`,
      'ERGOMETER_PROFILE_LABEL_FRACTION',
    );
  }
  return n;
}

const SCHEDULES = ['auto', 'windows', 'continuous'] as const;
const SAMPLERS = ['auto', 'interrupt', 'v8'] as const;

/** One of `choices` (the first, `auto`, when unset). */
function oneOf<T extends string>(option: string, envName: string, choices: readonly T[], value: unknown): T {
  if (value === undefined || value === '') return choices[0] as T;
  const found = choices.find((s) => s === value);
  if (found !== undefined) return found;
  throw bad(option, `expected one of ${choices.join(', ')}, got ${describe(value)}`, envName);
}

function flag(option: string, envName: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === '') return fallback;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const text = value.trim().toLowerCase();
    if (['1', 'true', 'on', 'yes'].includes(text)) return true;
    if (['0', 'false', 'off', 'no'].includes(text)) return false;
  }
  throw bad(option, `expected true or false (1/0, on/off), got ${describe(value)}`, envName);
}

function bad(option: string, message: string, envName?: string): ErgometerError {
  const where = envName ? `${option} (${envName})` : option;
  return new ErgometerError('ERGOMETER_BAD_OPTION', `ergometer: ${where}: ${message}`);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  return typeof value === 'number' ? String(value) : typeof value;
}

function optionalName(option: string, envName: string, value: unknown): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw bad(option, `expected a string, got ${describe(value)}`, envName);
  if (value.length > MAX_NAME_LENGTH) throw bad(option, `longer than ${MAX_NAME_LENGTH} characters`, envName);
  // Control characters would corrupt log lines and dashboards downstream.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
  if (/[\u0000-\u001f\u007f]/.test(value)) throw bad(option, 'contains control characters', envName);
  return value;
}

function requiredName(option: string, envName: string, value: unknown): string {
  const name = optionalName(option, envName, value);
  if (name === undefined)
    throw bad(option, `is required: pass { ${option}: ... } to start() or set ${envName}`, envName);
  return name;
}

function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '') return Number(value);
  return Number.NaN;
}

function rate(option: string, envName: string | undefined, value: unknown, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = toNumber(value);
  if (!Number.isFinite(n) || n < 0 || n > 1)
    throw bad(option, `expected a number from 0 to 1, got ${describe(value)}`, envName);
  return n;
}

function integer(option: string, envName: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const n = toNumber(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw bad(option, `expected an integer from ${min} to ${max}, got ${describe(value)}`, envName);
  }
  return n;
}

function endpointRates(value: unknown): Map<string, number> {
  const rates = new Map<string, number>();
  if (value === undefined || value === '') return rates;
  const envName = 'ERGOMETER_ENDPOINT_SAMPLE_RATES';
  let entries: [string, unknown][];
  if (typeof value === 'string') {
    // "GET /a=0.1,POST /b=0": the last '=' splits, endpoint names may not contain ','.
    entries = value.split(',').map((part) => {
      const at = part.lastIndexOf('=');
      const endpoint = part.slice(0, Math.max(at, 0)).trim();
      const r = at === -1 ? '' : part.slice(at + 1).trim();
      // A blank rate is a typo, not "rate 0" (what rate() makes of an empty value): refuse it.
      if (endpoint === '' || r === '')
        throw bad('endpointSampleRates', `expected "ENDPOINT=RATE" entries, got ${describe(part)}`, envName);
      return [endpoint, r];
    });
  } else if (typeof value === 'object' && value !== null) {
    entries = Object.entries(value);
  } else {
    throw bad('endpointSampleRates', `expected an object of endpoint → rate, got ${describe(value)}`, envName);
  }
  for (const [endpoint, r] of entries) {
    rates.set(endpoint, rate(`endpointSampleRates["${endpoint}"]`, undefined, r, 0));
  }
  return rates;
}

function counterPreference(value: unknown): CounterPreference {
  if (value !== undefined && typeof value !== 'string')
    throw bad('counter', `expected a string, got ${describe(value)}`, 'ERGOMETER_COUNTER');
  try {
    return parsePreference(value);
  } catch (error) {
    throw bad('counter', (error as Error).message, 'ERGOMETER_COUNTER');
  }
}

/** CI and platform variables that carry the commit being deployed, most specific first. */
const COMMIT_VARIABLES = [
  'ERGOMETER_COMMIT',
  'GITHUB_SHA',
  'CI_COMMIT_SHA', // GitLab
  'CIRCLE_SHA1',
  'BITBUCKET_COMMIT',
  'BUILDKITE_COMMIT',
  'DRONE_COMMIT_SHA',
  'TRAVIS_COMMIT',
  'GIT_COMMIT', // Jenkins
  'BUILD_SOURCEVERSION', // Azure Pipelines
  'CODEBUILD_RESOLVED_SOURCE_VERSION', // AWS CodeBuild
  'SEMAPHORE_GIT_SHA',
  'APPVEYOR_REPO_COMMIT',
  'VERCEL_GIT_COMMIT_SHA',
  'RENDER_GIT_COMMIT',
  'RAILWAY_GIT_COMMIT_SHA',
  'CF_PAGES_COMMIT_SHA', // Cloudflare Pages
  'KOYEB_GIT_SHA',
  'HEROKU_SLUG_COMMIT', // Heroku dyno metadata
  'SOURCE_VERSION', // Heroku build, AWS CodeBuild
  'COMMIT_REF', // Netlify
  'K_REVISION', // Cloud Run / Knative revision name (not a commit), when nothing better is set
] as const;

/** The commit from the environment, else from `git rev-parse HEAD`, else `unknown`. */
export function detectCommit(env: Env = process.env): string {
  for (const name of COMMIT_VARIABLES) {
    const value = optionalName('commit', name, env[name]);
    if (value !== undefined) return value;
  }
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 2000,
    }).trim();
    if (/^[0-9a-f]{7,64}$/.test(head)) return head;
  } catch {
    // Not a git checkout, or git is not installed: common in containers.
  }
  return 'unknown';
}

/**
 * The host's class for cost comparisons: CPU model and count, e.g. `Intel Xeon Platinum 8375C x2`.
 * Vendor marks, "CPU", "Processor" and the clock (`@ 2.90GHz`) are dropped; the model number stays.
 */
export function detectHostClass(cpus: readonly { model: string }[] = os.cpus()): string {
  const raw = cpus[0]?.model ?? '';
  const model = raw
    .replace(/\((?:R|TM|tm)\)/g, '')
    .replace(/@\s*[\d.]+\s*[GM]Hz/i, '')
    .replace(/\b(?:CPU|Processor)\b/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  return `${model === '' || model === 'unknown' ? `${os.arch()} unknown` : model} x${cpus.length}`;
}
