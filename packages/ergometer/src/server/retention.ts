/**
 * Retention on a schedule: a first pass shortly after start (not during the burst of agents
 * reconnecting), then one every interval. Timers are unref'd, so they never keep the process
 * alive; passes never overlap; a failed pass is logged and the next one tries again.
 */
import type { RetentionPolicy, RetentionResult, Store } from '../store/types';

export interface RetentionSchedule {
  /** Delay before the first pass, ms. Default 60 000. */
  firstDelayMs?: number;
  /** Time between passes, ms. Default one hour. */
  intervalMs?: number;
  /** Called after each pass that deleted something, and on failures. */
  log: (message: string) => void;
  /** Called after every pass (tests, metrics). */
  onPass?: (result: RetentionResult) => void;
  /** Clock, ms since the epoch. Default Date.now. */
  now?: () => number;
}

/** Starts the schedule; returns the function that stops it. */
export function scheduleRetention(store: Store, policy: RetentionPolicy, schedule: RetentionSchedule): () => void {
  const now = schedule.now ?? Date.now;
  let running = false;
  const pass = async (): Promise<void> => {
    if (running) return;
    running = true;
    try {
      const result = await store.applyRetention(policy, now());
      if (result.samplesDeleted + result.aggregatesDeleted + result.profilesDeleted > 0) {
        schedule.log(
          `retention deleted ${result.samplesDeleted} samples, ${result.aggregatesDeleted} aggregate rows, ${result.profilesDeleted} profiles`,
        );
      }
      schedule.onPass?.(result);
    } catch (error) {
      schedule.log(`retention failed (next pass will retry): ${(error as Error).message}`);
    } finally {
      running = false;
    }
  };
  const first = setTimeout(() => void pass(), schedule.firstDelayMs ?? 60_000).unref();
  const every = setInterval(() => void pass(), schedule.intervalMs ?? 3_600_000).unref();
  return () => {
    clearTimeout(first);
    clearInterval(every);
  };
}
