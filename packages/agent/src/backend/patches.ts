import { AsyncResource } from 'node:async_hooks';
import { type BackendCall, endWhenSettled, isBackendActive, isSourceEnabled, startCall } from './calls';
import { onPackageLoad } from './module-hook';
import type { BackendSources } from './sources';

/**
 * Backend calls of libraries that publish no diagnostics channel: pg,
 * memcached, memjs (their prototypes are patched when the package loads, see
 * module-hook.ts) and mongodb (its own command monitoring events, turned on per
 * client). Each patched method first asks startCall(), which outside a sampled
 * request answers after one comparison; then it calls the original unchanged.
 */

type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;
type Prototype = Record<string | symbol, unknown>;

/** Marks a method we wrapped, so that a package loaded twice (or scanned, then required) is wrapped once. */
const kWrapped = Symbol('ergometer.backend.wrapped');

function isWrapped(fn: unknown): boolean {
  return typeof fn === 'function' && (fn as unknown as Prototype)[kWrapped] === true;
}

/** Replaces `proto[method]` by `makeWrapper(original)` unless it is missing or already ours. */
function wrapMethod(proto: unknown, method: string, makeWrapper: (original: AnyFunction) => AnyFunction): boolean {
  if (proto === null || typeof proto !== 'object') return false;
  const target = proto as Prototype;
  const original = target[method];
  if (typeof original !== 'function' || isWrapped(original)) return false;
  const wrapper = makeWrapper(original as AnyFunction);
  Object.defineProperty(wrapper, kWrapped, { value: true });
  Object.defineProperty(wrapper, 'name', { value: (original as AnyFunction).name });
  target[method] = wrapper;
  return true;
}

/** `fn` that first ends `call`: a library's completion callback. */
function endingFirst(call: BackendCall, fn: AnyFunction): AnyFunction {
  return function endThenCall(this: unknown) {
    call.end();
    // biome-ignore lint/complexity/noArguments: forwards the library's callback arguments as they are
    return Reflect.apply(fn, this, arguments);
  };
}

// ─── pg ─────────────────────────────────────────────────────────────────────

interface PgQueryConfig {
  submit?: unknown;
  callback?: unknown;
  once?: unknown;
}

/**
 * `client.query()` and `pool.query()` of pg: `(text | config, values?, callback?)`.
 * The call ends when the callback is called, when the returned promise settles,
 * or, for a Submittable (pg-cursor, pg-query-stream) without a callback, at its
 * 'end' or 'close' event. (An 'error' listener is never added: it would change
 * what an unhandled error does.)
 */
function timedPgQuery(original: AnyFunction): AnyFunction {
  return function query(this: unknown, config: unknown, values: unknown, callback: unknown) {
    const call = startCall('db', 'pg');
    // biome-ignore lint/complexity/noArguments: the untimed path passes the arguments on untouched
    if (call === undefined) return Reflect.apply(original, this, arguments);
    try {
      if (typeof callback === 'function')
        return original.call(this, config, values, endingFirst(call, callback as AnyFunction));
      if (typeof values === 'function') return original.call(this, config, endingFirst(call, values as AnyFunction));
      if (config !== null && typeof config === 'object') {
        const query = config as PgQueryConfig;
        if (typeof query.submit === 'function') {
          if (typeof query.callback === 'function') {
            // pg assigns query.callback itself in this case; we do the same, one step earlier.
            query.callback = endingFirst(call, query.callback as AnyFunction);
          } else if (typeof query.once === 'function') {
            const emitter = query as { once: (event: string, listener: () => void) => unknown };
            emitter.once('end', call.end);
            emitter.once('close', call.end);
          } else {
            call.end();
          }
          // biome-ignore lint/complexity/noArguments: same arguments, only observed
          return Reflect.apply(original, this, arguments);
        }
        if (typeof query.callback === 'function') {
          // pg moves a callback argument onto config.callback: giving ours as the argument replaces it.
          return original.call(this, config, values, endingFirst(call, query.callback as AnyFunction));
        }
      }
      // biome-ignore lint/complexity/noArguments: promise form, arguments untouched
      return endWhenSettled(call, Reflect.apply(original, this, arguments));
    } catch (error) {
      call.end();
      throw error;
    }
  };
}

/**
 * pg-pool hands a pooled client to the callback of `connect()` from whichever
 * code released one — another request's context — so the query `pool.query()`
 * then runs would be charged to that request. While sampled requests are in
 * flight the callback is bound to its caller's context; otherwise (no sampled
 * request to mischarge) it is passed on untouched.
 */
function contextPreservingConnect(original: AnyFunction): AnyFunction {
  return function connect(this: unknown, callback: unknown) {
    if (typeof callback === 'function' && isBackendActive() && isSourceEnabled('pg')) {
      return original.call(this, AsyncResource.bind(callback as AnyFunction));
    }
    // biome-ignore lint/complexity/noArguments: passes the arguments on untouched
    return Reflect.apply(original, this, arguments);
  };
}

interface PgExports {
  Client?: { prototype?: unknown };
  Pool?: { prototype?: unknown };
}

function patchPg(exports: unknown): void {
  const pg = exports as PgExports;
  // The package entry has both; pg's inner files (lib/client.js) are skipped.
  if (typeof pg.Client !== 'function' || typeof pg.Pool !== 'function') return;
  wrapMethod(pg.Client.prototype, 'query', timedPgQuery);
  // pg.Pool is pg-pool's Pool bound to pg.Client; query() and connect() live on pg-pool's prototype.
  const poolProto = Object.getPrototypeOf(pg.Pool.prototype) as unknown;
  const target = hasOwn(pg.Pool.prototype, 'query') ? pg.Pool.prototype : poolProto;
  wrapMethod(target, 'query', timedPgQuery);
  wrapMethod(hasOwn(pg.Pool.prototype, 'connect') ? pg.Pool.prototype : poolProto, 'connect', contextPreservingConnect);
}

function hasOwn(object: unknown, key: string): boolean {
  return object !== null && typeof object === 'object' && Object.hasOwn(object, key);
}

// ─── memjs ──────────────────────────────────────────────────────────────────

/**
 * memjs sends every keyed command (get, set, add, replace, delete, increment,
 * decrement, append, prepend, touch; their promise forms too) through
 * `Client.prototype.perform(key, request, seq, callback, retries)`; the call
 * ends when that callback is called. flush() and stats() bypass it and are not timed.
 */
function timedMemjsPerform(original: AnyFunction): AnyFunction {
  return function perform(this: unknown, key: unknown, request: unknown, seq: unknown, callback: unknown) {
    const call = typeof callback === 'function' ? startCall('cache', 'memjs') : undefined;
    // biome-ignore lint/complexity/noArguments: the untimed path passes the arguments on untouched
    if (call === undefined) return Reflect.apply(original, this, arguments);
    // perform() has five parameters (the fifth, retries, optional): replace the fourth only.
    const args: unknown[] = [key, request, seq, endingFirst(call, callback as AnyFunction)];
    // biome-ignore lint/complexity/noArguments: keeps `retries` exactly as given (present or not)
    if (arguments.length > 4) args.push(arguments[4]);
    try {
      return Reflect.apply(original, this, args);
    } catch (error) {
      call.end();
      throw error;
    }
  };
}

function patchMemjs(exports: unknown): void {
  const client = (exports as { Client?: { prototype?: unknown } }).Client;
  if (typeof client !== 'function') return;
  wrapMethod(client.prototype, 'perform', timedMemjsPerform);
}

// ─── memcached ──────────────────────────────────────────────────────────────

interface MemcachedQuery {
  callback?: unknown;
}

/**
 * memcached (3rd-Eden) sends every command through
 * `Memcached.prototype.command(queryCompiler, server)`, where `queryCompiler()`
 * returns `{ ..., callback }`; the call ends when that callback is called. A
 * command without a callback is not waited for by anyone and counts nothing.
 */
function timedMemcachedCommand(original: AnyFunction): AnyFunction {
  return function command(this: unknown, queryCompiler: unknown, server: unknown) {
    const call = typeof queryCompiler === 'function' ? startCall('cache', 'memcached') : undefined;
    // biome-ignore lint/complexity/noArguments: the untimed path passes the arguments on untouched
    if (call === undefined) return Reflect.apply(original, this, arguments);
    let timed = false;
    const compile = queryCompiler as AnyFunction;
    // command() compiles the query synchronously, once (a second time, without callback, for redundancy).
    const compileTimed = function compileQuery(this: unknown) {
      // biome-ignore lint/complexity/noArguments: the compiler's arguments (noreply) as they are
      const query = Reflect.apply(compile, this, arguments) as MemcachedQuery | undefined;
      if (!timed && query !== null && typeof query === 'object' && typeof query.callback === 'function') {
        timed = true;
        query.callback = endingFirst(call, query.callback as AnyFunction);
      }
      return query;
    };
    try {
      return original.call(this, compileTimed, server);
    } finally {
      if (!timed) call.end();
    }
  };
}

function patchMemcached(exports: unknown): void {
  // The package exports the Client constructor itself.
  if (typeof exports !== 'function') return;
  wrapMethod((exports as { prototype?: unknown }).prototype, 'command', timedMemcachedCommand);
}

// ─── mongodb ────────────────────────────────────────────────────────────────

interface CommandEvent {
  requestId?: unknown;
}

interface MongoClientLike {
  monitorCommands?: boolean;
  on?: (event: string, listener: (event: CommandEvent) => void) => unknown;
}

const monitoredClients = new WeakSet<object>();

/**
 * mongodb publishes no diagnostics channel; its public hook is command
 * monitoring: with `monitorCommands` on, the client emits commandStarted /
 * commandSucceeded / commandFailed for every command, from the connection's
 * command loop in the caller's async context. On `connect()` (which the driver
 * also calls itself before the first operation) the agent turns monitoring on for
 * that client and listens. Cost: the driver then builds these event objects for
 * every command, sampled or not (turn `mongodb` off if that matters more).
 */
function monitoringConnect(original: AnyFunction): AnyFunction {
  return function connect(this: unknown) {
    if (isSourceEnabled('mongodb')) monitorClient(this as MongoClientLike);
    // biome-ignore lint/complexity/noArguments: passes the arguments on untouched
    return Reflect.apply(original, this, arguments);
  };
}

/** Turns command monitoring on for `client` and charges its commands to the sampled request that sent them. */
export function monitorClient(client: MongoClientLike): void {
  if (client === null || typeof client !== 'object' || monitoredClients.has(client)) return;
  if (typeof client.on !== 'function') return;
  monitoredClients.add(client);
  // requestId is unique per driver copy; per client, it identifies the command between its events.
  const calls = new Map<unknown, BackendCall>();
  client.on('commandStarted', (event) => {
    const call = startCall('db', 'mongodb');
    if (call === undefined) return;
    // Bounded: a command whose end event never comes must not grow this map without limit.
    if (calls.size >= 10_000) calls.clear();
    calls.set(event.requestId, call);
  });
  const onEnd = (event: CommandEvent): void => {
    if (calls.size === 0) return;
    const call = calls.get(event.requestId);
    if (call === undefined) return;
    calls.delete(event.requestId);
    call.end();
  };
  client.on('commandSucceeded', onEnd);
  client.on('commandFailed', onEnd);
  if (client.monitorCommands !== true) client.monitorCommands = true;
}

function patchMongodb(exports: unknown): void {
  const mongoClient = (exports as { MongoClient?: { prototype?: unknown } }).MongoClient;
  if (typeof mongoClient !== 'function') return;
  wrapMethod(mongoClient.prototype, 'connect', monitoringConnect);
}

// ─── installation ───────────────────────────────────────────────────────────

const PATCHERS = { pg: patchPg, memjs: patchMemjs, memcached: patchMemcached, mongodb: patchMongodb } as const;

/**
 * Patches, now and whenever they load, the packages of the enabled
 * instrumentations among pg, memjs, memcached and mongodb. A package is never
 * patched for an instrumentation that is off; once patched it stays so (a later
 * agent with it off makes the wrapper a pass-through).
 */
export function installPatches(sources: BackendSources): void {
  for (const [name, patcher] of Object.entries(PATCHERS)) {
    if (sources[name as keyof typeof PATCHERS]) onPackageLoad(name, patcher);
  }
}
