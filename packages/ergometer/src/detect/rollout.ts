import { normalQuantile } from '../stats/distributions';
import { MINUTE_MS } from '../store/rollup';
import type { CommitInfo, Store } from '../store/types';
import type { TestedChange } from './candidate';
import { type EndpointComparison, endpointMetricKey, type GroupSelector, inBlocks } from './compare';
import type { DetectorConfig } from './config';
import { ProcessSpreads } from './processes';
import { endOfMinute, type MinuteWindow, minuteWindow } from './window';

/** When a commit started serving: its recorded deploy, else its first sample. */
export function rolloutTime(commit: CommitInfo): number {
  return commit.deployedAt ?? commit.firstSeen;
}

/**
 * Whether a commit's data has stopped growing: it sent nothing for the shortest look's length (it
 * was replaced in turn). Its final look is then where its data stopped.
 */
export function hasStopped(commit: CommitInfo, now: number, config: DetectorConfig): boolean {
  return now - commit.lastSeen > config.rolloutWindowMs / 2 ** INTERIM_LOOKS;
}

/** Interim looks before the final one: the rollout window halved 1..INTERIM_LOOKS times. */
export const INTERIM_LOOKS = 5;
/** Share of alpha spent on all interim looks together; the final look gets the rest. */
export const INTERIM_ALPHA_SHARE = 0.1;

/** The interim looks' lengths after the rollout, longest first: the window halved 1..INTERIM_LOOKS times. */
export function interimLookLengths(windowMs: number): number[] {
  return Array.from({ length: INTERIM_LOOKS }, (_, i) => windowMs / 2 ** (i + 1));
}

/** Which look of the sequential rollout test a detector run makes, if any yet. */
export interface RolloutLook {
  /** The candidate's window: this long after the rollout, ms. */
  lengthMs: number;
  final: boolean;
  /** Share of alpha this look may spend: p-values are divided by it before correction. */
  alphaShare: number;
}

/**
 * The rollout test is a group-sequential test with at most INTERIM_LOOKS + 1 looks, whatever how
 * often the detectors run (`serve` runs them every minute). A run compares the window up to the
 * latest look time already passed, never the data up to "now": so every run between two look
 * times repeats the same comparison on the same data, and a rollout is tested at most 6 times.
 * Looks at windowMs/32, /16, /8, /4, /2 (interim) and at the full window (final: windowMs, or
 * where the data stopped before it). Alpha is split Haybittle–Peto style: the interim looks
 * share INTERIM_ALPHA_SHARE of it equally (a large regression is still caught in minutes), the
 * final look gets the rest (so the power at the end is almost that of a single test). By
 * Bonferroni over the looks a rollout without change alerts with probability ≤ alpha in all; a
 * test repeated on growing data at full alpha every minute alerted 5–10× more often
 * (docs/detectors.md, "Repeated looks").
 *
 * @param elapsedMs time since the rollout, ms
 * @param windowMs the full window (config.rolloutWindowMs)
 * @param endedAfterMs when the compared data stopped growing (a canary whose old commit stopped, a
 *   before/after whose new commit was replaced): its length after the rollout, ms; the final look is there
 */
export function rolloutLook(elapsedMs: number, windowMs: number, endedAfterMs?: number): RolloutLook | undefined {
  const full = Math.min(windowMs, endedAfterMs ?? windowMs);
  if (elapsedMs >= full) return { lengthMs: full, final: true, alphaShare: 1 - INTERIM_ALPHA_SHARE };
  for (const lengthMs of interimLookLengths(windowMs)) {
    if (lengthMs <= elapsedMs && lengthMs < full) {
      return { lengthMs, final: false, alphaShare: INTERIM_ALPHA_SHARE / INTERIM_LOOKS };
    }
  }
  return undefined;
}

/**
 * How far a look may reach past the end of its canary and still be the canary's: a tenth of the look,
 * at least two minutes. Where the old commit's last sample came a minute or two before the new one's
 * (a fleet rarely stops both at once), the look ended past the canary by that much and became a
 * before/after over the hours before the rollout — where the cost had moved with the hour — instead of
 * the concurrent comparison of almost all of it (the demo's quiet canary alerted so: +21% before/after,
 * +9% in the canary). The new commit's few minutes alone are left out; a longer stretch alone is a real
 * rollout to all traffic, and gets the before/after.
 */
export function canarySlackMs(window: MinuteWindow): number {
  return Math.max(2 * MINUTE_MS, Math.floor((window.to - window.from) / 10 / MINUTE_MS) * MINUTE_MS);
}

/** How far (two-sided 99%) a before/after estimate may sit from its canary's before the canary decides. */
export const CANARY_CHECK_Z = normalQuantile(0.995);

/**
 * Whether a before/after comparison disagrees with the canary of the same rollout and endpoint beyond
 * sampling error: |ln r_ba − ln r_canary| > z·√(se_ba² + se_canary²). The two share samples (the
 * canary's are part of the before/after's), which makes the difference's true variance smaller than
 * that sum: the check is conservative, it calls drift only when it is plainly there.
 */
export function disagreesWithCanary(beforeAfter: EndpointComparison, canary: EndpointComparison): boolean {
  const diff = Math.log1p(beforeAfter.changePct / 100) - Math.log1p(canary.changePct / 100);
  const se = Math.hypot(beforeAfter.seLogRatio, canary.seLogRatio);
  return Math.abs(diff) > CANARY_CHECK_Z * se;
}

/**
 * The rollout detector: every commit that started within the lookback is compared, endpoint by
 * endpoint, with the commit it replaced (the one that started last before it).
 *  - canary: while both served at the same time for at least minCanaryMs, the concurrent window
 *    (same traffic, same hour of the day: the cleanest comparison there is);
 *  - before/after otherwise, and for the looks that reach past the end of a canary: up to
 *    rolloutWindowMs of the old commit before (and during) the rollout against the new commit;
 *  - checked by the canary: a before/after compares different hours, and a machine that got busier,
 *    a neighbour, a cache that warmed moves it with no change in the code (the demo's two-core
 *    machine moved unchanged endpoints by +25% between its phases). So on the looks past a canary of
 *    at least minCanaryMs, each endpoint's before/after is set beside the concurrent comparison of the
 *    whole canary; where they disagree beyond sampling error ({@link disagreesWithCanary}), the cost
 *    moved with the hour, and the canary's comparison is the one tested (method 'canary'). Where they
 *    agree, the before/after keeps its extra samples (a canary on a small share is still followed
 *    by the comparison of the full rollout).
 * Every comparison is of two groups of processes, widened by how much processes of the same code
 * differ (`processes`, one per detector run: detect/processes.ts), so that with few processes a side a
 * slower process is not read as a dearer commit.
 * The candidate's window grows in the steps of {@link rolloutLook} (a sequential test), not with
 * every run. Windows are whole minutes of the store's buckets (window.ts): from the start of the
 * rollout's minute to a minute boundary that has passed.
 * `focus` tests one commit's rollout at one endpoint only (explain.ts): the same comparisons, each
 * endpoint's being its own, with only that endpoint's rows read.
 */
export async function detectRollouts(
  store: Store,
  service: string,
  now: number,
  config: DetectorConfig,
  processes = new ProcessSpreads(store, now, config),
  focus?: { commit: string; endpoint: string },
): Promise<TestedChange[]> {
  const commits = (await store.commits(service)).sort((a, b) => rolloutTime(a) - rolloutTime(b));
  const tested: TestedChange[] = [];
  const compare = (base: GroupSelector, cand: GroupSelector) =>
    focus === undefined
      ? processes.compare(service, base, cand)
      : processes.compare(service, { ...base, endpoint: focus.endpoint }, { ...cand, endpoint: focus.endpoint });
  for (let i = 1; i < commits.length; i++) {
    const candidate = commits[i] as CommitInfo;
    const baseline = commits[i - 1] as CommitInfo;
    if (focus !== undefined && candidate.commit !== focus.commit) continue;
    const start = rolloutTime(candidate);
    if (start < now - config.lookbackMs) continue;
    const overlapMs = Math.min(baseline.lastSeen, candidate.lastSeen, now) + 1 - start;
    // The compared data is complete once the new commit has sent nothing for the shortest look's
    // length (it was replaced in turn): then the final look is where its data stopped.
    const ended = hasStopped(candidate, now, config);
    const endedAfterMs = ended ? candidate.lastSeen + 1 - start : undefined;
    const look = rolloutLook(now - start, config.rolloutWindowMs, endedAfterMs);
    if (!look) continue;
    // Whole minutes (window.ts): from the minute of the rollout; an interim look (or a final one at
    // the full window) ends at the minute boundary its look time rounds down to, which has passed, so
    // every run until the next look sees the same data; the final look of data that ended ends with
    // the minute of its last sample.
    const stoppedEarly = look.final && endedAfterMs !== undefined && endedAfterMs <= config.rolloutWindowMs;
    const window = minuteWindow(start, stoppedEarly ? endOfMinute(candidate.lastSeen) : start + look.lengthMs);
    // Only when a look starts in the rollout's own minute: wait until that minute is over.
    if (window.to > now) continue;
    let base: GroupSelector;
    let cand: GroupSelector;
    let method: TestedChange['method'];
    // The canary: the minutes both commits served in, to the end of the minute of the earlier one's
    // last sample. At the store's resolution (whole minutes) a look that ends there is concurrent,
    // even when the old commit's last sample came a moment before the new one's.
    const canary =
      overlapMs >= config.minCanaryMs ? minuteWindow(start, endOfMinute(start + overlapMs - 1)) : undefined;
    if (canary && canary.to + canarySlackMs(window) >= window.to) {
      // Both commits served through the whole look (but for a sliver at its end): the concurrent (canary)
      // comparison, over the minutes both served in.
      method = 'canary';
      const concurrent = { from: window.from, to: Math.min(window.to, canary.to) };
      base = inBlocks({ commit: baseline.commit, ...concurrent });
      cand = inBlocks({ commit: candidate.commit, ...concurrent });
    } else {
      // No canary, or the look reaches past its end (the new commit took all the traffic): the old
      // commit before and during the rollout against the new one, so a short canary on a small
      // share is still followed by the comparison of the full rollout.
      method = 'before-after';
      base = inBlocks({ commit: baseline.commit, ...minuteWindow(start - config.rolloutWindowMs, window.to) });
      cand = inBlocks({ commit: candidate.commit, ...window });
    }
    const comparisons = await compare(base, cand);
    // The looks past a canary's end: the canary checks each endpoint's before/after.
    const checks =
      method === 'before-after' && canary
        ? byEndpoint(
            await compare(
              inBlocks({ commit: baseline.commit, ...canary }),
              inBlocks({ commit: candidate.commit, ...canary }),
            ),
          )
        : new Map<string, EndpointComparison>();
    for (const comparison of comparisons) {
      const check = checks.get(endpointMetricKey(comparison));
      if (check && canary && disagreesWithCanary(comparison, check)) {
        tested.push({
          kind: 'rollout',
          service,
          comparison: check,
          baseline: { commit: baseline.commit, ...canary },
          candidate: { commit: candidate.commit, ...canary },
          flag: null,
          method: 'canary',
          alphaShare: look.alphaShare,
          overruled: { changePct: comparison.changePct, ci: comparison.ci },
        });
        continue;
      }
      tested.push({
        kind: 'rollout',
        service,
        comparison,
        baseline: { commit: baseline.commit, from: base.from as number, to: base.to as number },
        candidate: { commit: candidate.commit, from: cand.from as number, to: cand.to as number },
        flag: null,
        method,
        alphaShare: look.alphaShare,
      });
    }
  }
  return tested;
}

/** Comparisons by endpoint and metric. */
function byEndpoint(comparisons: readonly EndpointComparison[]): Map<string, EndpointComparison> {
  return new Map(comparisons.map((c) => [endpointMetricKey(c), c]));
}
