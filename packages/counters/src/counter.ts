import { loadNativeCounters, type NativeOpened, type NativeSource } from './bindings';
import { CountersError } from './errors';

/**
 * The unit a counter measures. Values of different metrics are never compared:
 * an instruction count is not a duration.
 */
export type CostMetric = 'instructions' | 'cpu_ns';

/**
 * Where the numbers come from, best first:
 * - `instructions`: hardware retired-instruction counter (user space), via perf_event_open;
 * - `task-clock`: the kernel's per-thread software clock (ns on CPU), via perf_event_open;
 * - `thread-cputime`: clock_gettime(CLOCK_THREAD_CPUTIME_ID), ns on CPU;
 * - `js-cpu-usage`: process.cpuUsage() when the addon cannot load at all. Process-wide
 *   (includes GC and libuv helper threads) and microsecond resolution: a clearly coarser number.
 */
export type CounterSource = NativeSource | 'js-cpu-usage';

/** Which source to use: `auto` takes the first that works, in the order above. */
export type CounterPreference = 'auto' | CounterSource;

/** One source that was tried and did not work, and why. */
export interface CounterFallback {
  source: CounterSource;
  reason: string;
  /** errno from the failed syscall, when there was one (e.g. 2 = ENOENT: no PMU in this VM). */
  errno?: number;
}

/** A per-thread CPU cost counter. Read it before and after a piece of work; the difference is its cost. */
export interface Counter {
  readonly metric: CostMetric;
  readonly source: CounterSource;
  /** True when instructions are read in user space with rdpmc, without a syscall. */
  readonly rdpmc: boolean;
  /** Sources tried before this one, with the reason each was skipped. Empty when the first choice worked. */
  readonly fallbacks: readonly CounterFallback[];
  /** Current value in `metric` units. Monotonic for the calling thread. */
  read(): number;
  /** Releases the file descriptor (if any). Idempotent. Reads after close return -1 (native sources). */
  close(): void;
}

const NATIVE_ORDER: readonly NativeSource[] = ['instructions', 'task-clock', 'thread-cputime'];

const metricOf = (source: CounterSource): CostMetric => (source === 'instructions' ? 'instructions' : 'cpu_ns');

function readCpuUsageNs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) * 1000;
}

/** Options of {@link openCounter}. */
export interface OpenCounterOptions {
  /** Source to use; default `auto`, or the `ERGOMETER_COUNTER` environment variable when set. */
  prefer?: CounterPreference;
  /**
   * When true and `prefer` names a source that does not work, throw
   * `ERGOMETER_COUNTERS_UNAVAILABLE` instead of falling back. Default false.
   */
  strict?: boolean;
}

let cachedNative: ReturnType<typeof loadNativeCounters> | undefined;

/**
 * Opens the best available counter for the calling thread (main thread or a
 * worker: each measures itself). Counters are independent: opening or closing
 * one never affects another. Never throws unless `strict` is set (or
 * `ERGOMETER_COUNTER` is not a source name): when the hardware is not there it
 * falls back and says why in `fallbacks`.
 */
export function openCounter(options: OpenCounterOptions = {}): Counter {
  const prefer =
    options.prefer === undefined ? parsePreference(process.env.ERGOMETER_COUNTER) : checkPrefer(options.prefer);
  cachedNative ??= loadNativeCounters();
  const fallbacks: CounterFallback[] = [];
  // Strict: only the named source; trying the others would open (and leak) a counter we then refuse.
  const candidates: CounterSource[] =
    prefer === 'auto'
      ? [...NATIVE_ORDER, 'js-cpu-usage']
      : options.strict
        ? [prefer]
        : [prefer, ...NATIVE_ORDER.filter((s) => s !== prefer), 'js-cpu-usage'];

  for (const source of candidates) {
    if (source === 'js-cpu-usage') break;
    if (cachedNative.native === null) {
      fallbacks.push({ source, reason: `native addon did not load: ${cachedNative.loadError.message}` });
      continue;
    }
    const opened = cachedNative.native.tryOpen(source);
    if (opened.ok) return nativeCounter(opened, fallbacks);
    fallbacks.push({ source, reason: describeOpenError(source, opened.errno, opened.error), errno: opened.errno });
  }
  if (options.strict && prefer !== 'auto' && prefer !== 'js-cpu-usage') {
    const why = fallbacks.find((f) => f.source === prefer)?.reason ?? 'unavailable';
    throw new CountersError(
      'ERGOMETER_COUNTERS_UNAVAILABLE',
      `counter source "${prefer}" is not available here: ${why}`,
    );
  }
  return jsCounter(fallbacks);
}

function nativeCounter(opened: NativeOpened, fallbacks: CounterFallback[]): Counter {
  return {
    metric: metricOf(opened.source),
    source: opened.source,
    rdpmc: opened.rdpmc,
    fallbacks,
    // The bound native function itself, no wrapper: this is the hot path (N-API call + the syscall).
    read: opened.read,
    close: opened.close,
  };
}

function jsCounter(fallbacks: CounterFallback[]): Counter {
  return { metric: 'cpu_ns', source: 'js-cpu-usage', rdpmc: false, fallbacks, read: readCpuUsageNs, close() {} };
}

function describeOpenError(source: NativeSource, errno: number, error: string): string {
  if (source === 'instructions' && errno === 2) {
    return `${error} (ENOENT: no hardware PMU is exposed, typical of VMs without PMU passthrough)`;
  }
  if (errno === 13 || errno === 1) {
    return `${error} (check /proc/sys/kernel/perf_event_paranoid, seccomp profile or container policy)`;
  }
  if (errno === 38) return `${error} (ENOSYS: the kernel was built without perf events)`;
  return error;
}

/**
 * Parses a counter preference (e.g. from `ERGOMETER_COUNTER`). Undefined or
 * empty means `auto`; anything unknown throws `ERGOMETER_BAD_OPTION` naming it.
 */
export function parsePreference(value: string | undefined): CounterPreference {
  if (value === undefined || value === '') return 'auto';
  if (isPreference(value)) return value;
  throw new CountersError(
    'ERGOMETER_BAD_OPTION',
    `ERGOMETER_COUNTER="${value}" is not a counter source; use one of ${PREFERENCES.join(', ')}`,
  );
}

const PREFERENCES: readonly CounterPreference[] = ['auto', ...NATIVE_ORDER, 'js-cpu-usage'];

function isPreference(value: unknown): value is CounterPreference {
  return (PREFERENCES as readonly unknown[]).includes(value);
}

/** `prefer` from JavaScript callers is unchecked by the compiler: reject it here, not in the addon. */
function checkPrefer(value: unknown): CounterPreference {
  if (isPreference(value)) return value;
  throw new CountersError(
    'ERGOMETER_BAD_OPTION',
    `openCounter({ prefer: ${JSON.stringify(value) ?? String(value)} }) is not a counter source; use one of ${PREFERENCES.join(', ')}`,
  );
}
