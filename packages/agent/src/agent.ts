import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Counter, type CounterFallback, openCounter } from '@ergometer/counters';
import { expressMiddleware, fastifyPlugin, honoMiddleware, koaMiddleware } from './adapters/frameworks';
import { expressRouteOf } from './adapters/routes';
import { backendRequestEnded, backendRequestStarted } from './backend/calls';
import { installBackendInstrumentation, timeBackendCall } from './backend/instrumentation';
import type { BackendKind } from './backend/times';
import { EndpointCardinalityGuard, endpointName, templateFromPath } from './context/endpoint';
import { currentRequest, MAX_FLAGS_PER_REQUEST, RequestContext, requestStorage } from './context/request-context';
import { CpuAttributor } from './cpu/attributor';
import { channels, publish } from './diagnostics';
import { ErgometerError } from './errors';
import { installExitFlush } from './exit-flush';
import { Batcher } from './export/batcher';
import { FileExporter } from './export/file-exporter';
import { HttpExporter, type RetryPolicy } from './export/http-exporter';
import type { Exporter, ProfileUpload, WireSample } from './export/wire';
import { createOpenFeatureHook, type OpenFeatureHook } from './flags/openfeature';
import { type AgentOptions, detectHostClass, type ResolvedOptions, resolveOptions } from './options';
import { type ProcessChoice, ProfilingCheckIns, type ProfilingDecision } from './profile/coordination';
import { ProfileLabels } from './profile/labels';
import type { CollectedProfile, ContextPath, Profiler, ProfileSchedule, SamplerKind } from './profile/profiler';
import { ProfileShipper } from './profile/shipper';
import { WindowSampler } from './sampling/window-sampler';
import { RequestTotals, userHashKeyFor } from './totals/request-totals';
import { AGENT_VERSION } from './version';

/**
 * Returns the route template of a request once the framework has routed it, or undefined if no
 * route matched. Called with the `routeSource` given beside it (e.g. the framework's context).
 */
export type RouteResolver<S = undefined> = (routeSource: S) => string | undefined;

/**
 * The context of each sampled request, so that two layers (register + a framework adapter) never measure it twice.
 * A WeakMap, not a property on `req`: in an Express app every request object has a map (hidden class) of its own,
 * so every property read on it misses V8's inline caches (~1,400 instructions in the runtime); a WeakMap lookup of
 * an object never stored in one is a few dozen. Only sampled requests are stored; an unsampled one is marked by its
 * counting listener (see countUnsampled).
 */
const requestStates = new WeakMap<IncomingMessage, RequestContext>();
const ALREADY_RUNNING = Symbol('ergometer.already-running');
/** An outer layer found the request unsampled and counts it. */
const COUNTED_ABOVE = Symbol('ergometer.counted-above');

/**
 * A `close` listener that counts an unsampled request under a framework's route: the agent's
 * {@link Agent.countClosed} is its `listener`, as Node's `once()` wrappers carry theirs, so that
 * `res.listenerCount('close', countClosed)` and `res.removeListener('close', countClosed)` find it too.
 */
type CountingListener = (() => void) & { listener?: (this: ServerResponse) => void };

/**
 * EventEmitter's methods, called on the response as they are, not looked up on it: in an Express app every
 * response has a map of its own, so `res.on` misses V8's inline caches and is looked up in the runtime, six
 * prototypes up the response's chain (Express's two, ServerResponse, OutgoingMessage, Stream, EventEmitter), on
 * every request. The response is an EventEmitter all the same.
 */
const { on: eventOn, removeListener: eventRemoveListener, listenerCount: eventListenerCount } = EventEmitter.prototype;

/** Whether an outer layer counts this unsampled request: its close listener is the agent's countClosed. */
function isCountedAbove(res: ServerResponse, countClosed: (this: ServerResponse) => void): boolean {
  return eventListenerCount.call(res, 'close', countClosed) > 0;
}

let runningAgent: Agent | undefined;

/**
 * A running agent. Create it with {@link start}; plug it into the server with one of its
 * adapters (`express()`, `fastify`, `koa()`, `hono()`, `http()`).
 */
export class Agent {
  /** The unit of every `cost` this agent reports. */
  readonly metric: Counter['metric'];
  /** Which counter measures it, and what was tried before it. */
  readonly counter: {
    readonly source: Counter['source'];
    readonly rdpmc: boolean;
    readonly fallbacks: readonly CounterFallback[];
  };
  readonly options: Readonly<ResolvedOptions>;

  private readonly cpu: Counter;
  private readonly attributor: CpuAttributor;
  private readonly sampler: WindowSampler;
  private readonly batcher: Batcher;
  private readonly exporter: Exporter;
  private readonly totals: RequestTotals;
  private readonly uninstallExitFlush: () => void;
  private readonly endpoints = new EndpointCardinalityGuard();
  private running = true;
  private fastifyPluginInstance: ReturnType<typeof fastifyPlugin> | undefined;
  /**
   * Undefined unless `profile.enabled` (and this process drew its `processFraction`, or the collector has not
   * said no): then nothing of it is loaded.
   */
  private profiler: Profiler | undefined;
  private profiles: ProfileShipper | undefined;
  /** How this process came to profile or not; undefined when the profiler is off. */
  private processChoice: ProcessChoice | undefined;
  /** Check-ins with the collector (`processFraction: "collector"`). */
  private readonly checkIns: ProfilingCheckIns | undefined;

  /**
   * @internal use {@link start}. `internals.counter` replaces the CPU counter: the exact-attribution
   * test drives the agent with a counter that advances only when known work is done. `internals.retry`
   * shrinks the HTTP exporter's backoff: the fault-injection tests compress a 10-minute outage.
   */
  constructor(options: ResolvedOptions, internals: { counter?: Counter; retry?: Partial<RetryPolicy> } = {}) {
    this.options = options;
    this.exporter = createExporter(options, internals.retry);
    this.cpu = internals.counter ?? openCounter({ prefer: options.counter });
    this.metric = this.cpu.metric;
    this.counter = { source: this.cpu.source, rdpmc: this.cpu.rdpmc, fallbacks: this.cpu.fallbacks };
    publish(channels.counterSelected, { source: this.cpu.source, metric: this.metric, fallbacks: this.cpu.fallbacks });
    if (this.cpu.source === 'js-cpu-usage') {
      process.emitWarning(
        'the @ergometer/counters addon is not available, so CPU cost is measured with process.cpuUsage(): ' +
          'process-wide and at microsecond resolution. Reinstall @ergometer/counters with a C compiler to fix. ' +
          `(${this.cpu.fallbacks.map((f) => f.reason).join('; ')})`,
        { code: 'ERGOMETER_COUNTERS_FALLBACK' },
      );
    }
    this.attributor = new CpuAttributor(this.cpu);
    installBackendInstrumentation(options.backend);
    const highestRate = Math.max(options.sampleRate, ...options.endpointSampleRates.values());
    this.sampler = new WindowSampler(highestRate, options.sampleWindowMs);
    this.totals = new RequestTotals(
      options.userId === undefined ? undefined : userHashKeyFor(options.service, options.userHashKey),
      () => this.batcher.notePending(),
    );
    this.batcher = new Batcher(
      {
        v: 1,
        service: options.service,
        host: options.host,
        region: options.region,
        commit: options.commit,
        metric: this.metric,
        agent: { version: AGENT_VERSION, runtime: `node ${process.version}`, counter: this.cpu.source },
        hostClass: detectHostClass(),
      },
      this.exporter,
      options,
      this.totals,
    );
    const { processFraction } = options.profile;
    if (options.profile.enabled && (processFraction === 'collector' || Math.random() < processFraction)) {
      this.profiles = new ProfileShipper(this.exporter);
      this.profiler = loadProfiler(options, this.profiles);
      if (this.profiler !== undefined && processFraction === 'collector' && this.exporter instanceof HttpExporter) {
        // Loaded, not started: a process the collector does not choose never puts V8 in its profiling mode.
        // The answer comes in milliseconds, before the app is busy (a late start misses code compiled by OSR).
        this.processChoice = 'pending';
        this.checkIns = new ProfilingCheckIns(this.exporter, options, options.profile.periodMs, (decision) =>
          this.profilingChosen(decision),
        );
        this.checkIns.start();
      } else if (this.profiler !== undefined) {
        this.processChoice = 'fraction';
        this.startProfiler();
      }
    }
    const { batcher, totals } = this;
    const profilesPending = () => this.profiler?.active === true || this.profiles?.pending === true;
    this.uninstallExitFlush =
      options.exitFlushTimeoutMs > 0
        ? installExitFlush(
            {
              get hasPending() {
                return batcher.queuedBytes > 0 || totals.pending || profilesPending();
              },
              // The process is ending: the profile of the window so far goes too.
              flushWithin: async (timeoutMs) => {
                await Promise.all([batcher.flushWithin(timeoutMs), this.flushProfiles(timeoutMs)]);
              },
            },
            options.exitFlushTimeoutMs,
          )
        : () => undefined;
  }

  /**
   * Runs `handler` as the request `req`: if the request is sampled, every piece of CPU work done
   * on its behalf — in `handler`, after its `await`s, in its timers and I/O callbacks — is charged
   * to it until the response finishes. Returns what `handler` returns; exceptions pass through
   * untouched. Calling it again for the same request (two layers of instrumentation) only adds
   * the route resolver.
   *
   * `route(routeSource)` names the route once the framework has routed the request; passing the
   * function and its argument separately lets adapters allocate nothing for unsampled requests.
   * This is what the framework adapters are made of; use it directly for a framework without one.
   */
  runRequest<T, S = undefined>(
    req: IncomingMessage,
    res: ServerResponse,
    handler: () => T,
    route?: RouteResolver<S>,
    routeSource?: S,
  ): T {
    const profiler = this.profiler;
    if (profiler?.active === true) {
      // An outer layer's labels are the context this layer runs in (nothing is written on req: see countUnsampled).
      const existing = profiler.currentLabels();
      if (existing?.isFor(req)) {
        if (route !== undefined) existing.setRouteResolver(route, routeSource as S);
        return this.measureRequest(req, res, handler, route, routeSource, existing);
      }
      // A request gets labels (sampled or not) with probability profile.labelFraction, drawn by the first layer
      // that sees it: an inner layer that finds an outer one takes no labels of its own, whatever it drew (the
      // draw is tested first, being the cheaper test for most requests; the odds are the same). One handled
      // inside another request's labels always gets its own, or it would wear those. The labels are finished
      // where the request's endpoint is known.
      if (existing !== undefined || (profiler.drawLabels() && !this.seenAbove(req, res))) {
        const labels = new ProfileLabels(req.method ?? 'GET', req);
        if (route !== undefined) labels.setRouteResolver(route, routeSource as S);
        return profiler.runLabelled(labels, () => this.measureRequest(req, res, handler, route, routeSource, labels));
      }
    }
    return this.measureRequest(req, res, handler, route, routeSource, undefined);
  }

  private measureRequest<T, S>(
    req: IncomingMessage,
    res: ServerResponse,
    handler: () => T,
    route: RouteResolver<S> | undefined,
    routeSource: S | undefined,
    labels: ProfileLabels | undefined,
  ): T {
    // A resolver given without a source takes `undefined` (S defaults to undefined).
    const ctx = this.decide(req, res, route, routeSource as S);
    if (ctx === undefined || ctx === COUNTED_ABOVE) {
      if (this.running) this.count(req, res, ctx === COUNTED_ABOVE, route, routeSource, labels);
      return handler();
    }
    if (ctx === ALREADY_RUNNING) {
      // Measured by an outer layer that ran before the profiler started recording: these labels are its.
      if (labels !== undefined) {
        const running = requestStates.get(req);
        if (running !== undefined) running.profileLabels ??= labels;
      }
      return handler();
    }
    ctx.profileLabels = labels;
    return requestStorage.run(ctx, () => {
      this.attributor.begin(ctx);
      backendRequestStarted(ctx);
      return handler();
    });
  }

  /**
   * Whether an outer layer of instrumentation has decided for this request already: it measures it (its
   * context is in requestStates) or counts it (its close listener is on res). See decide().
   */
  private seenAbove(req: IncomingMessage, res: ServerResponse): boolean {
    return requestStates.get(req) !== undefined || isCountedAbove(res, this.countClosed);
  }

  /** @internal Cheap pre-check for adapters: false means "not measured, skip the agent entirely". */
  wantsRequest(req: IncomingMessage): boolean {
    return (
      requestStates.get(req) !== undefined ||
      (this.running && (this.sampler.shouldSample() || this.profiler?.active === true))
    );
  }

  /**
   * The sampling decision for `req`, made once per request. Returns the new context of a request
   * to start measuring, ALREADY_RUNNING when an outer layer measures it, COUNTED_ABOVE when an outer layer
   * found it unsampled and counts it, or undefined (not sampled). Deciding an unsampled request costs a look
   * at its response's `close` listeners and one clock comparison, and allocates nothing.
   */
  private decide<S>(
    req: IncomingMessage,
    res: ServerResponse,
    route: RouteResolver<S> | undefined,
    routeSource: S,
  ): RequestContext | typeof ALREADY_RUNNING | typeof COUNTED_ABOVE | undefined {
    const existing = requestStates.get(req);
    if (existing !== undefined) {
      // An outer layer decided already, and the handler runs in its context;
      // the inner layer knows the route better.
      if (route !== undefined) existing.setRouteResolver(route, routeSource);
      return ALREADY_RUNNING;
    }
    if (!this.running) return undefined;
    // An outer layer found it unsampled and counts it (at a sampling window's very edge the two could
    // disagree): that decision stands.
    if (isCountedAbove(res, this.countClosed)) return COUNTED_ABOVE;
    if (!this.sampler.shouldSample()) return undefined;
    try {
      const ctx = new RequestContext(req.method ?? 'GET', Date.now(), performance.now());
      requestStates.set(req, ctx);
      if (route !== undefined) ctx.setRouteResolver(route, routeSource);
      this.watchResponse(ctx, req, res);
      return ctx;
    } catch (error) {
      publish(channels.internalError, { error });
      return undefined;
    }
  }

  /**
   * Records that the current request saw feature flag `key` with `variant`. Outside a sampled
   * request it does nothing. At most 64 flags per request are kept; more are counted.
   */
  flag(key: string, variant: string | boolean | number): void {
    if (this.profiler !== undefined) this.labelFlag(this.profiler, key, variant);
    const ctx = currentRequest();
    if (ctx === undefined || ctx.ended) return;
    // Allocated at the first flag: most requests evaluate none.
    ctx.flags ??= new Map();
    const flags = ctx.flags;
    if (flags.size >= MAX_FLAGS_PER_REQUEST && !flags.has(key)) {
      ctx.flagsDropped++;
      return;
    }
    flags.set(String(key), String(variant));
  }

  /** Adds the flag to the profiler's labels of the running request, with the same cap as the sample's flags. */
  private labelFlag(profiler: Profiler, key: string, variant: string | boolean | number): void {
    try {
      const labels = profiler.currentLabels();
      if (labels === undefined) return;
      labels.flags ??= new Map();
      if (labels.flags.size >= MAX_FLAGS_PER_REQUEST && !labels.flags.has(key)) return;
      labels.flags.set(String(key), String(variant));
    } catch (error) {
      publish(channels.internalError, { error });
    }
  }

  /**
   * Where the profiler stands: undefined when it is off (or this process was not drawn by
   * `profile.processFraction`, or the collector chose other processes); else whether a profile is being
   * recorded now, what takes the samples (`interrupt`, the default; `v8`, V8's CPU profiler; with
   * `samplerFallback` saying why `auto` did not take the interrupt sampler), how request labels follow async work
   * (`async-context-frame` on Node 24, `async-hooks` on Node 20), and how the duty cycle is realised (`windows`;
   * `continuous` at a longer sampling interval with V8's profiler from Node 22 on).
   * `labelFraction`: the fraction of requests labelled while it records (profile.labelFraction after defaults).
   * `labelHooks`: whether the profiler's async_hooks (its `before` hook and label storage, `async-hooks`
   * path only) are on now; off between windows, so the process pays for them only while recording.
   * `chosenBy`: `fraction` (drawn here by `processFraction`), `pending` (asked the collector, no answer yet),
   * `collector` (it said yes) or `fallback` (it could not choose; the process profiles).
   */
  get profiling():
    | {
        readonly recording: boolean;
        readonly sampler: SamplerKind;
        readonly samplerFallback: string | undefined;
        readonly contextPath: ContextPath;
        readonly schedule: ProfileSchedule;
        readonly samplingIntervalMicros: number;
        readonly windowMs: number;
        readonly labelFraction: number;
        readonly labelHooks: boolean;
        readonly chosenBy: ProcessChoice;
      }
    | undefined {
    const profiler = this.profiler;
    return profiler === undefined
      ? undefined
      : {
          recording: profiler.active,
          sampler: profiler.sampler,
          samplerFallback: profiler.samplerFallback,
          contextPath: profiler.contextPath,
          schedule: profiler.schedule,
          samplingIntervalMicros: profiler.samplingIntervalMicros,
          windowMs: profiler.windowMs,
          labelFraction: profiler.labelFraction,
          labelHooks: profiler.labelHooksOn,
          chosenBy: this.processChoice ?? 'fraction',
        };
  }

  /** The collector's answer (or the fallback) to whether this process profiles: kept for the process's life. */
  private profilingChosen({ profile, by, reason, refused }: ProfilingDecision): void {
    if (this.profiler === undefined) return;
    this.processChoice = by;
    publish(channels.profilingChosen, { profile, by, reason });
    if (refused === true) {
      process.emitWarning(
        `${reason}. This process profiles, as with profile.processFraction 1. Upgrade the collector to the agent's ` +
          'version, or set profile.processFraction (ERGOMETER_PROFILE_PROCESS_FRACTION) to a number.',
        { code: 'ERGOMETER_PROFILING_NOT_CHOSEN' },
      );
    }
    if (profile) {
      this.startProfiler();
    } else {
      this.profiler.discard();
      this.profiler = undefined;
      this.profiles = undefined;
    }
  }

  /**
   * Starts the loaded profiler. One that cannot start (another copy of @datadog/pprof holding SIGPROF) is
   * reported once and let go; the agent runs on.
   */
  private startProfiler(): void {
    const profiler = this.profiler;
    if (profiler === undefined) return;
    try {
      if (profiler.start() && profiler.sampler === 'v8') {
        // Only V8's profiler misses code optimized before it started. Loaded already (loadProfiler): require only looks it up.
        const { lateStartWarning } = require('./profile/profiler') as typeof import('./profile/profiler');
        const cpu = process.cpuUsage();
        const late = lateStartWarning(cpu.user + cpu.system);
        if (late !== undefined) process.emitWarning(late, { code: 'ERGOMETER_PROFILER_STARTED_LATE' });
      }
    } catch (error) {
      profilerUnavailable(error);
      this.profiler = undefined;
      this.profiles = undefined;
    }
  }

  /** Stops the profiler and sends the profile of the window so far with what is queued, within `timeoutMs`. */
  private async flushProfiles(timeoutMs: number): Promise<void> {
    if (this.profiler === undefined || this.profiles === undefined) return;
    try {
      const last = await this.profiler.shutdown();
      if (last !== undefined) this.profiles.add(this.profileUpload(last));
    } catch (error) {
      publish(channels.internalError, { error });
    }
    await this.profiles.flushWithin(timeoutMs);
  }

  /** @internal */
  profileUpload(profile: CollectedProfile): ProfileUpload {
    const { service, commit, host } = this.options;
    return { service, commit, host, metric: profile.metric, from: profile.from, to: profile.to, pprof: profile.pprof };
  }

  /**
   * An OpenFeature server-SDK hook: `OpenFeature.addHooks(agent.openFeatureHook())` records every flag
   * evaluated during a sampled request (key → variant, else the value as a string) through
   * {@link flag}, with its cap. A failed evaluation records the default value the app received.
   */
  openFeatureHook(): OpenFeatureHook {
    return createOpenFeatureHook((key, variant) => this.flag(key, variant));
  }

  /**
   * @internal Counts a request the agent does not sample (wire `counts`, and `users` with a `userId`
   * option) when its response closes. Two layers count it once; the inner one's route resolver wins.
   *
   * Nothing is written on `req` or `res`: adding a property to the framework's request object cost ~2 µs
   * of CPU per request with Express (a bigger property store to copy, more to collect), as much as the
   * rest of the unsampled path together. What marks a counted request is the listener itself: the
   * agent's one {@link countClosed} function, which names the route from `req` as Express leaves it (or
   * from the path), or, for a router that keeps its route elsewhere (Fastify, Koa, Hono), a closure over
   * the resolver and its source that carries `countClosed` as its `listener`.
   */
  countUnsampled<S>(req: IncomingMessage, res: ServerResponse, route?: RouteResolver<S>, routeSource?: S): void {
    if (this.running) {
      this.count(req, res, isCountedAbove(res, this.countClosed), route, routeSource, undefined);
    }
  }

  /** {@link countUnsampled}, told whether an outer layer counts the request already. */
  private count<S>(
    req: IncomingMessage,
    res: ServerResponse,
    countedAbove: boolean,
    route: RouteResolver<S> | undefined,
    routeSource: S | undefined,
    labels: ProfileLabels | undefined,
  ): void {
    const countClosed = this.countClosed;
    // Express's route is on req, where countClosed looks anyway: no closure needed (unless the profiler's
    // labels of the request are to be finished too).
    const fromReq =
      labels === undefined &&
      (route === undefined || ((route as RouteResolver<unknown>) === expressRouteOf && routeSource === req));
    if (countedAbove) {
      // A resolver given here knows the route better than the layer above it.
      if (fromReq) return;
      eventRemoveListener.call(res, 'close', countClosed);
    }
    if (fromReq) {
      eventOn.call(res, 'close', countClosed);
      return;
    }
    const listener: CountingListener = () =>
      this.countFinished(req, route as RouteResolver<unknown> | undefined, routeSource, labels);
    listener.listener = countClosed;
    eventOn.call(res, 'close', listener);
  }

  /**
   * @internal The `close` listener of requests counted unsampled whose route is on `req` (Express, or
   * no router: the path template). One function per agent, and the mark of a counted request.
   */
  readonly countClosed = ((agent: Agent) =>
    function countClosedRequest(this: ServerResponse): void {
      const req = this.req as IncomingMessage | undefined;
      if (req !== undefined) agent.countFinished(req, undefined, undefined, undefined);
    })(this);

  /** @internal The end of a counted unsampled request. */
  countFinished(
    req: IncomingMessage,
    route: RouteResolver<unknown> | undefined,
    routeSource: unknown,
    labels: ProfileLabels | undefined,
  ): void {
    try {
      const method = req.method ?? 'GET';
      const endpoint = this.endpointOf(method, req, route, routeSource);
      labels?.finish(endpoint);
      this.countTotals(req, endpoint);
    } catch (error) {
      publish(channels.internalError, { error });
    }
  }

  /** Counts a finished request in the per-minute totals; returns its user's hash when users are counted. */
  private countTotals(req: IncomingMessage, endpoint: string): string | undefined {
    const nowMs = Date.now();
    this.totals.countRequest(endpoint, nowMs);
    if (this.options.userId === undefined) return undefined;
    let id: string | undefined;
    try {
      id = this.options.userId(req);
    } catch (error) {
      publish(channels.internalError, { error });
    }
    return typeof id === 'string' && id !== '' ? this.totals.countUser(id, nowMs) : undefined;
  }

  /**
   * Runs `fn` and charges the wall time until it returns — or until the promise it
   * returns settles — to the current request's `backend[kind]` (`'db'`, `'cache'`
   * or `'http'`), overlapping calls counted once. For clients the agent does not
   * instrument by itself. Returns what `fn` returns (inside a sampled request, a
   * promise is handed back as one that settles the same way once timed); outside
   * a sampled request it only calls `fn`.
   */
  time<T>(kind: BackendKind, fn: () => T): T {
    return timeBackendCall(kind, fn);
  }

  /**
   * Names the endpoint of the current request (`route` is a template such as `/feed/:id`),
   * for servers without a router the agent knows. Outside a sampled request it does nothing.
   */
  setRoute(route: string): void {
    const ctx = currentRequest();
    if (ctx !== undefined) ctx.endpoint = endpointName(ctx.method, route);
  }

  /** Samples waiting to be written. */
  get queuedSamples(): number {
    return this.batcher.queued;
  }

  /** Estimated bytes of samples held in memory: waiting, and on their way (retries included). */
  get queuedBytes(): number {
    return this.batcher.queuedBytes;
  }

  /**
   * Writes the samples recorded so far now, and resolves once the collector has taken them (a 200: stored)
   * or they failed (counted dropped, as any batch). Samples recorded meanwhile go with the next batch, so
   * it ends under load too. Profiles keep their own schedule.
   */
  flush(): Promise<void> {
    return this.batcher.flushQueued();
  }

  /**
   * Stops sampling new requests and writes what is queued, giving up after `timeoutMs` (default 10000):
   * whatever the collector has not taken by then is counted dropped. Safe to call twice.
   */
  async shutdown(options: { timeoutMs?: number } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (runningAgent === this) runningAgent = undefined;
    this.uninstallExitFlush();
    this.checkIns?.stop();
    const timeoutMs = options.timeoutMs ?? 10_000;
    await Promise.all([this.batcher.flushWithin(timeoutMs), this.flushProfiles(timeoutMs)]);
    await this.exporter.close();
  }

  /** Express 4 and 5 middleware: `app.use(agent.express())` before the routes. */
  express(): ReturnType<typeof expressMiddleware> {
    return expressMiddleware(this);
  }

  /**
   * Fastify 4 and 5 plugin: `await fastify.register(agent.fastify)`. It applies to every route,
   * not only to those of the context it is registered in.
   */
  get fastify(): ReturnType<typeof fastifyPlugin> {
    this.fastifyPluginInstance ??= fastifyPlugin(this);
    return this.fastifyPluginInstance;
  }

  /** Koa middleware (with @koa/router or any router): `app.use(agent.koa())` first. */
  koa(): ReturnType<typeof koaMiddleware> {
    return koaMiddleware(this);
  }

  /** Hono middleware for apps served by @hono/node-server: `app.use(agent.hono())` first. */
  hono(): ReturnType<typeof honoMiddleware> {
    return honoMiddleware(this);
  }

  /**
   * Adapter for plain `node:http`: `http.createServer(agent.http(handler))`. Returns what
   * `handler` returns, sampled or not: an outer layer that catches the promise of an async
   * handler must see its rejection either way.
   */
  http<Req extends IncomingMessage, Res extends ServerResponse, R>(
    handler: (req: Req, res: Res) => R,
  ): (req: Req, res: Res) => R {
    return (req, res) => {
      if (!this.wantsRequest(req)) {
        this.countUnsampled(req, res);
        return handler(req, res);
      }
      return this.runRequest(req, res, () => handler(req, res));
    };
  }

  private watchResponse(ctx: RequestContext, req: IncomingMessage, res: ServerResponse): void {
    // Closures, not properties on res: a property added to the framework's objects costs more (countUnsampled).
    res.on('finish', () => this.completeOnce(ctx, req, res, false));
    // 'close' without 'finish': the client went away (or the socket broke) first.
    res.on('close', () => this.completeOnce(ctx, req, res, !res.writableFinished));
  }

  /** @internal The end of a sampled request, from whichever of `finish` and `close` comes first. */
  completeOnce(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, aborted: boolean): void {
    if (ctx.completed) return;
    ctx.completed = true;
    try {
      this.completeRequest(ctx, req, res, aborted);
    } catch (error) {
      publish(channels.internalError, { error });
    }
  }

  private completeRequest(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, aborted: boolean): void {
    this.attributor.end(ctx);
    const endedAtMs = performance.now();
    const wallMs = endedAtMs - ctx.startedAtMonotonicMs;
    const backend = backendRequestEnded(ctx, endedAtMs);
    const endpoint =
      ctx.endpoint === undefined
        ? this.resolveSampledEndpoint(ctx, req)
        : this.endpoints.admit(ctx.method, ctx.endpoint);
    ctx.profileLabels?.finish(endpoint);
    // Never counted unsampled as well: once a layer counts a request unsampled, the layers below it keep to that.
    const user = this.countTotals(req, endpoint);
    // Per-endpoint rates: the sampler ran at the highest rate; thin to this endpoint's.
    const rate = this.options.endpointSampleRates.get(endpoint) ?? this.options.sampleRate;
    if (rate <= 0 || (rate < this.sampler.rate && Math.random() >= rate / this.sampler.rate)) return;
    const sample: WireSample = {
      ts: ctx.startedAtMs,
      endpoint,
      status: res.statusCode,
      cost: Math.round(ctx.cost),
      wallMs: Math.round(wallMs * 1000) / 1000,
      weight: 1 / rate,
    };
    if (backend !== undefined) sample.backend = backend;
    if (ctx.flags !== undefined && ctx.flags.size > 0) sample.flags = Object.fromEntries(ctx.flags);
    if (ctx.flagsDropped > 0) sample.flagsDropped = ctx.flagsDropped;
    if (user !== undefined) sample.user = user;
    if (aborted) sample.aborted = true;
    this.batcher.add(sample);
  }

  private resolveSampledEndpoint(ctx: RequestContext, req: IncomingMessage): string {
    if (ctx.hasRouteResolver) {
      let route: string | undefined;
      try {
        route = ctx.resolveRoute();
      } catch (error) {
        publish(channels.internalError, { error });
      }
      return this.endpoints.name(ctx.method, route);
    }
    return this.endpointOf(ctx.method, req, undefined, undefined);
  }

  /** The endpoint name of `req` (admitted by the cardinality guard) from the framework's resolver, else Express's req.route, else its path. */
  private endpointOf(
    method: string,
    req: IncomingMessage,
    route: RouteResolver<unknown> | undefined,
    routeSource: unknown,
  ): string {
    if (route !== undefined) return this.endpoints.name(method, route(routeSource));
    // No framework adapter: an Express app instrumented only through node:http
    // (e.g. with --import @ergometer/agent/register) still leaves its route on req.
    const expressRoute = expressRouteOf(req);
    if (expressRoute !== undefined) return this.endpoints.name(method, expressRoute);
    return this.endpoints.name(method, req.url === undefined ? undefined : templateFromPath(req.url));
  }
}

/**
 * Loads the profiler (not started). Required here, not imported at the top: a process with the profiler
 * off never loads @datadog/pprof and its native addon. A profiler that cannot load (no prebuilt addon for
 * this platform) is reported once; the agent runs on.
 */
function loadProfiler(options: ResolvedOptions, shipper: ProfileShipper): Profiler | undefined {
  try {
    const { Profiler } = require('./profile/profiler') as typeof import('./profile/profiler');
    const { service, commit, host } = options;
    return new Profiler(options.profile, (profile) => shipper.add({ service, commit, host, ...profile }));
  } catch (error) {
    profilerUnavailable(error);
    return undefined;
  }
}

function profilerUnavailable(error: unknown): void {
  process.emitWarning(
    `the profiler could not start, so no profiles are sent (the agent runs on without it): ${(error as Error).message}`,
    { code: 'ERGOMETER_PROFILER_UNAVAILABLE' },
  );
  publish(channels.internalError, { error });
}

function createExporter(options: ResolvedOptions, retry: Partial<RetryPolicy> | undefined): Exporter {
  const { collector } = options;
  if (collector.startsWith('file:')) return FileExporter.fromUrl(collector);
  if (/^https?:\/\//.test(collector)) {
    try {
      return new HttpExporter(collector, {
        token: options.token,
        requestTimeoutMs: options.requestTimeoutMs,
        ...(retry === undefined ? {} : { retry }),
      });
    } catch (error) {
      if (error instanceof ErgometerError) throw error;
      throw new ErgometerError(
        'ERGOMETER_UNSUPPORTED_COLLECTOR',
        `ergometer: collector (ERGOMETER_COLLECTOR) "${collector}" is not a valid URL: ${(error as Error).message}`,
      );
    }
  }
  throw new ErgometerError(
    'ERGOMETER_UNSUPPORTED_COLLECTOR',
    `ergometer: collector (ERGOMETER_COLLECTOR) "${collector}" is not a URL the agent can send to; ` +
      'use http://host:port (the ergometer server) or file:./samples.ndjson',
  );
}

/**
 * Starts the agent in this process. Options fall back to ERGOMETER_* environment
 * variables; a bad value throws an ErgometerError naming it. One agent per process.
 */
export function start(options: AgentOptions = {}): Agent {
  if (runningAgent !== undefined) {
    throw new ErgometerError(
      'ERGOMETER_ALREADY_STARTED',
      'ergometer: an agent is already running in this process (started by start() or by --import @ergometer/agent/register); ' +
        'use that one, or call its shutdown() first.',
    );
  }
  const agent = new Agent(resolveOptions(options));
  runningAgent = agent;
  return agent;
}

/** The agent started in this process, if any. */
export function getAgent(): Agent | undefined {
  return runningAgent;
}
