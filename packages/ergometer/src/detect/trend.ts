import type { Store } from '../store/types';
import type { TestedChange } from './candidate';
import { compareGroups, type EndpointComparison, endpointMetricKey } from './compare';
import type { DetectorConfig } from './config';

const DAY = 24 * 3_600_000;
/** Trend detection looks at the endpoints that carry this much of the service's cost (at most MAX_ENDPOINTS). */
const HEAVY_SHARE = 0.8;
const MAX_ENDPOINTS = 20;

/**
 * The trend detector, for the endpoints that carry most of the cost, across every commit (so a
 * creep spread over many small rollouts, each below its own threshold, adds up here): where the
 * endpoint is now — the last two days — against the week before the last seven. To be a trend the
 * change must still be there: each of the last two days on its own must be above that week by more
 * than the threshold, in the same direction, and significant. A one-day spike, or a change that
 * went away again, fails that. The two-day comparison is the one tested for the alert (and
 * corrected with the others). It is not the whole last week against the week before: a creep's
 * weekly average is half of where it has got to (+0.3%/day averages +1.2% over its first week,
 * +2.1% on the last day), so a +0.3%/day creep sat at the 1% threshold and was missed about one
 * time in six (found by the detection simulator).
 *
 * The windows are complete UTC days: they end at the start of the current UTC day, whatever the
 * time of the run. `serve` runs the detectors every minute; windows ending at `now` made each run
 * retest almost the same data (more chances for a false alarm, alerts that flicker). So the trend
 * test changes its data once a day, on days that are over (a daily scan), against whole weeks.
 */
export async function detectTrends(
  store: Store,
  service: string,
  now: number,
  config: DetectorConfig,
  thresholdPct: (endpoint: string) => number,
): Promise<TestedChange[]> {
  // The start of the current UTC day: the end of every window of this run.
  const end = Math.floor(now / DAY) * DAY;
  const endpoints = await store.endpoints({ service, from: end - 14 * DAY, to: end });
  const heavy = new Set<string>();
  let share = 0;
  for (const e of [...endpoints].sort((a, b) => b.share - a.share)) {
    if (share >= HEAVY_SHARE || heavy.size >= MAX_ENDPOINTS) break;
    heavy.add(endpointMetricKey(e));
    share += e.share;
  }
  if (heavy.size === 0) return [];
  const options = { minSamples: config.minSamples, confidence: config.confidence };
  const previousWeek = { from: end - 14 * DAY, to: end - 7 * DAY };
  const [lastTwoDays, dayBefore, lastDay] = await Promise.all([
    compareGroups(store, service, previousWeek, { from: end - 2 * DAY, to: end }, options),
    compareGroups(store, service, previousWeek, { from: end - 2 * DAY, to: end - DAY }, options),
    compareGroups(store, service, previousWeek, { from: end - DAY, to: end }, options),
  ]);
  const persists = (list: EndpointComparison[], c: EndpointComparison, threshold: number) => {
    const day = list.find((d) => endpointMetricKey(d) === endpointMetricKey(c));
    return (
      day !== undefined &&
      Math.sign(day.changePct) === Math.sign(c.changePct) &&
      Math.abs(day.changePct) >= threshold &&
      day.pValue < config.alpha
    );
  };
  const tested: TestedChange[] = [];
  for (const comparison of lastTwoDays) {
    if (!heavy.has(endpointMetricKey(comparison))) continue;
    const threshold = thresholdPct(comparison.endpoint);
    // A change that is not there on each of the last two days is not a trend: test it as "no change".
    const sustained = persists(dayBefore, comparison, threshold) && persists(lastDay, comparison, threshold);
    tested.push({
      kind: 'trend',
      service,
      comparison: sustained ? comparison : { ...comparison, pValue: 1 },
      baseline: { commit: '*', from: previousWeek.from, to: previousWeek.to },
      candidate: { commit: '*', from: end - 2 * DAY, to: end },
      flag: null,
      method: 'week-over-week',
    });
  }
  return tested;
}
