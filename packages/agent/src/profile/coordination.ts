import { randomUUID } from 'node:crypto';
import { channels, publish } from '../diagnostics';
import type { CheckInOutcome } from '../export/http-exporter';

/** How this process came to profile or not (`agent.profiling.chosenBy`, the `profiling-chosen` channel). */
export type ProcessChoice =
  /** Drawn by the process itself with a numeric `profile.processFraction`. */
  | 'fraction'
  /** The collector has not answered yet; the profiler waits, loaded and not started. */
  | 'pending'
  /** The collector chose (`POST /v1/profiling`). */
  | 'collector'
  /** The collector could not choose (unreachable for the first seconds, or too old to know the route): it profiles. */
  | 'fallback';

/** Sends one check-in (HttpExporter.checkIn). */
export interface CheckInTarget {
  checkIn(body: object): Promise<CheckInOutcome>;
}

/** The answer to whether this process profiles (the `profiling-chosen` channel's message, less `refused`). */
export interface ProfilingDecision {
  profile: boolean;
  by: 'collector' | 'fallback';
  /** Why the collector could not choose (fallback only). */
  reason?: string;
  /** The collector refused the question (an older collector without the route): worth a warning. */
  refused?: boolean;
}

/** Waits between the first question's attempts while the collector does not answer, ms (then: fallback). */
export const ASK_RETRY_DELAYS_MS: readonly number[] = [500, 1500, 3000];

/**
 * `profile.processFraction: "collector"`: asks the collector whether this process profiles, then checks in
 * once per profile period with what it decided, so that the collector counts the live processes of its
 * commit (server/profiling-coordinator.ts in the ergometer package). The decision is taken once and kept. The
 * profiler waits for it, loaded and not started, so that a process told no never puts V8 in its profiling mode;
 * the answer comes within milliseconds of the agent's start, before the app is busy, and a yes starts the profiler
 * then (a late start misses code compiled before it: docs/agent.md, "Which processes profile").
 *
 * If the collector does not answer the first question within a few seconds (a network error, a timeout, 5xx
 * or 429 on each of four attempts) the process profiles, as if `processFraction` were 1, and keeps checking in
 * so that a collector that comes back counts it. A collector that refuses the question (an older version
 * without the route: 404) gets no more check-ins.
 */
export class ProfilingCheckIns {
  /** Unique per process: the collector tells processes of one host apart by it. */
  readonly instance = randomUUID();
  private state: 'asking' | 'profiling' | 'idle' = 'asking';
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly target: CheckInTarget,
    private readonly identity: { service: string; commit: string; host: string },
    private readonly periodMs: number,
    private readonly decided: (decision: ProfilingDecision) => void,
    private readonly retryDelaysMs: readonly number[] = ASK_RETRY_DELAYS_MS,
  ) {}

  start(): void {
    this.ask(0).catch(swallow);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private body(): object {
    const { service, commit, host } = this.identity;
    return { service, commit, host, instance: this.instance, state: this.state, checkInMs: this.periodMs };
  }

  private async ask(attempt: number): Promise<void> {
    const outcome = await this.target.checkIn(this.body());
    if (this.stopped) return;
    if (outcome.kind === 'answer') return this.settle({ profile: outcome.profile, by: 'collector' });
    const delayMs = this.retryDelaysMs[attempt];
    if (outcome.kind === 'unreachable' && delayMs !== undefined) {
      this.timer = setTimeout(() => this.ask(attempt + 1).catch(swallow), delayMs);
      this.timer.unref();
      return;
    }
    if (outcome.kind === 'unreachable') {
      return this.settle({ profile: true, by: 'fallback', reason: `no answer from the collector (${outcome.reason})` });
    }
    const said = outcome.body === '' ? '' : `: ${outcome.body.slice(0, 200)}`;
    const reason = `the collector refused the question with HTTP ${outcome.status}${said}`;
    this.settle({ profile: true, by: 'fallback', reason, refused: true });
  }

  private settle(decision: ProfilingDecision): void {
    this.state = decision.profile ? 'profiling' : 'idle';
    this.decided(decision);
    // A collector that refused the question would refuse the check-ins too.
    if (decision.refused !== true) this.scheduleCheckIn();
  }

  private scheduleCheckIn(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      // Answers are not read: the decision is kept (the collector only counts this process).
      this.target
        .checkIn(this.body())
        .then(() => this.scheduleCheckIn())
        .catch(swallow);
    }, this.periodMs);
    this.timer.unref();
  }
}

/** Never into the host app: an error of the agent's own is reported on its channel. */
function swallow(error: unknown): void {
  publish(channels.internalError, { error });
}
