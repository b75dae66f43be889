/** What a backend call is spent on: a database, a cache, or a downstream HTTP service. */
export type BackendKind = 'db' | 'cache' | 'http';

/** The kinds, in the order of the wire format's `backend` object. */
export const BACKEND_KINDS: readonly BackendKind[] = ['db', 'cache', 'http'];

/** Milliseconds of wall time per kind, overlapping calls counted once (wire format v1 `backend`). */
export interface BackendMs {
  db: number;
  cache: number;
  http: number;
}

/**
 * Wall time one request spent waiting on each kind of backend, as the union of
 * the intervals of its calls: two 50 ms queries that run side by side count 50 ms,
 * one after the other 100 ms.
 *
 * The union needs no list of intervals. Per kind we keep how many calls are in
 * flight and when the current busy period began (the moment the count left 0);
 * a busy period ends when the count returns to 0 and adds its length. O(1) per
 * call start and end, a few numbers per request:
 *
 *   call A   |=========|
 *   call B        |==========|          in flight: 1 2 1 0   → one busy period
 *   busy     |================|  +=     (A.start … B.end), counted once
 */
export class BackendTimes {
  private readonly inFlight = [0, 0, 0];
  private readonly busySinceMs = [0, 0, 0];
  private readonly totalMs = [0, 0, 0];
  /** Set by {@link close}: calls still running after the request ended are not counted. */
  private closed = false;
  /** Calls started, for callers that need to know whether anything was timed. */
  calls = 0;

  /** True once {@link close} has run. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Records that a call of `kind` started at `nowMs` (performance.now()). */
  start(kind: BackendKind, nowMs: number): void {
    if (this.closed) return;
    this.calls++;
    const i = kindIndex(kind);
    if (this.inFlight[i]!++ === 0) this.busySinceMs[i] = nowMs;
  }

  /** Records that a call of `kind` that {@link start} recorded ended at `nowMs`. */
  end(kind: BackendKind, nowMs: number): void {
    if (this.closed) return;
    const i = kindIndex(kind);
    // A count below zero would mean an end without its start: refuse it rather than
    // open a busy period that never closes.
    if (this.inFlight[i]! <= 0) return;
    if (--this.inFlight[i]! === 0) this.totalMs[i]! += Math.max(0, nowMs - this.busySinceMs[i]!);
  }

  /**
   * Ends the accounting at `nowMs`, the end of the request: calls still in flight
   * count up to that moment (a fire-and-forget write the request never waited
   * for stops counting when the response is done). Returns the totals in ms,
   * rounded to microseconds like `wallMs`.
   */
  close(nowMs: number): BackendMs {
    if (!this.closed) {
      for (let i = 0; i < 3; i++) {
        if (this.inFlight[i]! > 0) this.totalMs[i]! += Math.max(0, nowMs - this.busySinceMs[i]!);
        this.inFlight[i] = 0;
      }
      this.closed = true;
    }
    return { db: roundMs(this.totalMs[0]!), cache: roundMs(this.totalMs[1]!), http: roundMs(this.totalMs[2]!) };
  }
}

function kindIndex(kind: BackendKind): number {
  return kind === 'db' ? 0 : kind === 'cache' ? 1 : 2;
}

function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
