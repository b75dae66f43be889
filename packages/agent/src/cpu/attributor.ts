import { AsyncResource, createHook, executionAsyncResource } from 'node:async_hooks';
import type { Counter } from '@ergometer/counters';
import {
  outsideRequests,
  type RequestContext,
  requestStorage,
  storageUsesAsyncHooks,
} from '../context/request-context';

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
 * (see WindowSampler): their cost follows the sample rate. They are turned off
 * one event-loop turn after the last sampled request ends, not at once: under
 * steady sampled traffic the next one usually starts within that turn, and
 * turning async_hooks and AsyncLocalStorage off and on again between two
 * requests (re-installing V8's promise hooks each time) costs more than
 * leaving them on for it (measured: 15% of requests at sampleRate 1 and 10
 * connections found nothing in flight when they started).
 */
export class CpuAttributor {
  private owner: RequestContext | undefined = undefined;
  /**
   * Owners of the callbacks we are nested in. Callbacks nest when native code
   * calls back into JS synchronously from inside another callback (the HTTP
   * parser inside a TLS socket's data handler, for one); at the inner `after`
   * the outer callback's owner gets the CPU back.
   */
  private readonly outerOwners: (RequestContext | undefined)[] = [];
  private lastReading = 0;
  private inFlight = 0;
  /** Whether the hooks are on: they stay on for one turn of the event loop after inFlight drops to 0. */
  private hooksOn = false;
  /** A pending check that turns the hooks off if nothing sampled started since. */
  private idleCheck: NodeJS.Immediate | undefined = undefined;
  private readonly hook;
  private readonly readCounter: () => number;

  /**
   * With AsyncContextFrame (Node 24), AsyncResource.runInAsyncScope() emits
   * `before` *before* it restores the resource's context, so getStore() there
   * still answers for the enclosing callback. For those resources — pools and
   * drivers keep them — we remember at creation whose they are. Node 20 and 22
   * restore the context first and need none of this.
   */
  private readonly userResourceOwners = storageUsesAsyncHooks ? undefined : new WeakMap<object, RequestContext>();

  constructor(counter: Counter) {
    this.readCounter = counter.read;
    const owners = this.userResourceOwners;
    this.hook = createHook({
      before: () => this.onCallbackStart(),
      after: () => this.onCallbackEnd(),
      ...(owners && {
        init(_asyncId: number, _type: string, _trigger: number, resource: object) {
          if (!(resource instanceof AsyncResource)) return;
          const store = requestStorage.getStore();
          if (store !== undefined) owners.set(resource, store);
        },
      }),
    });
  }

  /**
   * Starts charging CPU to `ctx`. Call synchronously at the start of the
   * request, from inside `requestStorage.run(ctx, ...)`.
   */
  begin(ctx: RequestContext): void {
    if (this.inFlight++ === 0 && !this.hooksOn) {
      this.hook.enable();
      this.hooksOn = true;
    }
    this.switchOwner(ctx);
  }

  /** Stops charging `ctx`: charges its last slice and never charges it again. */
  end(ctx: RequestContext): void {
    if (ctx.ended) return;
    if (this.owner === ctx) this.switchOwner(undefined);
    ctx.ended = true;
    if (--this.inFlight === 0) {
      // The stack of outer owners stays: the `after`s of the callbacks we are in still come.
      // Outside any request's context, so that the check holds on to none.
      this.idleCheck ??= outsideRequests(() => setImmediate(this.turnOffIfIdle).unref());
    }
  }

  /** Turns the hooks off unless a sampled request started since the last one ended. */
  private readonly turnOffIfIdle = (): void => {
    this.idleCheck = undefined;
    if (this.inFlight > 0 || !this.hooksOn) return;
    this.hook.disable();
    this.hooksOn = false;
    // This callback's own `after` will not come: the hooks are off now.
    this.owner = undefined;
    this.outerOwners.length = 0;
    // On Node 20 and 22 AsyncLocalStorage propagates through an async_hooks
    // init hook that stays on for every later promise once enabled; disabling
    // it when nothing is sampled keeps unsampled traffic free of it. run()
    // enables it again for the next sampled request. (With AsyncContextFrame
    // there is nothing to save, and disable() would edit the current frame.)
    if (storageUsesAsyncHooks) requestStorage.disable();
  };

  /** Requests being charged right now (for tests and metrics). */
  get activeRequests(): number {
    return this.inFlight;
  }

  private onCallbackStart(): void {
    // Runs for every callback while enabled: must be cheap and must not throw
    // (an exception in an async hook is fatal to the process).
    let store = requestStorage.getStore();
    if (this.userResourceOwners !== undefined) {
      const resource = executionAsyncResource();
      if (resource instanceof AsyncResource) store = this.userResourceOwners.get(resource);
    }
    const next = store === undefined || store.ended ? undefined : store;
    // Bounded: a stack this deep means `after`s were lost (they are not, even on
    // uncaught exceptions, but an agent must not grow without limit on a bug).
    if (this.outerOwners.length < 1024) this.outerOwners.push(this.owner);
    if (next !== this.owner) this.switchOwner(next);
  }

  private onCallbackEnd(): void {
    // Same constraints as onCallbackStart. See the class comment for why the
    // slice ends here and not at the next `before`. At top level the outer
    // owner is nobody; inside a nested callback it is the enclosing one's.
    const outer = this.outerOwners.pop();
    const next = outer === undefined || outer.ended ? undefined : outer;
    if (next !== this.owner) this.switchOwner(next);
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
