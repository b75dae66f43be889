/**
 * The function-level profiler: stack samples labelled with the request they ran for (`endpoint`,
 * `flag:<key>`) and weighted by the thread CPU time spent since the previous sample. Loaded only when
 * `profile.enabled`: the agent requires this file lazily, so a process with the profiler off loads no addon.
 *
 * This file decides when windows start and end, which requests get labels and how often to sample; a
 * {@link Recorder} takes the samples: the interrupt sampler (interrupt-recorder.ts, the default where it
 * runs: Node 24) or V8's CPU profiler through @datadog/pprof (v8-recorder.ts). Labels are the request's
 * {@link ProfileLabels}, read only when the profile is serialized (so an endpoint named when the response
 * ends, or a flag recorded later, still labels earlier samples).
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { loadInterruptSampler } from '@ergometer/counters';
import { endpointName } from '../context/endpoint';
import { channels, publish } from '../diagnostics';
import type { ResolvedProfileOptions } from '../options';
import { InterruptRecorder } from './interrupt-recorder';
import type { ProfileLabels } from './labels';
import type { ContextPath, Recorder, SampleLabelsOf, SamplerKind } from './recorder';

export type { ContextPath, SamplerKind } from './recorder';

const gzip = promisify(zlib.gzip);

/** One profile, ready to ship. */
export interface CollectedProfile {
  /** The pprof `Profile`, gzip-compressed. */
  pprof: Buffer;
  /** The window it covers, ms since the epoch. */
  from: number;
  to: number;
  /** Always `cpu_ns`: samples are weighted by thread CPU time, never by instructions. */
  metric: 'cpu_ns';
  /** Stack samples in it, and the CPU they weigh, ns. */
  samples: number;
  cpuNanos: number;
}

/**
 * How `dutyCycle` < 1 is realised (docs/agent.md, "Profiler"):
 *  - `windows`: the sampler records one window per period, with the samples of `dutyCycle × periodMs` at
 *    `intervalMicros` taken at `windowIntervalMicros` (dense windows: as much shorter), and is stopped in between;
 *  - `continuous`: it never stops, and samples every `intervalMicros × labelFraction / dutyCycle` instead, labelling
 *    `labelFraction` of the requests: the same number of labelled samples per period. Used with V8's profiler
 *    where a stopped one loses track of code (see {@link stopLosesCode}).
 */
export type ProfileSchedule = 'windows' | 'continuous';

/**
 * Whether stopping V8's CPU profiler and starting it again mis-attributes samples. From V8 12 (Node 22) on, the
 * code log taken when a profiler starts misses code compiled by on-stack replacement (a function entered into
 * optimized code in the middle of a long loop): a sample in such code compiled while no profile ran loses its
 * leaf frame and is charged to the nearest known caller (60–100% of a loop function's samples on Node 24 in a
 * probe; none with `--no-use-osr`; test/profile/profiler.test.ts shows it through the agent). V8 11 (Node 20)
 * logs that code when the profiler starts again.
 */
export function stopLosesCode(v8Version: string = process.versions.v8): boolean {
  return Number.parseInt(v8Version, 10) >= 12;
}

/**
 * Default fraction of requests labelled on the `continuous` schedule with AsyncContextFrame (Node 24). Labelling
 * a request (a context holder and an AsyncContextFrame, ~0.5–4 µs measured) is a large part of the profiler's
 * ~3–4% on an 85 µs request when every request is labelled at 10 Hz; but a stack sample costs too, so the
 * fraction trades one for the other. Two fifths at 25 Hz keep the labelled samples per period and lose least if
 * either cost is the larger (docs/agent.md, "What labelling costs").
 */
export const CONTINUOUS_LABEL_FRACTION = 0.4;

/** Process CPU time before the profiler starts beyond which {@link lateStartWarning} warns, µs. */
export const LATE_START_CPU_MICROS = 3_000_000;

/**
 * The warning for a profiler started after the process has already worked for a while, on a V8 whose profiler
 * cannot see code compiled by on-stack replacement before it started (see {@link stopLosesCode}); undefined when
 * there is nothing to warn about. `cpuMicros`: the process's CPU time (user + system) so far. Module loading
 * alone stays well below the threshold; seconds of CPU mean request handling or warm-up work ran first.
 */
export function lateStartWarning(cpuMicros: number, v8Version: string = process.versions.v8): string | undefined {
  if (!stopLosesCode(v8Version) || cpuMicros <= LATE_START_CPU_MICROS) return undefined;
  return (
    `the profiler started after this process had used ${(cpuMicros / 1e6).toFixed(1)} s of CPU: on Node 22+ V8 cannot ` +
    'place samples in code it optimized by on-stack replacement before the profiler started, and charges them to ' +
    'the caller until it compiles that code again. Start the agent first (node --import @ergometer/agent/register, ' +
    'or start() at the top of the entry module); see docs/agent.md, "Start the agent before your code runs hot"'
  );
}

/**
 * The recorder for `profile.sampler`. `auto` takes the interrupt sampler where V8's profiler cannot record windows
 * (V8 12+: Node 22, 24; {@link stopLosesCode}) and its addon is built for this Node.js; on V8 11 (Node 20), where V8's
 * profiler records windows, it takes V8's profiler: there the interrupt sampler cost no less while recording and
 * more at the defaults in the benchmark (docs/agent.md, "The interrupt sampler"). `fallback` says why `auto` did not
 * take the interrupt sampler. Throws when the sampler asked for by name cannot run.
 */
export function chooseRecorder(
  sampler: ResolvedProfileOptions['sampler'],
  load: typeof loadInterruptSampler = loadInterruptSampler,
  v8Version: string = process.versions.v8,
): { recorder: Recorder; fallback?: string } {
  if (sampler === 'auto' && !stopLosesCode(v8Version)) {
    return {
      recorder: v8Recorder(),
      fallback: `V8 ${v8Version} records windows with its own profiler at less cost than the interrupt sampler (docs/agent.md, "The interrupt sampler")`,
    };
  }
  if (sampler !== 'v8') {
    let reason: Error;
    const loaded = load();
    if (loaded.sampler === null) {
      reason = loaded.loadError;
    } else {
      try {
        return { recorder: new InterruptRecorder(loaded.sampler) };
      } catch (error) {
        reason = error as Error;
      }
    }
    if (sampler === 'interrupt') throw reason;
    return { recorder: v8Recorder(), fallback: reason.message };
  }
  return { recorder: v8Recorder() };
}

function v8Recorder(): Recorder {
  const { V8Recorder } = require('./v8-recorder') as typeof import('./v8-recorder');
  return new V8Recorder();
}

export class Profiler {
  /** True while a profile is being recorded: only then do requests get labels. */
  active = false;
  readonly sampler: SamplerKind;
  /** Why `profile.sampler: "auto"` fell back to `v8`, if it did. */
  readonly samplerFallback: string | undefined;
  readonly contextPath: ContextPath;
  readonly schedule: ProfileSchedule;
  /** Mean time between two stack samples while recording, µs. */
  readonly samplingIntervalMicros: number;
  /** How long one recording lasts: a window (`windows`), or the period (`continuous`), ms. */
  readonly windowMs: number;
  /** Fraction of requests labelled while recording (see {@link drawLabels}). */
  readonly labelFraction: number;
  private readonly recorder: Recorder;
  private windowStartMs = 0;
  private nextPeriodAtMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly options: ResolvedProfileOptions,
    private readonly onProfile: (profile: CollectedProfile) => void,
  ) {
    const { recorder, fallback } = chooseRecorder(options.sampler);
    this.recorder = recorder;
    this.sampler = recorder.sampler;
    this.samplerFallback = fallback;
    this.contextPath = recorder.contextPath;
    const acf = this.contextPath === 'async-context-frame';
    // Only V8's profiler loses track of code while stopped: the interrupt sampler keeps no code log.
    const continuous =
      options.dutyCycle >= 1 ||
      options.schedule === 'continuous' ||
      (options.schedule === 'auto' && this.sampler === 'v8' && stopLosesCode());
    this.schedule = continuous ? 'continuous' : 'windows';
    // Only labels on the AsyncContextFrame path cost per request enough to trade them for samples: on the
    // async-hooks path the hook runs on every callback, labelled or not.
    this.labelFraction =
      options.labelFraction ?? (continuous && acf ? Math.max(CONTINUOUS_LABEL_FRACTION, options.dutyCycle) : 1);
    // Continuous below a duty cycle of 1: the same labelled samples per period, spread over all of it
    // (samples in requests left unlabelled make up for the labels; never faster than intervalMicros).
    // Windows: the period's samples at windowIntervalMicros, in a window as much shorter (dense windows).
    const windowInterval = Math.min(options.windowIntervalMicros, options.intervalMicros);
    this.samplingIntervalMicros = continuous
      ? options.dutyCycle < 1
        ? Math.max(
            options.intervalMicros,
            Math.round((options.intervalMicros * this.labelFraction) / options.dutyCycle),
          )
        : options.intervalMicros
      : windowInterval;
    this.windowMs = continuous
      ? options.periodMs
      : Math.max(1, Math.round((options.periodMs * options.dutyCycle * windowInterval) / options.intervalMicros));
  }

  /**
   * Starts the first window; false when `dutyCycle` is 0 (nothing will be recorded). Throws when the native
   * profiler cannot start (the agent then runs without it).
   */
  start(): boolean {
    if (this.options.dutyCycle <= 0) return false;
    if (this.schedule === 'continuous') {
      this.beginWindow();
    } else {
      // No window in the first period, while the app is likely warming up: on V8 11 (Node 20) code optimized
      // while a profile records stays slower after it stops (docs/agent.md, "Not while the process warms up").
      this.schedulePeriodIn(this.options.periodMs);
    }
    return true;
  }

  /**
   * dutyCycle < 1: one window per period, at a random offset within it, so that the processes of a
   * fleet do not all profile the same seconds and any stretch of time is covered evenly on average.
   */
  private schedulePeriod(): void {
    if (this.closed) return;
    this.nextPeriodAtMs = Date.now() + this.options.periodMs;
    const offsetMs = Math.random() * (this.options.periodMs - this.windowMs);
    this.timer = setTimeout(() => this.safely(() => this.beginWindow()), offsetMs);
    this.timer.unref();
  }

  /** Starts the next period (windows schedule) in `delayMs`. */
  private schedulePeriodIn(delayMs: number): void {
    this.timer = setTimeout(() => this.safely(() => this.schedulePeriod()), delayMs);
    this.timer.unref();
  }

  /**
   * Whether a request starting now gets labels: each one with probability {@link labelFraction}. A function's
   * cost per request is its share of its endpoint's labelled samples times the endpoint's cost per request
   * (measured by the request samples), and a subset of requests drawn independently of what they do estimates
   * that share without bias; the samples of the others stay in the profile unlabelled.
   */
  drawLabels(): boolean {
    return this.labelFraction >= 1 || Math.random() < this.labelFraction;
  }

  /**
   * Runs `fn` with `labels` as the sample context of everything it does, synchronously and after its
   * awaits. Call only while {@link active}.
   */
  runLabelled<T>(labels: ProfileLabels, fn: () => T): T {
    return this.recorder.runLabelled(labels, fn);
  }

  /** The labels of the running request, if it has any. */
  currentLabels(): ProfileLabels | undefined {
    return this.active ? this.recorder.currentLabels() : undefined;
  }

  /**
   * Stops profiling and returns the last profile (the window so far), or undefined when none was
   * running or it could not be taken. Safe to call twice.
   */
  async shutdown(): Promise<CollectedProfile | undefined> {
    if (this.closed) return undefined;
    this.closed = true;
    clearTimeout(this.timer);
    if (!this.active) return undefined;
    return this.collect(false);
  }

  /**
   * Stops profiling for good without taking a profile: the collector chose other processes to profile
   * (profile/coordination.ts). What was recorded so far is thrown away. Safe to call twice.
   */
  discard(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    if (!this.active) return;
    this.active = false;
    try {
      this.recorder.abandon();
    } catch (error) {
      publish(channels.internalError, { error });
    }
  }

  private beginWindow(): void {
    this.timer = undefined;
    if (this.closed) return;
    this.recorder.begin(this.samplingIntervalMicros, this.windowMs);
    this.windowStartMs = Date.now();
    this.active = true;
    this.scheduleWindowEnd();
  }

  private scheduleWindowEnd(): void {
    this.timer = setTimeout(() => this.endWindow(), this.windowMs);
    this.timer.unref();
  }

  private endWindow(): void {
    const restart = this.schedule === 'continuous';
    this.collect(restart).then(
      (profile) => {
        if (profile !== undefined) this.onProfile(profile);
      },
      (error: unknown) => publish(channels.internalError, { error }),
    );
    if (this.closed) return;
    if (restart) {
      this.scheduleWindowEnd();
    } else {
      this.schedulePeriodIn(Math.max(0, this.nextPeriodAtMs - Date.now()));
    }
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.active = false;
      publish(channels.internalError, { error });
    }
  }

  /**
   * Takes the profile of the window that ends now; `restart` starts the next window at once (V8's profiler
   * restarts before serializing, so serializing is profiled too). The stop and the serialization run on the
   * event loop (a few ms for a minute at 100 Hz); compression runs on the libuv threadpool.
   */
  private async collect(restart: boolean): Promise<CollectedProfile | undefined> {
    const from = this.windowStartMs;
    const to = Date.now();
    let ended: ReturnType<Recorder['end']>;
    try {
      if (!restart) this.active = false;
      ended = this.recorder.end(restart, windowLabels(), { fromMs: from, toMs: to });
      if (restart) this.windowStartMs = to;
    } catch (error) {
      this.active = false;
      this.recorder.quiet();
      publish(channels.internalError, { error });
      return undefined;
    }
    const pprof = await gzip(ended.profile.encode());
    const { samples, cpuNanos } = ended.totals;
    return { pprof, from, to, metric: 'cpu_ns', samples, cpuNanos };
  }

  /**
   * Whether the profiler's async hooks for labels are on now (the `async-hooks` path: off between windows, so
   * the process pays for them only while recording). Always false on the AsyncContextFrame path, which has none.
   */
  get labelHooksOn(): boolean {
    return this.recorder.labelHooksOn;
  }
}

/** A window's {@link SampleLabelsOf}: each request's labels are resolved once, when the profile is taken. */
function windowLabels(): SampleLabelsOf {
  const cache = new Map<ProfileLabels, Record<string, string>>();
  return (labels) => {
    if (labels === undefined) return {};
    let set = cache.get(labels);
    if (set === undefined) {
      set = labelsOf(labels);
      cache.set(labels, set);
    }
    return set;
  };
}

/** The pprof labels of a sample taken in a request with these labels. */
function labelsOf(labels: ProfileLabels): Record<string, string> {
  const set: Record<string, string> = {};
  const endpoint = labels.resolve(endpointName);
  if (endpoint !== undefined) set.endpoint = endpoint;
  if (labels.flags !== undefined) for (const [key, variant] of labels.flags) set[`flag:${key}`] = variant;
  return set;
}
