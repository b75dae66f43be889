/**
 * What records stack samples for the profiler (profiler.ts): the interrupt sampler (interrupt-recorder.ts) or
 * V8's CPU profiler (v8-recorder.ts). The profiler decides when windows start and end and which requests get
 * labels; a recorder takes the samples, carries the labels across async work, and turns a window into a pprof
 * profile in the contract's shape.
 */
import type { Profile } from 'pprof-format';
import type { ProfileLabels } from './labels';

/** What takes the stack samples (profile.sampler after `auto` is decided). */
export type SamplerKind = 'interrupt' | 'v8';

/** How the labels follow a request across async boundaries (docs/agent.md, "Profiler"). */
export type ContextPath = 'async-context-frame' | 'async-hooks';

/**
 * pprof labels of a sample (`endpoint`, `flag:<key>`) from the labels of the request it ran for (none outside
 * requests). The profiler gives one per window that returns the same object for the same labels.
 */
export type SampleLabelsOf = (labels: ProfileLabels | undefined) => Record<string, string>;

/** The time a window covers, ms since the epoch (the profiler keeps it; a profile may carry it). */
export interface RecordedWindow {
  fromMs: number;
  toMs: number;
}

/** A window's profile in the contract's shape (`[samples/count, cpu/nanoseconds]`) and its totals. */
export interface EndedWindow {
  profile: Profile;
  totals: { samples: number; cpuNanos: number };
}

export interface Recorder {
  readonly sampler: SamplerKind;
  readonly contextPath: ContextPath;
  /** Runs `fn` with `labels` as the labels of every sample taken in it, synchronously and after its awaits. */
  runLabelled<T>(labels: ProfileLabels, fn: () => T): T;
  /** The labels of the running code, if it has any (only meaningful while recording). */
  currentLabels(): ProfileLabels | undefined;
  /** Starts a window: a sample every `intervalMicros` on average. Throws when the sampler cannot start. */
  begin(intervalMicros: number, windowMs: number): void;
  /** Ends the window and returns its profile; `restart` begins the next window at once. */
  end(restart: boolean, labelsOf: SampleLabelsOf, window: RecordedWindow): EndedWindow;
  /** Stops recording for good; what was recorded is thrown away. */
  abandon(): void;
  /** Between windows: the async hooks that carry labels off, where there are any. */
  quiet(): void;
  /** Whether async hooks for labels are on now (async-hooks path only). */
  readonly labelHooksOn: boolean;
}
