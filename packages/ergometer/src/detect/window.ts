/**
 * Detector windows in whole minutes. The store keeps per-minute aggregate rows and answers a range
 * [from, to) with the rows whose minute START lies in it (src/store/rollup.ts, minuteOf); a window
 * that started or ended mid-minute silently dropped or half-counted a minute (a canary of a few
 * seconds that started mid-minute lost all of its data). So every detector window is built here:
 * it starts at the start of the minute that holds its first instant, ends on a minute boundary, and
 * is at least one minute long. The alert carries `bucketMs` to say so.
 */
import { MINUTE_MS, minuteOf } from '../store/rollup';

/** The bucket every detector window is aligned to, ms (the store's aggregate rows are per minute). */
export const WINDOW_BUCKET_MS = MINUTE_MS;

/** The minute boundary right after the minute that holds `ts`: the end of a window whose last sample is at `ts`. */
export function endOfMinute(ts: number): number {
  return minuteOf(ts) + MINUTE_MS;
}

/** A window [from, to) of whole minutes, ms since the epoch. */
export interface MinuteWindow {
  from: number;
  to: number;
}

/**
 * The window from the minute that holds `startMs` to the minute boundary `endMs` rounds down to,
 * never shorter than one minute (so never empty).
 *
 * @param startMs the window's first instant (a deploy, a commit's first sample)
 * @param endMs where it ends: rounded down to a minute boundary (pass {@link endOfMinute} of a
 *   last sample to include that sample's minute)
 */
export function minuteWindow(startMs: number, endMs: number): MinuteWindow {
  const from = minuteOf(startMs);
  return { from, to: Math.max(minuteOf(endMs), from + MINUTE_MS) };
}
