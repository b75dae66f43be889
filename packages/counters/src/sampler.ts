import path from 'node:path';

/**
 * What the interrupt sampler addon (sampler/sampler.cc) exports: a stack sampler that does not use V8's CPU
 * profiler. A timer thread asks V8 to interrupt the JavaScript thread every `intervalMicros` on average (±50%
 * jitter); at the thread's next safe point (a function entry or a loop's back edge) V8 calls `onSample` with the
 * thread CPU time since the previous sample, and `onSample` reads the stack (`Error.captureStackTrace`) and
 * whatever else it needs as the interrupted code sees it. Its own cost is not charged to the next sample.
 */
export interface InterruptSampler {
  /** Starts sampling (restarts with the new settings if running). Throws a TypeError on bad arguments. */
  start(intervalMicros: number, onSample: (cpuNanos: number) => void): void;
  /** No sample after it returns. Idempotent. */
  stop(): void;
  /** Samples taken since the addon loaded in this thread. */
  samples(): number;
  /** The calling thread's CPU time, ns: the clock samples are weighted by. */
  threadCpuNanos(): number;
  /** Inside `AsyncLocalStorage.run()`: whether it is backed by AsyncContextFrame (Node 24). */
  hasContinuationData(): boolean;
}

/** Where the build for the running Node.js lives: the addon uses V8's C++ API, so one build per ABI. */
export function samplerBuildPath(abi: string = process.versions.modules): string {
  return path.join(__dirname, '..', '..', 'sampler', `abi-${abi}`, 'ergometer_sampler.node');
}

/**
 * Loads the interrupt sampler built at install for this Node.js. Never throws: a missing build (the addon was
 * built by another Node.js version, or not at all) yields an error that says how to build it.
 */
export function loadInterruptSampler(
  abi: string = process.versions.modules,
): { sampler: InterruptSampler } | { sampler: null; loadError: Error } {
  const file = samplerBuildPath(abi);
  try {
    return { sampler: require(file) as InterruptSampler };
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
