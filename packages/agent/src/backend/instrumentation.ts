import { endWhenSettled, onBackendActivity, setEnabledSources, startCall } from './calls';
import { setChannelSubscriptions } from './channels';
import { installPatches } from './patches';
import type { BackendSources } from './sources';
import { BACKEND_KINDS, type BackendKind } from './times';

let activityHooked = false;

/**
 * Channel subscriptions stay up this long after the last sampled request ends. Subscribing and
 * unsubscribing a tracing channel costs far more than a call: at high sample rates requests
 * overlap with short gaps, and toggling at every gap cost ~0.8 ms of CPU per request in the
 * backend benchmark. Between sampled windows at low rates the channels are still unsubscribed,
 * so libraries that check for subscribers (ioredis, node-redis, mysql2) do no tracing work.
 */
const UNSUBSCRIBE_AFTER_IDLE_MS = 1000;
let idleTimer: NodeJS.Timeout | undefined;

function onActivity(active: boolean): void {
  if (active) {
    if (idleTimer !== undefined) {
      clearTimeout(idleTimer);
      idleTimer = undefined;
    }
    setChannelSubscriptions(true);
    return;
  }
  if (idleTimer !== undefined) return;
  idleTimer = setTimeout(() => {
    idleTimer = undefined;
    setChannelSubscriptions(false);
  }, UNSUBSCRIBE_AFTER_IDLE_MS);
  idleTimer.unref();
}

/**
 * Installs the backend instrumentations that `sources` turns on: channel
 * subscriptions (made while sampled requests are in flight) and patches of
 * pg, memcached, memjs and mongodb (now for loaded copies, later on load).
 * Process-wide and idempotent: a later agent's call updates which are on.
 */
export function installBackendInstrumentation(sources: BackendSources): void {
  setEnabledSources(sources);
  if (!activityHooked) {
    activityHooked = true;
    onBackendActivity(onActivity);
  }
  installPatches(sources);
}

const warnedKinds = new Set<string>();

/**
 * `agent.time(kind, fn)`: runs `fn` and, inside a sampled request, charges the
 * wall time until it returns — or until the promise it returns settles — to
 * `kind`. Returns what `fn` returns; for a promise inside a sampled request, a
 * promise that settles the same way once the call is timed (see endWhenSettled).
 * Exceptions pass through.
 */
export function timeBackendCall<T>(kind: BackendKind, fn: () => T): T {
  if (!BACKEND_KINDS.includes(kind)) {
    // The agent never throws into the app: a wrong kind runs untimed, with one warning.
    if (!warnedKinds.has(String(kind))) {
      warnedKinds.add(String(kind));
      process.emitWarning(
        `ergometer: agent.time(${JSON.stringify(kind)}, fn): the kind must be one of ${BACKEND_KINDS.join(', ')}; ` +
          'fn runs, untimed.',
        { code: 'ERGOMETER_BAD_ARGUMENT' },
      );
    }
    return fn();
  }
  const call = startCall(kind, undefined);
  if (call === undefined) return fn();
  let result: T;
  try {
    result = fn();
  } catch (error) {
    call.end();
    throw error;
  }
  return endWhenSettled(call, result);
}
