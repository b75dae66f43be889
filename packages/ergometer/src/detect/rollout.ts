import type { CommitInfo, Store } from '../store/types';
import type { TestedChange } from './candidate';
import { compareGroups, type GroupSelector } from './compare';
import type { DetectorConfig } from './config';

/** When a commit started serving: its recorded deploy, else its first sample. */
export function rolloutTime(commit: CommitInfo): number {
  return commit.deployedAt ?? commit.firstSeen;
}

/**
 * The rollout detector: every commit that started within the lookback is compared, endpoint by
 * endpoint, with the commit it replaced (the one that started last before it).
 *  - canary: while both served at the same time for at least minCanaryMs, the concurrent window
 *    (same traffic, same hour of the day: the cleanest comparison there is);
 *  - before/after otherwise: rolloutWindowMs of the old commit before the rollout against the same
 *    length of the new commit after it.
 */
export async function detectRollouts(
  store: Store,
  service: string,
  now: number,
  config: DetectorConfig,
): Promise<TestedChange[]> {
  const commits = (await store.commits(service)).sort((a, b) => rolloutTime(a) - rolloutTime(b));
  const tested: TestedChange[] = [];
  for (let i = 1; i < commits.length; i++) {
    const candidate = commits[i] as CommitInfo;
    const baseline = commits[i - 1] as CommitInfo;
    const start = rolloutTime(candidate);
    if (start < now - config.lookbackMs) continue;
    const overlapEnd = Math.min(baseline.lastSeen, candidate.lastSeen) + 1;
    let base: GroupSelector;
    let cand: GroupSelector;
    let method: TestedChange['method'];
    if (overlapEnd - start >= config.minCanaryMs) {
      method = 'canary';
      base = { commit: baseline.commit, from: start, to: overlapEnd };
      cand = { commit: candidate.commit, from: start, to: overlapEnd };
    } else {
      method = 'before-after';
      base = { commit: baseline.commit, from: start - config.rolloutWindowMs, to: start };
      cand = { commit: candidate.commit, from: start, to: Math.min(now, start + config.rolloutWindowMs) };
    }
    const comparisons = await compareGroups(store, service, base, cand, {
      minSamples: config.minSamples,
      confidence: config.confidence,
    });
    for (const comparison of comparisons) {
      tested.push({
        kind: 'rollout',
        service,
        comparison,
        baseline: { commit: baseline.commit, from: base.from as number, to: base.to as number },
        candidate: { commit: candidate.commit, from: cand.from as number, to: cand.to as number },
        flag: null,
        method,
      });
    }
  }
  return tested;
}
