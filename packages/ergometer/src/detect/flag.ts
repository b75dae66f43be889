import { minuteOf } from '../store/rollup';
import type { Store } from '../store/types';
import type { TestedChange } from './candidate';
import { compareGroupMaps, groupsFromRows } from './compare';
import type { DetectorConfig } from './config';
import { hasStopped, INTERIM_ALPHA_SHARE } from './rollout';
import { endOfMinute, minuteWindow } from './window';

const HOUR_MS = 3_600_000;

/**
 * Share of alpha one look of the flag test may spend, Haybittle–Peto style as the rollout test
 * (rollout.ts): the hourly looks are split by the day of the commit's life they fall in (days from
 * its first sample, `windowMs` long). The look that completes a day spends 1 − INTERIM_ALPHA_SHARE
 * of alpha; the other hourly looks of the day share INTERIM_ALPHA_SHARE equally, so by Bonferroni an
 * A/A flag alerts at most with probability alpha per day, however often the detectors run, and a
 * large regression is still caught within hours. The final look of a stopped commit's data spends
 * the daily share (its data no longer changes, every later run repeats it).
 *
 * @param startMs the commit's first sample
 * @param endMs the end of the look's window (a whole hour, or where a stopped commit's data ended)
 */
export function flagLookAlphaShare(startMs: number, endMs: number, windowMs: number, stopped: boolean): number {
  const daily = 1 - INTERIM_ALPHA_SHARE;
  if (stopped) return daily;
  const day = (t: number) => Math.max(0, Math.floor((t - startMs) / windowMs));
  if (day(endMs) > day(endMs - HOUR_MS)) return daily;
  return INTERIM_ALPHA_SHARE / Math.max(1, Math.round(windowMs / HOUR_MS) - 1);
}

/**
 * The flag detector: for each commit that served within the lookback, over its most recent
 * flagWindowMs, every flag key seen (none has to be registered) and every variant of it against the
 * most common variant of that key on that endpoint — within one commit and one window, so a
 * rollout never masquerades as a flag.
 *
 * The window ends at the last whole hour (or, once the commit has stopped, where its data
 * stopped), not at its latest sample: `serve` runs the detectors every minute, and a window sliding with each run
 * retested almost the same data sixty times an hour (more chances for a false alarm, alerts that
 * flicker). So a commit's flags are tested on new data at most once an hour; a commit that started
 * within the current hour waits for its first whole hour. The hourly looks split alpha over each day
 * ({@link flagLookAlphaShare}): at full alpha each, they alerted on 4 in 1000 A/A flags a day
 * (docs/benchmarks.md, "False alerts on A/A flags").
 */
export async function detectFlags(
  store: Store,
  service: string,
  now: number,
  config: DetectorConfig,
): Promise<TestedChange[]> {
  const commits = (await store.commits(service)).filter((c) => c.lastSeen >= now - config.lookbackMs);
  const tested: TestedChange[] = [];
  for (const commit of commits) {
    // The window ends at the last whole hour, so a run changes the tested data at most once an hour;
    // once the commit has stopped (as for rollouts: nothing for the shortest look's length, it was
    // replaced), with the minute of its last sample, which every later run sees the same (window.ts).
    const stopped = hasStopped(commit, now, config);
    const lastMinuteEnd = endOfMinute(commit.lastSeen);
    const end = stopped ? lastMinuteEnd : Math.min(Math.floor(now / HOUR_MS) * HOUR_MS, lastMinuteEnd);
    // A commit that started within the current hour has no whole hour yet.
    if (end <= minuteOf(commit.firstSeen)) continue;
    const { from, to } = minuteWindow(Math.max(commit.firstSeen, end - config.flagWindowMs), end);
    const alphaShare = flagLookAlphaShare(commit.firstSeen, end, config.flagWindowMs, stopped);
    // One query for every flag of the commit: each variant's groups are read from its rows.
    const rows = await store.aggregates({
      service,
      commit: commit.commit,
      from,
      to,
      flags: 'all',
      groupBy: ['endpoint', 'hostClass', 'flag'],
      histograms: 'cost',
    });
    // endpoint → flag key → variant → samples
    const seen = new Map<string, Map<string, Map<string, number>>>();
    for (const row of rows) {
      if (row.flagKey === '') continue;
      const keys = seen.get(row.endpoint) ?? new Map<string, Map<string, number>>();
      const variants = keys.get(row.flagKey) ?? new Map<string, number>();
      variants.set(row.flagVariant, (variants.get(row.flagVariant) ?? 0) + row.n);
      keys.set(row.flagKey, variants);
      seen.set(row.endpoint, keys);
    }
    // Each (key, control, variant) is compared once for all endpoints that carry it.
    const pairs = new Map<string, { key: string; control: string; variant: string; endpoints: Set<string> }>();
    for (const [endpoint, keys] of seen) {
      for (const [key, variants] of keys) {
        const ordered = [...variants.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
        const control = ordered[0]?.[0];
        if (control === undefined) continue;
        for (const [variant] of ordered.slice(1)) {
          const id = `${key}\u0000${control}\u0000${variant}`;
          const pair = pairs.get(id) ?? { key, control, variant, endpoints: new Set<string>() };
          pair.endpoints.add(endpoint);
          pairs.set(id, pair);
        }
      }
    }
    for (const pair of pairs.values()) {
      const comparisons = compareGroupMaps(
        groupsFromRows(rows, { key: pair.key, variant: pair.control }),
        groupsFromRows(rows, { key: pair.key, variant: pair.variant }),
        { minSamples: config.minSamples, confidence: config.confidence },
      );
      for (const comparison of comparisons) {
        if (!pair.endpoints.has(comparison.endpoint)) continue;
        tested.push({
          kind: 'flag',
          service,
          comparison,
          baseline: { commit: commit.commit, from, to },
          candidate: { commit: commit.commit, from, to },
          flag: { key: pair.key, variant: pair.variant, control: pair.control },
          method: 'flag-variants',
          alphaShare,
        });
      }
    }
  }
  return tested;
}
