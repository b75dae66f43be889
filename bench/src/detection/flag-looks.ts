/**
 * False alerts of the flag detector from its repeated looks. A flag's variants are compared on the
 * commit's most recent day (flagWindowMs); `serve` runs the detectors every minute. The detector
 * used to test a window ending at the commit's latest sample on every run, then windows ending at
 * whole hours at full α; it now splits α over each day's hourly looks (flag.ts,
 * flagLookAlphaShare: 0.9 for the look that completes a day, 0.1 shared by the 23 others). This
 * measures what the repeated looks cost under each schedule.
 *
 * Model: an A/A flag (variant and control cost the same). The z statistic of the variant-vs-control
 * comparison on a window is, to the accuracy of the normal approximation the delta method already
 * makes (docs/MATH.md), the normalised sum of the window's independent increments, one per minute
 * of traffic; so each schedule is a set of windows over one random walk. A false alert is a look
 * whose z passes the one-sided α/2 point (two-sided p < α, regressions only). The minimum effect is
 * not applied: this is the case where the threshold does not bind (busy flags have it bind and
 * alert less).
 */
import {
  binomialUpperBound,
  DEFAULT_DETECTOR_CONFIG,
  flagLookAlphaShare,
  normalQuantile,
  seededRandom,
} from 'ergometer';

import type { BenchTable } from '../report';
import { normalSampler } from './false-alerts';

const MINUTES_PER_DAY = 1440;

type Schedule =
  | 'one test at the end of the first day'
  | 'hourly, α split over each day’s looks (now)'
  | 'hourly, each look at full α (before)'
  | 'every minute, sliding, full α (before that)';

/**
 * How many of `flags` A/A flags on a commit that serves `days` days alert at least once under each
 * schedule. Windows: the commit's data so far, at most the last day (flagWindowMs).
 */
export function repeatedFlagLooks(flags: number, days: number, seed: number): Record<Schedule, number> {
  const random = seededRandom(seed);
  const normal = normalSampler(random);
  const z = normalQuantile(1 - DEFAULT_DETECTOR_CONFIG.alpha / 2);
  const minutes = days * MINUTES_PER_DAY;
  const cumulative = new Float64Array(minutes + 1);
  const counts: Record<Schedule, number> = {
    'one test at the end of the first day': 0,
    'hourly, α split over each day’s looks (now)': 0,
    'hourly, each look at full α (before)': 0,
    'every minute, sliding, full α (before that)': 0,
  };
  const zOf = (end: number) => {
    const start = Math.max(0, end - MINUTES_PER_DAY);
    return ((cumulative[end] as number) - (cumulative[start] as number)) / Math.sqrt(end - start);
  };
  const passes = (end: number) => zOf(end) > z;
  // The detector's own share for each hourly look (minutes from the commit's first sample).
  const MINUTE_MS = 60_000;
  const splitZ = new Map<number, number>();
  for (let end = 60; end <= minutes; end += 60) {
    const share = flagLookAlphaShare(0, end * MINUTE_MS, MINUTES_PER_DAY * MINUTE_MS, false);
    splitZ.set(end, normalQuantile(1 - (DEFAULT_DETECTOR_CONFIG.alpha * share) / 2));
  }
  for (let f = 0; f < flags; f++) {
    for (let m = 1; m <= minutes; m++) cumulative[m] = (cumulative[m - 1] as number) + normal();
    if (passes(MINUTES_PER_DAY)) counts['one test at the end of the first day']++;
    for (let end = 60; end <= minutes; end += 60) {
      if (zOf(end) > (splitZ.get(end) as number)) {
        counts['hourly, α split over each day’s looks (now)']++;
        break;
      }
    }
    for (let end = 60; end <= minutes; end += 60) {
      if (passes(end)) {
        counts['hourly, each look at full α (before)']++;
        break;
      }
    }
    for (let end = 1; end <= minutes; end++) {
      if (passes(end)) {
        counts['every minute, sliding, full α (before that)']++;
        break;
      }
    }
  }
  return counts;
}

export async function benchFlagLooks(): Promise<BenchTable> {
  const quick = process.env.BENCH_QUICK === '1';
  const started = performance.now();
  const rows: (string | number)[][] = [];
  for (const days of [1, 3]) {
    const flags = quick ? 5_000 : days === 1 ? 60_000 : 20_000;
    const counts = repeatedFlagLooks(flags, days, 4242 + days);
    const single = counts['one test at the end of the first day'];
    for (const [schedule, count] of Object.entries(counts)) {
      const looks =
        schedule === 'one test at the end of the first day'
          ? 1
          : schedule.startsWith('hourly')
            ? 24 * days
            : MINUTES_PER_DAY * days;
      rows.push([
        `${days} day${days > 1 ? 's' : ''}`,
        schedule,
        looks,
        flags.toLocaleString('en-US'),
        ((1000 * count) / flags).toFixed(2),
        (1000 * binomialUpperBound(count, flags)).toFixed(2),
        single > 0 ? `${(count / single).toFixed(1)}×` : '–',
      ]);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    title: 'False alerts on A/A flags: repeated looks',
    description:
      'A flag whose variant costs the same as its control, on a commit that serves 1 or 3 days, tested on the commit’s most recent ' +
      `day (flagWindowMs), α = ${DEFAULT_DETECTOR_CONFIG.alpha} (two-sided; regressions only), under four schedules: once at full α; ` +
      'hourly on windows that end at whole hours with α split over each day’s looks (the flag detector now: 0.9 α for the look ' +
      'that completes a day of the commit, 0.1 α shared by the 23 others); hourly at full α each (the detector before); and every ' +
      'minute on a window ending at the latest sample at full α (before that). Model: the comparison’s z on a window is the normalised sum of ' +
      'independent per-minute increments of a random walk (the normal approximation the delta method makes), so the windows of ' +
      'one schedule are correlated as real overlapping windows are; the minimum effect is not applied (it binds on busy flags and ' +
      `only lowers the rates) — bench/src/detection/flag-looks.ts, ${seconds.toFixed(0)} s.`,
    columns: [
      'commit serves',
      'schedule',
      'looks',
      'A/A flags',
      'with a false alert per 1000',
      '95% upper bound per 1000',
      '× one test',
    ],
    rows,
    notes: [
      'A single test alerts an A/A flag with probability α/2 = 0.5 per 1000. Hourly looks at full α cost several times that, ' +
        'testing every minute more still. With α split over each day’s looks, Bonferroni bounds a day’s looks at α, so the rate ' +
        'stays at about one test’s per day of the commit, while a large regression is still caught within hours (an interim look ' +
        'needs z ≈ 4.5 instead of 3.3). See docs/detectors.md, “Repeated looks”.',
    ],
  };
}
