/**
 * The function-level profiler: V8's sampling CPU profiler driven by @datadog/pprof, every stack
 * sample labelled with the request it ran for (`endpoint`, `flag:<key>`) and weighted by the thread
 * CPU time spent since the previous sample. Loaded only when `profile.enabled`: the agent requires
 * this file lazily, so a process with the profiler off never loads the native addon.
 *
 * How a sample finds its request. The library's signal handler reads a "sample context" at each
 * sample and keeps a reference to it; we make that context the request's {@link ProfileLabels}, and
 * read it only when the profile is serialized (so an endpoint named when the response ends, or a
 * flag recorded later, still labels earlier samples).
 *  - AsyncContextFrame (Node 24, Node 22 with --experimental-async-context-frame): the context lives
 *    in V8's continuation-preserved embedder data, which follows await and callbacks by itself; the
 *    agent sets it once per request (`runWithContext`). No async hook.
 *  - Otherwise (Node 20, Node 22 by default): the context is one global slot, so it must be switched
 *    on every async boundary: an async_hooks `before` hook puts the running callback's labels there.
 *    The hook is enabled only while the profiler runs.
 */
import { AsyncLocalStorage, createHook } from 'node:async_hooks';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { LabelSet } from '@datadog/pprof';
import { time } from '@datadog/pprof';
import { isAsyncContextFrameActive } from '@datadog/pprof/out/src/async-context-frame';
import { endpointName } from '../context/endpoint';
import { channels, publish } from '../diagnostics';
import type { ResolvedProfileOptions } from '../options';
import { ProfileLabels } from './labels';
import { rewriteForContract } from './pprof-rewrite';

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

/** How the labels follow a request across async boundaries (docs/agent.md, "Profiler"). */
export type ContextPath = 'async-context-frame' | 'async-hooks';

/**
 * How `dutyCycle` < 1 is realised (docs/agent.md, "Profiler"):
 *  - `windows`: the V8 profiler records one window of `dutyCycle × periodMs` per period at `intervalMicros`,
 *    and is stopped in between;
 *  - `continuous`: it never stops, and samples every `intervalMicros × labelFraction / dutyCycle` instead, labelling
 *    `labelFraction` of the requests: the same number of labelled samples per period. Used where a stopped V8
 *    profiler loses track of code (see {@link stopLosesCode}).
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

/** Holder of the labels in the Node 20 path: one per stretch between two samples (see setLabels). */
interface LabelsHolder {
  labels: ProfileLabels | undefined;
}

export class Profiler {
  /** True while a profile is being recorded: only then do requests get labels. */
  active = false;
  readonly contextPath: ContextPath;
  readonly schedule: ProfileSchedule;
  /** Mean time between two stack samples while recording, µs. */
  readonly samplingIntervalMicros: number;
  /** Fraction of requests labelled while recording (see {@link drawLabels}). */
  readonly labelFraction: number;
  private windowStartMs = 0;
  private nextPeriodAtMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly windowMs: number;
  /** Node 20 path: the labels of the running code, following it through async_hooks. */
  private readonly labelStorage: AsyncLocalStorage<ProfileLabels> | undefined;
  private readonly hook: ReturnType<typeof createHook> | undefined;
  private hookOn = false;
  private holder: LabelsHolder = { labels: undefined };
  private holderSampleCount = -1;
  private sampleCounts: Uint32Array | undefined;
  private readonly kSampleCount: number = time.constants.kSampleCount as number;

  constructor(
    private readonly options: ResolvedProfileOptions,
    private readonly onProfile: (profile: CollectedProfile) => void,
  ) {
    let acf = false;
    try {
      acf = isAsyncContextFrameActive();
    } catch {
      // A build of the addon without the probe: take the path that works everywhere.
    }
    this.contextPath = acf ? 'async-context-frame' : 'async-hooks';
    const continuous =
      options.dutyCycle >= 1 || options.schedule === 'continuous' || (options.schedule === 'auto' && stopLosesCode());
    this.schedule = continuous ? 'continuous' : 'windows';
    // Only labels on the AsyncContextFrame path cost per request enough to trade them for samples: on the
    // async-hooks path the hook runs on every callback, labelled or not.
    this.labelFraction =
      options.labelFraction ?? (continuous && acf ? Math.max(CONTINUOUS_LABEL_FRACTION, options.dutyCycle) : 1);
    // Continuous below a duty cycle of 1: the same labelled samples per period, spread over all of it
    // (samples in requests left unlabelled make up for the labels; never faster than intervalMicros).
    this.samplingIntervalMicros =
      continuous && options.dutyCycle < 1
        ? Math.max(
            options.intervalMicros,
            Math.round((options.intervalMicros * this.labelFraction) / options.dutyCycle),
          )
        : options.intervalMicros;
    this.windowMs = continuous ? options.periodMs : Math.max(1, Math.round(options.periodMs * options.dutyCycle));
    if (!acf) {
      const storage = new AsyncLocalStorage<ProfileLabels>();
      this.labelStorage = storage;
      this.hook = createHook({ before: () => this.setLabels(storage.getStore()) });
    }
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
    if (this.labelStorage === undefined) return time.runWithContext(labels, fn);
    return this.labelStorage.run(labels, () => {
      const outer = this.holder.labels;
      this.setLabels(labels);
      try {
        return fn();
      } finally {
        // The rest of the callback that called us (e.g. the HTTP parser) is not this request's.
        this.setLabels(outer);
      }
    });
  }

  /** The labels of the running request, if it has any. */
  currentLabels(): ProfileLabels | undefined {
    if (!this.active) return undefined;
    if (this.labelStorage !== undefined) return this.labelStorage.getStore();
    const context: unknown = time.getContext();
    return context instanceof ProfileLabels ? context : undefined;
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
    this.quietLabels();
    this.sampleCounts = undefined;
    try {
      time.stop(false);
    } catch (error) {
      publish(channels.internalError, { error });
    }
  }

  /**
   * Node 20 path: makes `labels` the context of the next samples. The library keeps a reference to
   * the context object of each sample, so the holder a sample saw must not change afterwards; a
   * holder no sample has seen yet is simply updated. A sample counter the library shares with us
   * tells which: a native setContext (an allocation) happens at most once per sample, not once per
   * async boundary.
   */
  private setLabels(labels: ProfileLabels | undefined): void {
    if (this.holder.labels === labels) return;
    const counts = this.sampleCounts;
    if (counts === undefined) return;
    const seen = counts[this.kSampleCount] ?? 0;
    if (seen === this.holderSampleCount) {
      this.holder.labels = labels;
      return;
    }
    this.holder = { labels };
    this.holderSampleCount = seen;
    time.setContext(this.holder);
  }

  private beginWindow(): void {
    this.timer = undefined;
    if (this.closed) return;
    time.start({
      intervalMicros: this.samplingIntervalMicros,
      // Sizes the library's buffer of per-sample contexts (2 × window / interval): samples beyond it lose
      // their labels, which bounds memory.
      durationMillis: this.windowMs,
      withContexts: true,
      collectCpuTime: true,
      // Async ids are read in the signal handler; that path crashed processes (pprof-nodejs #304). Off.
      collectAsyncId: false,
      useCPED: this.contextPath === 'async-context-frame',
    });
    this.windowStartMs = Date.now();
    if (this.hook !== undefined) {
      this.sampleCounts = time.getState() as Uint32Array;
      this.holder = { labels: undefined };
      this.holderSampleCount = -1;
      this.setLabels(undefined);
      this.hook.enable();
      this.hookOn = true;
    }
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
   * Takes the profile of the window that ends now; `restart` starts the next window at once (the
   * library restarts before serializing, so serializing is profiled too). The stop and the
   * serialization run on the event loop (a few ms for a minute at 100 Hz); compression runs on the
   * libuv threadpool.
   */
  private async collect(restart: boolean): Promise<CollectedProfile | undefined> {
    const from = this.windowStartMs;
    const to = Date.now();
    let profile: ReturnType<typeof time.stop>;
    try {
      if (!restart) {
        this.active = false;
        this.quietLabels();
        this.sampleCounts = undefined;
      }
      const labelCache = new Map<ProfileLabels, LabelSet>();
      profile = time.stop(restart, (args) => this.labelsOf(args.context?.context, labelCache), ['endpoint']);
      if (restart) this.windowStartMs = to;
    } catch (error) {
      this.active = false;
      this.quietLabels();
      publish(channels.internalError, { error });
      return undefined;
    }
    const totals = rewriteForContract(profile);
    const pprof = await gzip(profile.encode());
    return { pprof, from, to, metric: 'cpu_ns', samples: totals.samples, cpuNanos: totals.cpuNanos };
  }

  /**
   * Node 20 path, between windows: the `before` hook off, and the label storage too. An AsyncLocalStorage
   * that has run once keeps Node's async_hooks `init` hook on for every later promise and callback of the
   * process (all storages share it), and so keeps the agent's own request storage from turning it off
   * when nothing is sampled: between windows the profiler cost about as much as while recording (a run
   * before this fix: +20% CPU per request at the defaults against +27% recording all the time). run() turns it on
   * again for the next window's first request. A request that spans the end of a window keeps no labels
   * into the next one; its later samples there are unlabelled.
   */
  private quietLabels(): void {
    this.hook?.disable();
    this.hookOn = false;
    this.labelStorage?.disable();
  }

  /**
   * Node 20 path: whether the `before` hook or the label storage is on now (the storage's own flag:
   * Node keeps its async_hooks `init` hook on while any storage is enabled). Always false on the
   * AsyncContextFrame path, which has neither.
   */
  get labelHooksOn(): boolean {
    return this.hookOn || (this.labelStorage as { enabled?: boolean } | undefined)?.enabled === true;
  }

  /** The pprof labels of a sample whose context is `context` (a ProfileLabels, or a Node 20 holder of one). */
  private labelsOf(context: object | undefined, cache: Map<ProfileLabels, LabelSet>): LabelSet {
    const labels = context instanceof ProfileLabels ? context : (context as LabelsHolder | undefined)?.labels;
    if (labels === undefined) return {};
    let set = cache.get(labels);
    if (set === undefined) {
      set = {};
      const endpoint = labels.resolve(endpointName);
      if (endpoint !== undefined) set.endpoint = endpoint;
      if (labels.flags !== undefined) for (const [key, variant] of labels.flags) set[`flag:${key}`] = variant;
      cache.set(labels, set);
    }
    return set;
  }
}
