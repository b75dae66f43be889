import diagnosticsChannel from 'node:diagnostics_channel';

/**
 * The agent reports on itself through diagnostics_channel, never through
 * exceptions or console output in the hot path. Subscribe with
 * `diagnostics_channel.subscribe('ergometer:agent:samples-dropped', fn)`.
 */
export const channels = {
  /** `{ count, reason }`: samples thrown away (queue full, exporter failing). */
  samplesDropped: diagnosticsChannel.channel('ergometer:agent:samples-dropped'),
  /** `{ batchId, samples, error }`: a batch could not be written; its samples were dropped. */
  batchDropped: diagnosticsChannel.channel('ergometer:agent:batch-dropped'),
  /** `{ batchId, attempt, status, error, delayMs }`: a batch failed for a reason that may pass; it is sent again after `delayMs`. */
  batchRetry: diagnosticsChannel.channel('ergometer:agent:batch-retry'),
  /** `{ batchId, samples }`: a batch was written to the collector. */
  batchSent: diagnosticsChannel.channel('ergometer:agent:batch-sent'),
  /** `{ source, metric, fallbacks }`: which counter the agent measures with, once at start. */
  counterSelected: diagnosticsChannel.channel('ergometer:agent:counter-selected'),
  /** `{ from, to, bytes }`: a profile (gzipped pprof of the window from..to, ms) reached the collector. */
  profileSent: diagnosticsChannel.channel('ergometer:agent:profile-sent'),
  /** `{ from, to, reason, error }`: a profile was thrown away (queue full, export failed, flush deadline). */
  profileDropped: diagnosticsChannel.channel('ergometer:agent:profile-dropped'),
  /**
   * `{ profile, by, reason }`: whether this process profiles, once, when `profile.processFraction` is
   * `collector` (`by`: `collector`, or `fallback` when the collector could not choose; `reason` says why).
   */
  profilingChosen: diagnosticsChannel.channel('ergometer:agent:profiling-chosen'),
  /** `{ error }`: an internal error the agent swallowed to protect the host app. */
  internalError: diagnosticsChannel.channel('ergometer:agent:internal-error'),
} as const;

/** Names of the channels above, for documentation and tests. */
export const CHANNEL_NAMES = Object.fromEntries(
  Object.entries(channels).map(([key, channel]) => [key, channel.name as string]),
) as Record<keyof typeof channels, string>;

/**
 * Publishes if anyone listens. A subscriber that throws does not interrupt the
 * agent's code path: Node.js reports the subscriber's exception on the next
 * tick as an uncaught exception (documented behaviour of diagnostics_channel),
 * where it belongs — to the code that subscribed.
 */
export function publish(channel: diagnosticsChannel.Channel, message: unknown): void {
  if (!channel.hasSubscribers) return;
  try {
    channel.publish(message);
  } catch {
    // Older releases threw synchronously; the agent's work goes on either way.
  }
}
