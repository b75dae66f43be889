import { createHook } from 'node:async_hooks';
import type { Counter } from '@ergometer/counters';
import { type RequestContext, requestStorage, storageUsesAsyncHooks } from '../context/request-context';

/**
 * Charges every slice of CPU work on the event loop thread to the sampled
 * request it runs for, and to no other.
 *
 * The event loop runs one callback at a time, and every callback — a timer, an
 * I/O completion, a promise continuation after `await`, a stream event — is
 * bracketed by async_hooks `before` and `after`, with the request's
 * AsyncLocalStorage context already restored at `before`. So the CPU timeline of
 * the thread is a sequence of slices, each owned by one request or by nobody:
 *
 *   counter ──r0──────r1────────────r2──────r3───►
 *   owner       req A    (nobody)      req B   req A …
 *
 * We read the counter where a slice of a sampled request starts and where it
 * ends, and charge the difference to that request. Unsampled requests and the
 * event loop's own work cost no read. Ending slices at `after` (rather than
 * lazily at the next `before`) matters: between two callbacks libuv does work
 * for nobody — it reads the next socket and parses its HTTP bytes *before* that
 * socket's callback starts — and a lazy scheme would bill it to whichever
 * request ran last in a loop phase (measured: +12% on a synchronous endpoint
 * mixed with slow ones).
 *
 * The hooks are enabled only while at least one sampled request is in flight
 * (see WindowSampler): their cost follows the sample rate.
 */
export class CpuAttributor {
  private owner: RequestContext | undefined = undefined;
  private lastReading = 0;
  private inFlight = 0;
  private readonly hook;
  private readonly readCounter: () => number;

  constructor(counter: Counter) {
    this.readCounter = counter.read;
    this.hook = createHook({ before: () => this.onCallbackStart(), after: () => this.onCallbackEnd() });
  }

  /**
   * Starts charging CPU to `ctx`. Call synchronously at the start of the
   * request, from inside `requestStorage.run(ctx, ...)`.
   */
  begin(ctx: RequestContext): void {
    if (this.inFlight++ === 0) this.hook.enable();
    this.switchOwner(ctx);
  }

  /** Stops charging `ctx`: charges its last slice and never charges it again. */
  end(ctx: RequestContext): void {
    if (ctx.ended) return;
    if (this.owner === ctx) this.switchOwner(undefined);
    ctx.ended = true;
    if (--this.inFlight === 0) {
      this.hook.disable();
      this.owner = undefined;
      // On Node 20 and 22 AsyncLocalStorage propagates through an async_hooks
      // init hook that stays on for every later promise once enabled; disabling
      // it when nothing is sampled keeps unsampled traffic free of it. run()
      // enables it again for the next sampled request. (With AsyncContextFrame
      // there is nothing to save, and disable() would edit the current frame.)
      if (storageUsesAsyncHooks) requestStorage.disable();
    }
  }

  /** Requests being charged right now (for tests and metrics). */
  get activeRequests(): number {
    return this.inFlight;
  }

  private onCallbackStart(): void {
    // Runs for every callback while enabled: must be cheap and must not throw
    // (an exception in an async hook is fatal to the process).
    const store = requestStorage.getStore();
    const next = store === undefined || store.ended ? undefined : store;
    if (next !== this.owner) this.switchOwner(next);
  }

  private onCallbackEnd(): void {
    // Same constraints as onCallbackStart. See the class comment for why the
    // slice ends here and not at the next `before`.
    if (this.owner !== undefined) this.switchOwner(undefined);
  }

  private switchOwner(next: RequestContext | undefined): void {
    const reading = this.readCounter();
    const previous = this.owner;
    if (previous !== undefined && reading >= this.lastReading) {
      previous.cost += reading - this.lastReading;
    }
    if (next !== undefined) next.slices++;
    this.lastReading = reading;
    this.owner = next;
  }
}
