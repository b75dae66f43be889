/**
 * The `v8` sampler: V8's sampling CPU profiler driven by @datadog/pprof (a signal handler samples the
 * JavaScript thread at the exact instruction). Loaded only when the profiler uses it (profile.sampler), so a
 * process on the interrupt sampler never loads that addon.
 *
 * How a sample finds its request. The library's signal handler reads a "sample context" at each sample and
 * keeps a reference to it; we make that context the request's {@link ProfileLabels}, and read it only when the
 * profile is serialized (so an endpoint named when the response ends, or a flag recorded later, still labels
 * earlier samples).
 *  - AsyncContextFrame (Node 24, Node 22 with --experimental-async-context-frame): the context lives in V8's
 *    continuation-preserved embedder data, which follows await and callbacks by itself; the agent sets it once
 *    per request (`runWithContext`). No async hook.
 *  - Otherwise (Node 20, Node 22 by default): the context is one global slot, so it must be switched on every
 *    async boundary: {@link HookLabels} puts the running callback's labels there from an async_hooks `before`
 *    hook, enabled only while the profiler records.
 */
import { time } from '@datadog/pprof';
import { isAsyncContextFrameActive } from '@datadog/pprof/out/src/async-context-frame';
import type { Profile } from 'pprof-format';
import { HookLabels } from './hook-labels';
import { ProfileLabels } from './labels';
import { rewriteForContract } from './pprof-rewrite';
import type { ContextPath, EndedWindow, Recorder, SampleLabelsOf } from './recorder';

/** Holder of the labels in the Node 20 path: one per stretch between two samples (see setLabels). */
interface LabelsHolder {
  labels: ProfileLabels | undefined;
}

export class V8Recorder implements Recorder {
  readonly sampler = 'v8';
  readonly contextPath: ContextPath;
  /** Node 20 path: the labels of the running code, following it through async_hooks. */
  private readonly hookLabels: HookLabels | undefined;
  private holder: LabelsHolder = { labels: undefined };
  private holderSampleCount = -1;
  private sampleCounts: Uint32Array | undefined;
  private readonly kSampleCount: number = time.constants.kSampleCount as number;

  constructor() {
    let acf = false;
    try {
      acf = isAsyncContextFrameActive();
    } catch {
      // A build of the addon without the probe: take the path that works everywhere.
    }
    this.contextPath = acf ? 'async-context-frame' : 'async-hooks';
    if (!acf) this.hookLabels = new HookLabels((labels) => this.setLabels(labels));
  }

  runLabelled<T>(labels: ProfileLabels, fn: () => T): T {
    if (this.hookLabels === undefined) return time.runWithContext(labels, fn);
    return this.hookLabels.run(labels, fn);
  }

  currentLabels(): ProfileLabels | undefined {
    if (this.hookLabels !== undefined) return this.hookLabels.current();
    const context: unknown = time.getContext();
    return context instanceof ProfileLabels ? context : undefined;
  }

  begin(intervalMicros: number, windowMs: number): void {
    time.start({
      intervalMicros,
      // Sizes the library's buffer of per-sample contexts (2 × window / interval): samples beyond it lose
      // their labels, which bounds memory.
      durationMillis: windowMs,
      withContexts: true,
      collectCpuTime: true,
      // Async ids are read in the signal handler; that path crashed processes (pprof-nodejs #304). Off.
      collectAsyncId: false,
      useCPED: this.contextPath === 'async-context-frame',
    });
    if (this.hookLabels !== undefined) {
      this.sampleCounts = time.getState() as Uint32Array;
      this.holder = { labels: undefined };
      this.holderSampleCount = -1;
      this.hookLabels.enable();
    }
  }

  end(restart: boolean, labelsOf: SampleLabelsOf): EndedWindow {
    if (!restart) this.quiet();
    const profile: Profile = time.stop(
      restart,
      (args) => {
        const context = args.context?.context as object | undefined;
        return labelsOf(context instanceof ProfileLabels ? context : (context as LabelsHolder | undefined)?.labels);
      },
      ['endpoint'],
    );
    return { profile, totals: rewriteForContract(profile) };
  }

  abandon(): void {
    this.quiet();
    time.stop(false);
  }

  /** Node 20 path, between windows: the label hooks off (HookLabels.quiet says why). */
  quiet(): void {
    this.hookLabels?.quiet();
    this.sampleCounts = undefined;
  }

  get labelHooksOn(): boolean {
    return this.hookLabels?.on === true;
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
}
