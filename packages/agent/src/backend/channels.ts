import diagnosticsChannel from 'node:diagnostics_channel';
import type { EventEmitter } from 'node:events';
import { type BackendCall, isSourceEnabled, startCall } from './calls';
import type { BackendSource } from './sources';
import type { BackendKind } from './times';

/**
 * Backend calls of the libraries that publish them on diagnostics_channel:
 * Node's http/https client, undici and fetch, mysql2 ≥ 3.20, ioredis ≥ 5.11,
 * node-redis ≥ 5.12. Subscribing needs no patching and sees the library however
 * it was loaded (require, import, bundled), in any number of copies.
 *
 * Subscriptions follow the sampled requests (see onBackendActivity): the
 * tracing libraries check `hasSubscribers` and build their trace context and
 * wrapper promise only when someone listens, so between sampled requests they
 * do no tracing work at all, and during them an unsampled call costs the
 * library's publish plus one lookup here.
 */

/** A group of subscriptions that can be made and undone. */
interface ChannelSubscription {
  readonly source: BackendSource;
  subscribe(): void;
  unsubscribe(): void;
}

/** Channels whose messages carry the call's identity (`request`), start and end published separately. */
interface RequestMessage {
  request?: object;
}

/** Published by Node's http client, in the caller's async context. */
const HTTP_CLIENT_REQUEST_START = 'http.client.request.start';
/** undici (and the undici inside Node that runs fetch): created in the caller's context, then headers, trailers (the end) or error. */
const UNDICI_REQUEST_CREATE = 'undici:request:create';
const UNDICI_REQUEST_TRAILERS = 'undici:request:trailers';
const UNDICI_REQUEST_ERROR = 'undici:request:error';

/** TracingChannels (start … asyncStart | error) per library, and the kind their calls are charged to. */
const TRACING_CHANNELS: readonly { source: BackendSource; kind: BackendKind; names: readonly string[] }[] = [
  // mysql2 ≥ 3.20 (lib/tracing.js). Waiting for a pooled connection counts as database time too.
  { source: 'mysql2', kind: 'db', names: ['mysql2:query', 'mysql2:execute', 'mysql2:pool:connect'] },
  // ioredis ≥ 5.11 (built/tracing.js): single commands and pipelines/multi.
  { source: 'ioredis', kind: 'cache', names: ['ioredis:command', 'ioredis:batch'] },
  // node-redis (@redis/client ≥ 5.12, lib/client/tracing.js).
  { source: 'redis', kind: 'cache', names: ['node-redis:command', 'node-redis:batch'] },
];

function httpClientSubscription(): ChannelSubscription {
  // Held here, strongly: a channel nobody references may be collected with its subscribers (Node < 22).
  const start = diagnosticsChannel.channel(HTTP_CLIENT_REQUEST_START);
  const onStart = (message: unknown): void => {
    const call = startCall('http', 'http');
    if (call === undefined) return;
    const request = (message as RequestMessage).request as EventEmitter | undefined;
    if (request === undefined || typeof request.once !== 'function') {
      call.end();
      return;
    }
    // A ClientRequest emits 'close' once, last: after its response has been read to the
    // end, or after an error or abort. 'http.client.response.finish' would end the call at
    // the response headers, before the body arrives; a response nobody reads stays open
    // until the request ends.
    request.once('close', call.end);
  };
  return {
    source: 'http',
    subscribe: () => start.subscribe(onStart),
    unsubscribe: () => start.unsubscribe(onStart),
  };
}

function undiciSubscription(): ChannelSubscription {
  const create = diagnosticsChannel.channel(UNDICI_REQUEST_CREATE);
  const trailers = diagnosticsChannel.channel(UNDICI_REQUEST_TRAILERS);
  const error = diagnosticsChannel.channel(UNDICI_REQUEST_ERROR);
  // Keyed by undici's Request object; entries go with it.
  const calls = new WeakMap<object, BackendCall>();
  const onCreate = (message: unknown): void => {
    const request = (message as RequestMessage).request;
    if (request === undefined) return;
    const call = startCall('http', 'undici');
    if (call !== undefined) calls.set(request, call);
  };
  // `trailers` is published when the response has been received to its end, `error` when it failed.
  const onEnd = (message: unknown): void => {
    const request = (message as RequestMessage).request;
    if (request === undefined) return;
    const call = calls.get(request);
    if (call === undefined) return;
    calls.delete(request);
    call.end();
  };
  return {
    source: 'undici',
    subscribe() {
      create.subscribe(onCreate);
      trailers.subscribe(onEnd);
      error.subscribe(onEnd);
    },
    unsubscribe() {
      create.unsubscribe(onCreate);
      trailers.unsubscribe(onEnd);
      error.unsubscribe(onEnd);
    },
  };
}

/**
 * A TracingChannel publishes `start` synchronously in the caller's context with a
 * context object it creates per call, then `asyncStart` with the same object when
 * the result is delivered (callback called, promise settled) — the end of the
 * call, before the caller's own continuation runs — or `error` (also for a
 * synchronous throw, which has no asyncStart).
 */
function tracingSubscription(source: BackendSource, kind: BackendKind, names: readonly string[]): ChannelSubscription {
  const calls = new WeakMap<object, BackendCall>();
  const handlers = {
    start(context: unknown): void {
      if (context === null || typeof context !== 'object') return;
      const call = startCall(kind, source);
      if (call !== undefined) calls.set(context, call);
    },
    asyncStart(context: unknown): void {
      finish(context);
    },
    error(context: unknown): void {
      finish(context);
    },
  };
  function finish(context: unknown): void {
    if (context === null || typeof context !== 'object') return;
    const call = calls.get(context);
    if (call === undefined) return;
    calls.delete(context);
    call.end();
  }
  const channels = names.map((name) => diagnosticsChannel.tracingChannel(name));
  return {
    source,
    subscribe: () => {
      for (const channel of channels)
        channel.subscribe(handlers as diagnosticsChannel.TracingChannelSubscribers<object>);
    },
    unsubscribe: () => {
      for (const channel of channels)
        channel.unsubscribe(handlers as diagnosticsChannel.TracingChannelSubscribers<object>);
    },
  };
}

const subscriptions: readonly ChannelSubscription[] = [
  httpClientSubscription(),
  undiciSubscription(),
  ...TRACING_CHANNELS.map(({ source, kind, names }) => tracingSubscription(source, kind, names)),
];

const subscribed = new Set<ChannelSubscription>();

/**
 * Subscribes the enabled channel instrumentations (`active`) or every one that is
 * subscribed (`!active`). Called when the first sampled request starts and when
 * the last one ends.
 */
export function setChannelSubscriptions(active: boolean): void {
  for (const subscription of subscriptions) {
    const want = active && isSourceEnabled(subscription.source);
    if (want === subscribed.has(subscription)) continue;
    if (want) {
      subscription.subscribe();
      subscribed.add(subscription);
    } else {
      subscription.unsubscribe();
      subscribed.delete(subscription);
    }
  }
}
