import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Counter, type CounterFallback, openCounter } from '@ergometer/counters';
import { expressMiddleware, fastifyPlugin, honoMiddleware, koaMiddleware } from './adapters/frameworks';
import { expressRouteOf } from './adapters/routes';
import { backendRequestEnded, backendRequestStarted } from './backend/calls';
import { installBackendInstrumentation, timeBackendCall } from './backend/instrumentation';
import type { BackendKind } from './backend/times';
import { EndpointCardinalityGuard, endpointName, templateFromPath, UNMATCHED } from './context/endpoint';
import { currentRequest, MAX_FLAGS_PER_REQUEST, RequestContext, requestStorage } from './context/request-context';
import { CpuAttributor } from './cpu/attributor';
import { channels, publish } from './diagnostics';
import { ErgometerError } from './errors';
import { Batcher } from './export/batcher';
import { FileExporter } from './export/file-exporter';
import type { Exporter, WireSample } from './export/wire';
import { type AgentOptions, type ResolvedOptions, resolveOptions } from './options';
import { WindowSampler } from './sampling/window-sampler';
import { AGENT_VERSION } from './version';

/**
 * Returns the route template of a request once the framework has routed it, or undefined if no
 * route matched. Called with the `routeSource` given beside it (e.g. the framework's context).
 */
export type RouteResolver<S = undefined> = (routeSource: S) => string | undefined;

/** Marks a request the agent has already seen, so that two layers (register + a framework adapter) never measure it twice. */
const kRequestState = Symbol('ergometer.request');
const ALREADY_RUNNING = Symbol('ergometer.already-running');

interface InstrumentedRequest extends IncomingMessage {
  [kRequestState]?: RequestContext;
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
  private readonly endpoints = new EndpointCardinalityGuard();
  private running = true;
  private fastifyPluginInstance: ReturnType<typeof fastifyPlugin> | undefined;

  /**
   * @internal use {@link start}. `internals.counter` replaces the CPU counter: the exact-attribution
   * test drives the agent with a counter that advances only when known work is done.
   */
  constructor(options: ResolvedOptions, internals: { counter?: Counter } = {}) {
    this.options = options;
    this.exporter = createExporter(options.collector);
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
    this.batcher = new Batcher(
      {
        v: 1,
        service: options.service,
        host: options.host,
        region: options.region,
        commit: options.commit,
        metric: this.metric,
        agent: { version: AGENT_VERSION, runtime: `node ${process.version}`, counter: this.cpu.source },
      },
      this.exporter,
      options,
    );
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
    // A resolver given without a source takes `undefined` (S defaults to undefined).
    const ctx = this.decide(req, res, route, routeSource as S);
    if (ctx === undefined || ctx === ALREADY_RUNNING) return handler();
    return requestStorage.run(ctx, () => {
      this.attributor.begin(ctx);
      backendRequestStarted(ctx);
      return handler();
    });
  }

  /** @internal Cheap pre-check for adapters: false means "not measured, skip the agent entirely". */
  wantsRequest(req: IncomingMessage): boolean {
    return (req as InstrumentedRequest)[kRequestState] !== undefined || (this.running && this.sampler.shouldSample());
  }

  /**
   * The sampling decision for `req`, made once per request. Returns the new context of a request
   * to start measuring, ALREADY_RUNNING when an outer layer measures it, or undefined. An
   * unsampled request costs one clock comparison and no allocation.
   */
  private decide<S>(
    req: IncomingMessage,
    res: ServerResponse,
    route: RouteResolver<S> | undefined,
    routeSource: S,
  ): RequestContext | typeof ALREADY_RUNNING | undefined {
    const instrumented = req as InstrumentedRequest;
    const existing = instrumented[kRequestState];
    if (existing !== undefined) {
      // An outer layer decided already, and the handler runs in its context;
      // the inner layer knows the route better.
      if (route !== undefined) existing.setRouteResolver(route, routeSource);
      return ALREADY_RUNNING;
    }
    // Unsampled requests are not marked: two layers decide within
    // microseconds of each other, and so agree but at a window's very edge.
    if (!this.running || !this.sampler.shouldSample()) return undefined;
    try {
      const ctx = new RequestContext(req.method ?? 'GET', Date.now(), performance.now());
      instrumented[kRequestState] = ctx;
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
    const ctx = currentRequest();
    if (ctx === undefined || ctx.ended) return;
    if (ctx.flags.size >= MAX_FLAGS_PER_REQUEST && !ctx.flags.has(key)) {
      ctx.flagsDropped++;
      return;
    }
    ctx.flags.set(String(key), String(variant));
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

  /** Writes every queued sample now. */
  flush(): Promise<void> {
    return this.batcher.flush();
  }

  /** Stops sampling new requests, writes what is queued, and releases the counter. Safe to call twice. */
  async shutdown(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (runningAgent === this) runningAgent = undefined;
    await this.batcher.flush();
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
      if (!this.wantsRequest(req)) return handler(req, res);
      return this.runRequest(req, res, () => handler(req, res));
    };
  }

  private watchResponse(ctx: RequestContext, req: IncomingMessage, res: ServerResponse): void {
    let done = false;
    const complete = (aborted: boolean) => {
      if (done) return;
      done = true;
      try {
        this.completeRequest(ctx, req, res, aborted);
      } catch (error) {
        publish(channels.internalError, { error });
      }
    };
    res.once('finish', () => complete(false));
    // 'close' without 'finish': the client went away (or the socket broke) first.
    res.once('close', () => complete(!res.writableFinished));
  }

  private completeRequest(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, aborted: boolean): void {
    this.attributor.end(ctx);
    const endedAtMs = performance.now();
    const wallMs = endedAtMs - ctx.startedAtMonotonicMs;
    const backend = backendRequestEnded(ctx, endedAtMs);
    const endpoint = this.endpoints.admit(ctx.method, ctx.endpoint ?? this.resolveEndpoint(ctx, req));
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
    if (ctx.flags.size > 0) sample.flags = Object.fromEntries(ctx.flags);
    if (aborted) sample.aborted = true;
    this.batcher.add(sample);
  }

  private resolveEndpoint(ctx: RequestContext, req: IncomingMessage): string {
    if (ctx.hasRouteResolver) {
      let route: string | undefined;
      try {
        route = ctx.resolveRoute();
      } catch (error) {
        publish(channels.internalError, { error });
      }
      return endpointName(ctx.method, route);
    }
    // No framework adapter: an Express app instrumented only through node:http
    // (e.g. with --import @ergometer/agent/register) still leaves its route on req.
    const expressRoute = expressRouteOf(req);
    if (expressRoute !== undefined) return endpointName(ctx.method, expressRoute);
    return endpointName(ctx.method, req.url === undefined ? UNMATCHED : templateFromPath(req.url));
  }
}

function createExporter(collector: string): Exporter {
  if (collector.startsWith('file:')) return FileExporter.fromUrl(collector);
  if (/^https?:/.test(collector)) {
    throw new ErgometerError(
      'ERGOMETER_UNSUPPORTED_COLLECTOR',
      `ergometer: collector "${collector}": this version of the agent writes to file: collectors only ` +
        '(e.g. ERGOMETER_COLLECTOR=file:./samples.ndjson); the HTTP exporter is not part of it yet.',
    );
  }
  throw new ErgometerError(
    'ERGOMETER_UNSUPPORTED_COLLECTOR',
    `ergometer: collector (ERGOMETER_COLLECTOR) "${collector}" is not a URL the agent can send to; use file:./samples.ndjson`,
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
