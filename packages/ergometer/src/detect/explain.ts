import type { Store } from '../store/types';
import { formatP, formatPct } from './alert';
import type { DetectorConfig } from './config';
import { ProcessSpreads } from './processes';
import { detectRollouts, interimLookLengths, rolloutTime } from './rollout';
import { learnThresholds, thresholdFor } from './thresholds';

/**
 * Why the rollout test raised no alert on an endpoint for a commit: each look it has made by `now`, as the
 * detectors see it from the store — the comparison (method, change, interval), its p-value against what the
 * look may spend, and the endpoint's threshold. An alert needs, after Benjamini–Hochberg over every test of
 * its run, p ÷ (the look's share of alpha) below `alpha`, and a change at or above the threshold
 * (detect/run.ts); the correction depends on the other tests of that run, so these lines give the p-value
 * before it. One line per look, or one saying why there is none.
 */
export async function explainRolloutLooks(
  store: Store,
  service: string,
  commit: string,
  endpoint: string,
  config: DetectorConfig,
  now: number,
): Promise<string[]> {
  const info = (await store.commits(service)).find((c) => c.commit === commit);
  if (info === undefined) return [`no sample of commit ${commit} in the store`];
  const start = rolloutTime(info);
  const lines: string[] = [];
  let last = '';
  // A look is made at the first detector run past its time: ask as of each look time and once more at `now`.
  const lookTimes = [...interimLookLengths(config.rolloutWindowMs).reverse(), config.rolloutWindowMs]
    .map((lengthMs) => start + lengthMs)
    .concat(now)
    .filter((t) => t <= now);
  for (const at of lookTimes) {
    // One minute past the look: its window ends on a minute boundary that has then passed.
    const asOf = Math.min(now, at + 60_000);
    const tested = (await detectRollouts(store, service, asOf, config, new ProcessSpreads(store, asOf, config))).filter(
      (t) => t.candidate.commit === commit && t.comparison.endpoint === endpoint,
    );
    const threshold = thresholdFor(service, endpoint, config, await learnThresholds(store, service, asOf, config));
    for (const t of tested) {
      const c = t.comparison;
      const share = t.alphaShare ?? 1;
      const minutes = Math.round(((t.candidate.to ?? asOf) - start) / 60_000);
      const spread = c.processes?.spreadPct;
      const line =
        `${t.method} look over ${minutes} min after the rollout against ${t.baseline.commit}: ${formatPct(c.changePct)} ` +
        `(${+(config.confidence * 100).toFixed(1)}% CI ${formatPct(c.ci[0])} to ${formatPct(c.ci[1])}, ${c.n.baseline} vs ${c.n.candidate} samples), ` +
        `p=${formatP(c.pValue)} ÷ ${share < 1 ? `${+(share * 100).toFixed(1)}% of alpha` : 'all of alpha'} ` +
        `= ${formatP(Math.min(1, c.pValue / share))} before correction (alpha ${config.alpha}); ` +
        `threshold ${+threshold.pct.toFixed(1)}% (${threshold.source})` +
        (spread !== undefined ? `; processes of the same code differ by ~${spread.toFixed(1)}%` : '');
      // Runs between two looks repeat the same comparison.
      if (line !== last) lines.push(line);
      last = line;
    }
  }
  if (lines.length === 0)
    lines.push(`no look compared ${endpoint} yet (too few samples a side, or no look due: docs/detectors.md)`);
  return lines;
}
