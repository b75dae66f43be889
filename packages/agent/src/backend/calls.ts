import { currentRequest, type RequestContext } from '../context/request-context';
import { channels, publish } from '../diagnostics';
import type { BackendSource, BackendSources } from './sources';
import { type BackendKind, type BackendMs, BackendTimes } from './times';

/**
 * Shared state of the backend instrumentations. Every hook asks {@link startCall}
 * first; outside a sampled request it answers undefined after one comparison
 * (no sampled request in flight) or one AsyncLocalStorage lookup, and the hook
 * calls the library as if it were not there.
 */

const enabledSources: Record<BackendSource, boolean> = {
  http: false,
  undici: false,
  pg: false,
  mysql2: false,
  mongodb: false,
  ioredis: false,
  redis: false,
  memcached: false,
  memjs: false,
};

/** Whether any instrumentation is on: when none is, a request that made no agent.time() call reports no `backend`. */
let anySourceEnabled = false;
let sampledInFlight = 0;
const activityListeners: ((active: boolean) => void)[] = [];

/** Sets which instrumentations may charge calls (the agent's `backend` option). */
export function setEnabledSources(sources: BackendSources): void {
  Object.assign(enabledSources, sources);
  anySourceEnabled = Object.values(enabledSources).some(Boolean);
}

export function isSourceEnabled(source: BackendSource): boolean {
  return enabledSources[source];
}

/** True while at least one sampled request is in flight. */
export function isBackendActive(): boolean {
  return sampledInFlight > 0;
}

/**
 * Calls `listener(true)` when the first sampled request starts and
 * `listener(false)` when the last one ends: the channel subscriptions follow
 * it, so that libraries that trace only when someone listens do no tracing
 * work between sampled requests.
 */
export function onBackendActivity(listener: (active: boolean) => void): void {
  activityListeners.push(listener);
}

/** One backend call being timed for one request. `end` may be called any number of times; the first counts. */
export class BackendCall {
  private done = false;
  constructor(
    private readonly times: BackendTimes,
    private readonly kind: BackendKind,
  ) {}

  /** Ends the call now. A bound arrow: hooks pass it as a listener or promise handler. */
  readonly end = (): void => {
    if (this.done) return;
    this.done = true;
    this.times.end(this.kind, performance.now());
  };
}

/**
 * Starts timing a call of `kind` for the sampled request running now, if any
 * and if `source` is enabled; returns undefined otherwise (the common case,
 * which must stay cheap).
 */
export function startCall(kind: BackendKind, source: BackendSource | undefined): BackendCall | undefined {
  if (sampledInFlight === 0) return undefined;
  if (source !== undefined && !enabledSources[source]) return undefined;
  const ctx = currentRequest();
  const times = ctx?.backend;
  if (times === undefined || ctx!.ended) return undefined;
  times.start(kind, performance.now());
  return new BackendCall(times, kind);
}

/** Starts the accounting of a sampled request. Call once, when it starts. */
export function backendRequestStarted(ctx: RequestContext): void {
  if (ctx.backend !== undefined) return;
  ctx.backend = new BackendTimes();
  if (sampledInFlight++ === 0) notify(true);
}

/**
 * Ends the accounting of a sampled request at `nowMs` (performance.now()) and
 * returns its backend times. Calls still in flight count up to `nowMs`.
 */
export function backendRequestEnded(ctx: RequestContext, nowMs: number): BackendMs | undefined {
  const times = ctx.backend;
  if (times === undefined) return undefined;
  if (!times.isClosed && --sampledInFlight === 0) notify(false);
  const backend = times.close(nowMs);
  // With every instrumentation off, zeros would claim a measurement that was not made.
  return anySourceEnabled || times.calls > 0 ? backend : undefined;
}

function notify(active: boolean): void {
  for (const listener of activityListeners) {
    try {
      listener(active);
    } catch (error) {
      // Runs in the request path: an agent bug must not reach the app.
      publish(channels.internalError, { error });
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * What a timed function hands back to its caller: `result` itself when it is not
 * a promise (the call ends now), else a promise that settles like it once the
 * call has ended. Returning the derived promise, rather than attaching handlers
 * to `result` and returning `result`, keeps the app's unhandled-rejection
 * behaviour as it was: a rejection nobody handles is still reported, and one the
 * app handles is not reported twice. (APM instrumentations of pg do the same.)
 */
export function endWhenSettled<T>(call: BackendCall, result: T): T {
  if (!isThenable(result)) {
    call.end();
    return result;
  }
  try {
    return result.then(
      (value) => {
        call.end();
        return value;
      },
      (error: unknown) => {
        call.end();
        throw error;
      },
    ) as T;
  } catch {
    // A thenable whose then() throws: not a promise we can follow; leave it to the caller.
    call.end();
    return result;
  }
}
