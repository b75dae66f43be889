/**
 * Stack samples from the interrupt sampler (@ergometer/counters, sampler/sampler.cc): V8 interrupts the
 * JavaScript thread at its next safe point every `intervalMicros` on average, and the addon records there, without
 * running JavaScript, the stack (as V8 captures it for an Error), what tells the running request and the thread
 * CPU time since the previous sample. {@link InterruptRecorder} drains those samples from ordinary JavaScript a few
 * times a second: it formats each stack through `Error.prepareStackTrace` (V8's CallSites) and finds the request's
 * labels. V8's CPU profiler is never started (docs/agent.md, "The interrupt sampler": why, and what a safe point
 * changes).
 *
 * Functions are named as V8 names them, by the line and column where they start
 * (`CallSite.getEnclosingLineNumber()`), which is how the collector tells two functions of one file apart and
 * the same function in two commits together; each sample's location also keeps the line it was taken on.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { InterruptSampler } from '@ergometer/counters';
import { Profile, type SampleInput, StringTable, ValueType } from 'pprof-format';
import { channels, publish } from '../diagnostics';
import { HookLabels } from './hook-labels';
import { ProfileLabels } from './labels';
import type { ContextPath, EndedWindow, RecordedWindow, Recorder, SampleLabelsOf } from './recorder';

/** How often the samples waiting in the addon are drained while recording, ms: how long their stacks live there. */
export const DRAIN_INTERVAL_MS = 200;

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
 * The `interrupt` sampler as the profiler's {@link Recorder}. How each sample finds its request's labels:
 *  - AsyncContextFrame (Node 24): the labels ride on an AsyncLocalStorage of the profiler's own, which
 *    AsyncContextFrame carries with no hook; the addon records the frame of each sample, and the drain reads the
 *    labels from it.
 *  - Otherwise (Node 20; Node 24 with `--no-async-context-frame`): {@link HookLabels} keeps the labels of the
 *    running callback in element 0 of a label slot (an async_hooks `before` hook, on only while recording), and the
 *    addon records that element with each sample.
 */
export class InterruptRecorder implements Recorder {
  readonly sampler = 'interrupt';
  readonly contextPath: ContextPath;
  /** AsyncContextFrame path: the profiler's own storage, read from each sample's frame. */
  private readonly labelStorage: AsyncLocalStorage<ProfileLabels> | undefined;
  /** async-hooks path: the labels of the running callback, kept in `labelSlot[0]`. */
  private readonly hookLabels: HookLabels | undefined;
  private readonly labelSlot: unknown[] = [undefined];
  private recording: RecordedSamples = emptyRecording();
  private frameIds = new Map<string, number>();
  private intervalMicros = 0;
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(private readonly native: InterruptSampler) {
    const probe = new AsyncLocalStorage<boolean>();
    if (probe.run(true, () => native.hasContinuationData())) {
      this.contextPath = 'async-context-frame';
      this.labelStorage = new AsyncLocalStorage<ProfileLabels>();
    } else {
      this.contextPath = 'async-hooks';
      this.hookLabels = new HookLabels((labels) => {
        this.labelSlot[0] = labels;
      });
    }
  }

  runLabelled<T>(labels: ProfileLabels, fn: () => T): T {
    if (this.hookLabels !== undefined) return this.hookLabels.run(labels, fn);
    return (this.labelStorage as AsyncLocalStorage<ProfileLabels>).run(labels, fn);
  }

  currentLabels(): ProfileLabels | undefined {
    return this.hookLabels !== undefined ? this.hookLabels.current() : this.labelStorage?.getStore();
  }

  get labelHooksOn(): boolean {
    return this.hookLabels?.on === true;
  }

  begin(intervalMicros: number, windowMs: number): void {
    this.intervalMicros = intervalMicros;
    // What one drain interval holds at this rate, with room to spare: samples beyond are dropped, which bounds
    // the memory of a drain delayed by a long task.
    const maxWaiting = Math.max(64, Math.ceil((20 * DRAIN_INTERVAL_MS * 1000) / intervalMicros));
    this.hookLabels?.enable();
    this.native.start(intervalMicros, maxWaiting, Error, this.hookLabels === undefined ? undefined : this.labelSlot);
    clearInterval(this.drainTimer);
    this.drainTimer = setInterval(
      () => {
        try {
          this.drain();
        } catch (error) {
          // Never an exception in the app's event loop: the samples of this drain are lost, the window goes on.
          publish(channels.internalError, { error });
        }
      },
      Math.min(DRAIN_INTERVAL_MS, windowMs),
    );
    this.drainTimer.unref();
  }

  end(restart: boolean, labelsOf: SampleLabelsOf, window: RecordedWindow): EndedWindow {
    if (!restart) this.stopSampling();
    this.drain();
    return recordingToProfile(this.take(), labelsOf, { ...window, intervalMicros: this.intervalMicros });
  }

  abandon(): void {
    this.stopSampling();
    this.native.drain();
    this.take();
  }

  /** Between windows: the label hooks off (async-hooks path; AsyncContextFrame needs none), the slot let go. */
  quiet(): void {
    this.hookLabels?.quiet();
    this.labelSlot[0] = undefined;
  }

  /** The samples so far; the next ones start a new recording (and a new frame table). */
  take(): RecordedSamples {
    const taken = this.recording;
    this.recording = emptyRecording();
    this.frameIds = new Map();
    return taken;
  }

  /** No sample after it, and the label hooks off (the samples taken keep the labels they recorded). */
  private stopSampling(): void {
    this.native.stop();
    clearInterval(this.drainTimer);
    this.drainTimer = undefined;
    this.quiet();
  }

  /** Moves the addon's waiting samples into the recording: stacks formatted, labels read from their frames. */
  private drain(): void {
    const flat = this.native.drain();
    if (flat.length === 0) return;
    const recording = this.recording;
    const prepare = Error.prepareStackTrace;
    try {
      Error.prepareStackTrace = (_error, sites) => sites;
      for (let i = 0; i + 2 < flat.length; i += 3) {
        const sites = (flat[i] as { stack?: unknown }).stack;
        if (!Array.isArray(sites)) continue;
        const context = flat[i + 1];
        const labels =
          this.labelStorage !== undefined
            ? storeIn(context, this.labelStorage)
            : context instanceof ProfileLabels
              ? context
              : undefined;
        const stack: number[] = [];
        for (const site of sites as CallSite[]) {
          // Frames of the awaits that led here (V8's async stack traces) are not on the thread's stack.
          if (site.isAsync?.() === true) break;
          stack.push(this.frameId(site));
        }
        recording.stacks.push(stack);
        recording.cpuNanos.push(flat[i + 2] as number);
        recording.labels.push(labels);
      }
    } finally {
      Error.prepareStackTrace = prepare;
    }
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
 * The value `storage` has in an AsyncContextFrame (Node's frames are Maps from storage to value, though not
 * instances of this realm's Map), or undefined.
 */
export function storeIn<T>(frame: unknown, storage: AsyncLocalStorage<T>): T | undefined {
  if (typeof frame !== 'object' || frame === null) return undefined;
  try {
    return Map.prototype.get.call(frame, storage) as T | undefined;
  } catch {
    return undefined;
  }
}

/**
 * The recording as a pprof `Profile` in the contract's shape (PROFILE-CONTRACT.md): sample types
 * `[samples/count, cpu/nanoseconds]`, one function per (name, file, start line and column), one location per
 * frame (function and line), stacks leaf first, labels from `labelsOf`.
 */
export function recordingToProfile(
  recorded: RecordedSamples,
  labelsOf: SampleLabelsOf,
  window: RecordedWindow & { intervalMicros: number },
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
