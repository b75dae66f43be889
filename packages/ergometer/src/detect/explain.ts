import type { CommitInfo, Store } from '../store/types';
import { type Alert, formatLevel, formatP, formatPct } from './alert';
import type { DetectorConfig } from './config';
import { ProcessSpreads } from './processes';
import { detectRollouts, interimLookLengths, rolloutTime } from './rollout';
import { learnThresholds, thresholdFor } from './thresholds';

/** One look of the rollout test at one endpoint, as the detectors saw it then. */
export interface LookVerdict {
  method: Alert['comparison'];
  /** How long after the rollout the look's candidate window ends. */
  minutesAfterRollout: number;
  baselineCommit: string;
  changePct: number;
  ci: [number, number];
  /** The level of `ci`. */
  confidence: number;
  n: { baseline: number; candidate: number };
  /** The comparison's own p-value, before any correction. */
  pValue: number;
  /** The share of alpha this look may spend (interim looks little, the final look most: detect/rollout.ts). */
  alphaShare: number;
  /** `pValue ÷ alphaShare` (at most 1): what Benjamini–Hochberg then corrects for the run's other tests. */
  pForLook: number;
  alpha: number;
  threshold: { pct: number; source: Alert['thresholdSource'] };
  /** How much processes of the same code differ (%, one standard deviation), when the interval was widened for it. */
  spreadPct?: number;
  /**
   * The conditions of an alert the look misses before the run's correction: `significance` (`pForLook` not
   * below alpha), `threshold` (a change below the threshold). The correction only raises p, so a look that
   * misses one raised no alert; one that misses none did unless the run's other tests made the corrected p
   * reach alpha.
   */
  missed: Array<'significance' | 'threshold'>;
  /** `missed` is empty. */
  meetsConditions: boolean;
}

/** The looks of the rollout test of `commit` at `endpoint`, or why there are none. */
export interface RolloutExplanation {
  service: string;
  commit: string;
  endpoint: string;
  /** When the commit rolled out (its deploy, else its first sample), ms; undefined when it has no sample. */
  rolledOutAt?: number;
  looks: LookVerdict[];
  /** Set when `looks` is empty: why. */
  none?: string;
}

/**
 * Why the rollout test raised an alert on an endpoint for a commit, or why not: each look it has made by
 * `now`, as the detectors see it from the store — the comparison (method, change, interval), its p-value
 * against what the look may spend, and the endpoint's threshold. An alert needs, after Benjamini–Hochberg
 * over every test of its run, p ÷ (the look's share of alpha) below `alpha`, and a change at or above the
 * threshold (detect/run.ts); the correction depends on the other tests of that run, so a look gives the
 * p-value before it. `ergometer detect --explain` prints these; so does the demo when a scripted alert is missing.
 */
export async function explainRollout(
  store: Store,
  service: string,
  commit: string,
  endpoint: string,
  config: DetectorConfig,
  now: number,
): Promise<RolloutExplanation> {
  const commits = (await store.commits(service)).sort((a, b) => rolloutTime(a) - rolloutTime(b));
  const at = commits.findIndex((c) => c.commit === commit);
  const info = commits[at];
  if (info === undefined)
    return { service, commit, endpoint, looks: [], none: `no sample of commit ${commit} in the store` };
  const start = rolloutTime(info);
  // The rollout detector compares a commit with the one that rolled out before it (detectRollouts).
  if (at === 0) {
    const none = `${commit} is the first commit of ${service} in the store: there is no earlier one to compare it with`;
    return { service, commit, endpoint, rolledOutAt: start, looks: [], none };
  }
  const looks: LookVerdict[] = [];
  // A look is made at the first detector run past its time: ask as of each look time and once more at `now`.
  const lookTimes = [...interimLookLengths(config.rolloutWindowMs).reverse(), config.rolloutWindowMs]
    .map((lengthMs) => start + lengthMs)
    .concat(now)
    .filter((t) => t <= now);
  for (const lookAt of lookTimes) {
    // One minute past the look: its window ends on a minute boundary that has then passed.
    const asOf = Math.min(now, lookAt + 60_000);
    const [tested, learnt] = await Promise.all([
      detectRollouts(store, service, asOf, config, new ProcessSpreads(store, asOf, config), { commit, endpoint }),
      learnThresholds(store, service, asOf, config, endpoint),
    ]);
    const threshold = thresholdFor(service, endpoint, config, learnt);
    for (const t of tested) {
      const c = t.comparison;
      const alphaShare = t.alphaShare ?? 1;
      const pForLook = Math.min(1, c.pValue / alphaShare);
      const missed: LookVerdict['missed'] = [];
      if (!(pForLook < config.alpha)) missed.push('significance');
      if (!(c.changePct >= threshold.pct)) missed.push('threshold');
      const look: LookVerdict = {
        method: t.method,
        minutesAfterRollout: Math.round(((t.candidate.to ?? asOf) - start) / 60_000),
        baselineCommit: t.baseline.commit,
        changePct: c.changePct,
        ci: c.ci,
        confidence: config.confidence,
        n: c.n,
        pValue: c.pValue,
        alphaShare,
        pForLook,
        alpha: config.alpha,
        threshold: { pct: threshold.pct, source: threshold.source },
        ...(c.processes?.spreadPct !== undefined ? { spreadPct: c.processes.spreadPct } : {}),
        missed,
        meetsConditions: missed.length === 0,
      };
      // Runs between two looks repeat the same comparison.
      const previous = looks[looks.length - 1];
      if (previous === undefined || describeLookVerdict(previous) !== describeLookVerdict(look)) looks.push(look);
    }
  }
  const explanation: RolloutExplanation = { service, commit, endpoint, rolledOutAt: start, looks };
  if (looks.length === 0) {
    explanation.none = `no look compared ${endpoint} yet (too few samples a side, or no look due: docs/detectors.md)`;
  }
  return explanation;
}

/** The commit of `service` that rolled out last (its deploy, else its first sample); undefined when it has none. */
export async function latestRollout(store: Store, service: string): Promise<string | undefined> {
  let latest: CommitInfo | undefined;
  for (const c of await store.commits(service))
    if (latest === undefined || rolloutTime(c) > rolloutTime(latest)) latest = c;
  return latest?.commit;
}

/** One line per look: what it compared, how sure, against which bar, and whether it met both conditions. */
export function describeLookVerdict(look: LookVerdict): string {
  const share = look.alphaShare < 1 ? `${+(look.alphaShare * 100).toFixed(1)}% of alpha` : 'all of alpha';
  return (
    `${look.method} look over ${look.minutesAfterRollout} min after the rollout against ${look.baselineCommit}: ` +
    `${formatPct(look.changePct)} (${formatLevel(look.confidence)} CI ${formatPct(look.ci[0])} to ${formatPct(look.ci[1])}, ` +
    `${look.n.baseline} vs ${look.n.candidate} samples), p=${formatP(look.pValue)} ÷ ${share} = ${formatP(look.pForLook)} ` +
    `before correction (alpha ${look.alpha}); threshold ${+look.threshold.pct.toFixed(1)}% (${look.threshold.source})` +
    (look.spreadPct !== undefined ? `; processes of the same code differ by ~${look.spreadPct.toFixed(1)}%` : '') +
    ` → ${describeMissed(look.missed)}`
  );
}

/** "meets both conditions", or which it missed: "not significant", "below the threshold". */
export function describeMissed(missed: LookVerdict['missed']): string {
  if (missed.length === 0) return 'meets both conditions';
  return missed.map((m) => (m === 'significance' ? 'not significant' : 'below the threshold')).join(', ');
}

/** An explanation as lines: one per look, or one saying why there is none. */
export function explanationLines(explanation: RolloutExplanation): string[] {
  return explanation.none !== undefined ? [explanation.none] : explanation.looks.map(describeLookVerdict);
}
