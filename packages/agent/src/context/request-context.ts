import { AsyncLocalStorage } from 'node:async_hooks';
import type { BackendTimes } from '../backend/times';
import type { ProfileLabels } from '../profile/labels';

/**
 * Everything the agent knows about one sampled request. Created only for
 * sampled requests: an unsampled request costs the agent one sampler check.
 */
export class RequestContext {
  /** CPU cost charged so far, in the counter's metric units. Written only by CpuAttributor. */
  cost = 0;
  /** Number of times the request got the CPU back (callbacks that started a new slice). */
  slices = 0;
  /** Set once the response finished or the connection closed; later work is not charged. */
  ended = false;
  /** `METHOD route-template`, set by the framework adapter when it knows the route. */
  endpoint: string | undefined;
  /** Set once the sample was built (at `finish` or `close`, whichever came first). */
  completed = false;
  /** Flags evaluated during the request, key → variant; undefined until the first one. */
  flags: Map<string, string> | undefined = undefined;
  /** Wall time in db, cache and http calls; set when the request starts (backend/calls.ts). */
  backend: BackendTimes | undefined;
  /** Flags refused because the request already had {@link MAX_FLAGS_PER_REQUEST}. */
  flagsDropped = 0;
  /** The profiler's labels of this request, when the profiler was recording as it started. */
  profileLabels: ProfileLabels | undefined = undefined;
  /** The framework's way to name the route once it has routed the request, and what it reads. */
  private routeResolver: ((source: unknown) => string | undefined) | undefined;
  private routeSource: unknown;

  constructor(
    /** HTTP method, upper case. */
    readonly method: string,
    /** Wall-clock start, ms since the epoch (the sample's `ts`). */
    readonly startedAtMs: number,
    /** Monotonic start, ms (performance.now()), for wall time. */
    readonly startedAtMonotonicMs: number,
  ) {}

  /** Set by the adapter that knows the framework (the innermost one wins). */
  setRouteResolver<S>(resolver: (source: S) => string | undefined, source: S): void {
    this.routeResolver = resolver as (source: unknown) => string | undefined;
    this.routeSource = source;
  }

  get hasRouteResolver(): boolean {
    return this.routeResolver !== undefined;
  }

  /** The framework's route template, or undefined when no route matched. May throw: it is framework code. */
  resolveRoute(): string | undefined {
    return this.routeResolver?.(this.routeSource);
  }
}

/** Flags beyond this many in one request are counted, not kept: a loop over flags must not grow a sample unboundedly. */
export const MAX_FLAGS_PER_REQUEST = 64;

/**
 * The store that follows a sampled request across await, timers and callbacks.
 * One per process: contexts from two agents must never mix.
 */
export const requestStorage = new AsyncLocalStorage<RequestContext>();

/**
 * Whether AsyncLocalStorage propagates through an async_hooks init hook (Node.js
 * 20 and 22) rather than through V8's continuation-preserved data
 * (AsyncContextFrame, default from Node.js 24). Only the former costs every
 * callback while enabled, so only then is it worth disabling between samples.
 */
export const storageUsesAsyncHooks: boolean = (() => {
  const major = Number(process.versions.node.split('.')[0]);
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (major >= 24) return flags.includes('--no-async-context-frame');
  return !flags.includes('--experimental-async-context-frame');
})();

/**
 * The async context of the process as it was when the agent loaded: no request, no profiler labels
 * (a snapshot of every AsyncLocalStorage at once, taken before any request ran).
 */
const processContext: <R>(fn: () => R) => R = AsyncLocalStorage.snapshot();

/**
 * Runs `fn` — and every callback it schedules — outside every request: not in the sampled request's
 * context (its CPU and backend time are nobody's), and without the profiler's labels, which live in
 * storages of their own (ours on the async-hooks path, the profiler library's on Node 24).
 * `requestStorage.exit()` cleared only the first: a batch flush scheduled at the end of a labelled
 * request carried its endpoint label into the export, and the demo's profile endpoint "regressed" in
 * zlib's processChunk. The agent's own background work (flushes, exports, idle checks) starts here.
 */
export function outsideRequests<R>(fn: () => R): R {
  return processContext(fn);
}

/** The sampled request whose code is running now, if any. */
export function currentRequest(): RequestContext | undefined {
  return requestStorage.getStore();
}
