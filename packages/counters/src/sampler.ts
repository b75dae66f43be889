import path from 'node:path';

/**
 * What the interrupt sampler addon (sampler/sampler.cc) exports: a stack sampler that does not use V8's CPU
 * profiler. A timer thread asks V8 to interrupt the JavaScript thread every `intervalMicros` on average (±50%
 * jitter); at the thread's next safe point (a function entry or a loop's back edge) the interrupt records, without
 * running any JavaScript, the thread CPU time since the previous sample, the stack (captured as for an Error:
 * read it from the holder's `stack` with `Error.prepareStackTrace`) and what tells the running request: element 0
 * of the label slot given to `start()`, else the AsyncContextFrame of the running code (V8 13: Node 24).
 * Needs V8 11 (Node 20): elsewhere `supported()` is false and `start()` throws.
 */
export interface InterruptSampler {
  supported(): boolean;
  /**
   * Starts sampling (restarts with the new settings if running). Samples not drained beyond `maxWaiting` are dropped
   * (`dropped()`). `errorConstructor`: `Error`, whose `stackTraceLimit` is raised for the capture only. `labelSlot`:
   * an array whose element 0 each sample records (keep it set: a hole would be looked up on `Array.prototype`);
   * without it, samples record the AsyncContextFrame (undefined before V8 13).
   */
  start(intervalMicros: number, maxWaiting: number, errorConstructor: ErrorConstructor, labelSlot?: unknown[]): void;
  /** No sample after it returns; samples not yet drained stay. Idempotent. */
  stop(): void;
  /**
   * The samples since the last drain: `[stackHolder, context, cpuNanos, stackHolder, context, cpuNanos, …]`, where
   * `context` is the label slot's element 0 or the AsyncContextFrame (see `start()`).
   */
  drain(): unknown[];
  /** Samples taken, and dropped for want of a drain, since the addon loaded in this thread. */
  samples(): number;
  dropped(): number;
  /** Thread CPU spent inside the sampler's interrupts since the addon loaded in this thread, ns: its own cost there. */
  interruptNanos(): number;
  /** The calling thread's CPU time, ns: the clock samples are weighted by. */
  threadCpuNanos(): number;
  /** Inside `AsyncLocalStorage.run()`: whether it is backed by AsyncContextFrame and this build reads it (Node 24). */
  hasContinuationData(): boolean;
}

/** Where the build for the running Node.js lives: the addon uses V8's C++ API, so one build per ABI. */
export function samplerBuildPath(abi: string = process.versions.modules): string {
  return path.join(__dirname, '..', '..', 'sampler', `abi-${abi}`, 'ergometer_sampler.node');
}

/**
 * Loads the interrupt sampler built at install for this Node.js. Never throws: a missing build (the addon was
 * built by another Node.js version, or not at all) yields an error that says how to build it, and a V8 too old
 * for it (Node 20, 22) one that says so.
 */
export function loadInterruptSampler(
  abi: string = process.versions.modules,
): { sampler: InterruptSampler } | { sampler: null; loadError: Error } {
  const file = samplerBuildPath(abi);
  try {
    const sampler = require(file) as InterruptSampler;
    if (sampler.supported()) return { sampler };
    return {
      sampler: null,
      loadError: new Error(
        `the interrupt sampler needs V8 11 or later (Node.js 20): this is Node.js ${process.version}, V8 ${process.versions.v8}`,
      ),
    };
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? 'not built' : (error as Error).message;
    return {
      sampler: null,
      loadError: new Error(
        `the interrupt sampler is not available for Node.js ${process.version} (ABI ${abi}): ${reason}; ` +
          'build it with `node node_modules/@ergometer/counters/scripts/build-native.js --sampler` using this Node.js',
      ),
    };
  }
}
