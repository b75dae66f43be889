/**
 * Stack samples from the interrupt sampler (@ergometer/counters, sampler/sampler.cc): V8 interrupts the
 * JavaScript thread at its next safe point every `intervalMicros` on average, and {@link InterruptRecorder}
 * reads there, as the interrupted code sees them, the stack (`Error.captureStackTrace`), the request's
 * labels (its AsyncLocalStorage) and the thread CPU time since the previous sample. V8's CPU profiler is
 * never started (docs/agent.md, "The interrupt sampler": why, and what a safe point changes).
 *
 * Functions are named as V8 names them, by the line and column where they start
 * (`CallSite.getEnclosingLineNumber()`), which is how the collector tells two functions of one file apart and
 * the same function in two commits together; each sample's location also keeps the line it was taken on.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { InterruptSampler } from '@ergometer/counters';
import { Profile, type SampleInput, StringTable, ValueType } from 'pprof-format';
import type { ProfileLabels } from './labels';
import type { ContextPath, EndedWindow, Recorder, SampleLabelsOf } from './recorder';

/** Frames kept per sample, leaf first (deeper stacks lose their outermost frames). */
export const MAX_STACK_FRAMES = 128;

/** One frame of a sample: a function and the line the sample was taken on in it. */
export interface RecordedFrame {
  /** `(anonymous)` for a function without a name. */
  name: string;
  /** Script path or URL; empty for V8's builtins (`map`, `forEach`…), which run without a script. */
  file: string;
  /** Where the function starts, 1-based; 0 for a builtin. */
  startLine: number;
  startColumn: number;
  /** The line the sample was taken on; 0 for a builtin. */
  line: number;
}

/** What a window recorded: frames are interned; stacks are leaf first. */
export interface RecordedSamples {
  frames: RecordedFrame[];
  stacks: number[][];
  cpuNanos: number[];
  labels: Array<ProfileLabels | undefined>;
}

type CallSite = NodeJS.CallSite & {
  isAsync?(): boolean;
  getEnclosingLineNumber?(): number | null;
  getEnclosingColumnNumber?(): number | null;
};

function emptyRecording(): RecordedSamples {
  return { frames: [], stacks: [], cpuNanos: [], labels: [] };
}

/**
 * The `interrupt` sampler as the profiler's {@link Recorder}. Labels ride on an AsyncLocalStorage of the
 * profiler's own, read when a sample is taken: AsyncContextFrame carries it on Node 24 with no hook; on Node 20
 * Node's async_hooks `init` hook does, turned off between windows (quiet()).
 */
export class InterruptRecorder implements Recorder {
  readonly sampler = 'interrupt';
  readonly contextPath: ContextPath;
  private readonly labelStorage = new AsyncLocalStorage<ProfileLabels>();
  private recording: RecordedSamples = emptyRecording();
  private frameIds = new Map<string, number>();
  private windowStartMs = 0;
  private intervalMicros = 0;
  /** Samples beyond this many in one window are dropped (memory stays bounded whatever the interval). */
  private maxSamples = 0;
  /** Called from the addon's interrupt; its frame and everything above it are left out of the stack. */
  private readonly onSample = (cpuNanos: number): void => this.record(cpuNanos);

  constructor(private readonly native: InterruptSampler) {
    this.contextPath = asyncContextFrameActive(native) ? 'async-context-frame' : 'async-hooks';
  }

  runLabelled<T>(labels: ProfileLabels, fn: () => T): T {
    return this.labelStorage.run(labels, fn);
  }

  currentLabels(): ProfileLabels | undefined {
    return this.labelStorage.getStore();
  }

  begin(intervalMicros: number, windowMs: number): void {
    // Twice the window's expected samples, as @datadog/pprof sizes its buffer of contexts.
    this.maxSamples = Math.max(16, Math.ceil((2 * windowMs * 1000) / intervalMicros));
    this.intervalMicros = intervalMicros;
    this.windowStartMs = Date.now();
    this.native.start(intervalMicros, this.onSample);
  }

  end(restart: boolean, labelsOf: SampleLabelsOf): EndedWindow {
    if (!restart) {
      this.native.stop();
      this.quiet();
    }
    const recorded = this.take();
    const toMs = Date.now();
    const fromMs = this.windowStartMs;
    this.windowStartMs = toMs;
    const cache = new Map<ProfileLabels, Record<string, string>>();
    return recordingToProfile(
      recorded,
      (labels) => {
        if (labels === undefined) return {};
        let set = cache.get(labels);
        if (set === undefined) {
          set = labelsOf(labels);
          cache.set(labels, set);
        }
        return set;
      },
      { fromMs, toMs, intervalMicros: this.intervalMicros },
    );
  }

  abandon(): void {
    this.native.stop();
    this.quiet();
    this.take();
  }

  /**
   * Node 20, between windows: the label storage off, so that Node's async_hooks `init` hook (which any enabled
   * storage keeps on for every promise of the process) is off too; run() turns it on again. With
   * AsyncContextFrame there is no hook, and disable() would change the frame of whatever runs now: left alone.
   */
  quiet(): void {
    if (this.contextPath === 'async-hooks') this.labelStorage.disable();
  }

  get labelHooksOn(): boolean {
    return this.contextPath === 'async-hooks' && (this.labelStorage as { enabled?: boolean }).enabled === true;
  }

  /** The samples so far; the next ones start a new recording (and a new frame table). */
  take(): RecordedSamples {
    const taken = this.recording;
    this.recording = emptyRecording();
    this.frameIds = new Map();
    return taken;
  }

  /** Throws nothing: it runs inside whatever the app was doing when V8 took the interrupt. */
  private record(cpuNanos: number): void {
    const recording = this.recording;
    if (recording.stacks.length >= this.maxSamples) return;
    let sites: CallSite[] | undefined;
    let labels: ProfileLabels | undefined;
    try {
      sites = captureCallSites(this.onSample);
      labels = this.labelStorage.getStore();
    } catch {
      return;
    }
    if (sites === undefined) return;
    const stack: number[] = [];
    for (const site of sites) {
      // Frames of the awaits that led here (V8's async stack traces) are not on the thread's stack.
      if (site.isAsync?.() === true) break;
      stack.push(this.frameId(site));
    }
    recording.stacks.push(stack);
    recording.cpuNanos.push(cpuNanos);
    recording.labels.push(labels);
  }

  private frameId(site: CallSite): number {
    const file = site.getFileName() ?? '';
    const name = site.getFunctionName() || '(anonymous)';
    const script = file !== '';
    const startLine = script ? (site.getEnclosingLineNumber?.() ?? 0) : 0;
    const startColumn = script ? (site.getEnclosingColumnNumber?.() ?? 0) : 0;
    const line = script ? (site.getLineNumber() ?? 0) : 0;
    const key = `${name}\u0000${file}\u0000${startLine}\u0000${startColumn}\u0000${line}`;
    let id = this.frameIds.get(key);
    if (id === undefined) {
      id = this.recording.frames.length;
      this.recording.frames.push({ name, file, startLine, startColumn, line });
      this.frameIds.set(key, id);
    }
    return id;
  }
}

/**
 * Whether AsyncLocalStorage is backed by AsyncContextFrame here (Node 24; Node 22 with
 * --experimental-async-context-frame): only then does V8 carry the continuation data a storage sets. Not
 * probed before V8 12, which has none (probing would turn Node 20's async_hooks on).
 */
function asyncContextFrameActive(native: InterruptSampler): boolean {
  if (Number.parseInt(process.versions.v8, 10) < 12) return false;
  const probe = new AsyncLocalStorage<boolean>();
  return probe.run(true, () => native.hasContinuationData());
}

/**
 * The JavaScript stack below `above` as V8's CallSite objects, leaf first. `Error.prepareStackTrace` and
 * `Error.stackTraceLimit` are the app's: they are swapped only for the capture and put back as they were.
 */
function captureCallSites(above: (cpuNanos: number) => void): CallSite[] | undefined {
  const prepare = Error.prepareStackTrace;
  const limit = Error.stackTraceLimit;
  const holder: { stack?: unknown } = {};
  try {
    Error.stackTraceLimit = MAX_STACK_FRAMES;
    Error.prepareStackTrace = (_error, sites) => sites;
    Error.captureStackTrace(holder, above);
    const sites = holder.stack;
    return Array.isArray(sites) ? (sites as CallSite[]) : undefined;
  } finally {
    Error.prepareStackTrace = prepare;
    Error.stackTraceLimit = limit;
  }
}

/**
 * The recording as a pprof `Profile` in the contract's shape (PROFILE-CONTRACT.md): sample types
 * `[samples/count, cpu/nanoseconds]`, one function per (name, file, start line and column), one location per
 * frame (function and line), stacks leaf first, labels from `labelsOf`.
 */
export function recordingToProfile(
  recorded: RecordedSamples,
  labelsOf: (labels: ProfileLabels | undefined) => Record<string, string>,
  window: { fromMs: number; toMs: number; intervalMicros: number },
): EndedWindow {
  const strings = new StringTable();
  const functionIds = new Map<string, number>();
  const functions: Array<{ id: number; name: number; systemName: number; filename: number; startLine: number }> = [];
  const locations = recorded.frames.map((frame, index) => {
    const key = `${frame.name}\u0000${frame.file}\u0000${frame.startLine}\u0000${frame.startColumn}`;
    let functionId = functionIds.get(key);
    if (functionId === undefined) {
      functionId = functions.length + 1;
      const name = strings.dedup(frame.name);
      functions.push({
        id: functionId,
        name,
        systemName: name,
        filename: strings.dedup(frame.file),
        startLine: frame.startLine,
      });
      functionIds.set(key, functionId);
    }
    return { id: index + 1, line: [{ functionId, line: frame.line }] };
  });

  const samples: SampleInput[] = [];
  let cpuNanos = 0;
  for (let i = 0; i < recorded.stacks.length; i++) {
    const cpu = Math.max(0, Math.round(recorded.cpuNanos[i] ?? 0));
    const set = labelsOf(recorded.labels[i]);
    samples.push({
      locationId: (recorded.stacks[i] ?? []).map((frame) => frame + 1),
      value: [1, cpu],
      label: Object.entries(set).map(([key, value]) => ({ key: strings.dedup(key), str: strings.dedup(value) })),
    });
    cpuNanos += cpu;
  }
  const sampleType = [
    new ValueType({ type: strings.dedup('samples'), unit: strings.dedup('count') }),
    new ValueType({ type: strings.dedup('cpu'), unit: strings.dedup('nanoseconds') }),
  ];
  const profile = new Profile({
    sampleType,
    sample: samples,
    location: locations,
    function: functions,
    stringTable: strings,
    timeNanos: BigInt(Math.round(window.fromMs)) * 1_000_000n,
    durationNanos: BigInt(Math.max(0, Math.round(window.toMs - window.fromMs))) * 1_000_000n,
    periodType: { type: strings.dedup('cpu'), unit: strings.dedup('nanoseconds') },
    period: Math.round(window.intervalMicros * 1000),
    defaultSampleType: sampleType[1]?.type ?? 0,
  });
  return { profile, totals: { samples: samples.length, cpuNanos } };
}
