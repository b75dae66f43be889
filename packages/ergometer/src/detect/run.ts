import { benjaminiHochberg } from '../stats/multiple';
import type { Store } from '../store/types';
import { type Alert, alertId, describeAlert } from './alert';
import type { TestedChange } from './candidate';
import type { DetectorConfig } from './config';
import { detectFlags } from './flag';
import { detectRollouts } from './rollout';
import { learnThresholds, thresholdFor } from './thresholds';
import { detectTrends } from './trend';

export interface DetectionRun {
  alerts: Alert[];
  /** How many comparisons were made (the size of the multiple-testing family). */
  tested: number;
  /** Services looked at. */
  services: string[];
}

/**
 * Runs every detector once over the store and returns the alerts. An alert needs both:
 *  - significance after Benjamini–Hochberg over every comparison of the run (all services,
 *    endpoints, rollouts and flag variants), at config.alpha; and
 *  - a regression larger than the endpoint's threshold (configured, else the larger of the default
 *    and the one learnt from its noise).
 * Improvements are not alerts. Ids are stable, so re-running finds the same alerts with the same ids.
 */
export async function runDetectors(
  store: Store,
  config: DetectorConfig,
  options: { now?: number; service?: string } = {},
): Promise<DetectionRun> {
  const now = options.now ?? Date.now();
  const services = options.service !== undefined ? [options.service] : (await store.services()).map((s) => s.service);
  const tested: TestedChange[] = [];
  const thresholds = new Map<string, ReturnType<typeof thresholdFor>>();
  for (const service of services) {
    const learnt = config.learnThresholds ? await learnThresholds(store, service, now, config) : new Map();
    const threshold = (endpoint: string) => {
      const key = `${service}\u0000${endpoint}`;
      let t = thresholds.get(key);
      if (!t) {
        t = thresholdFor(service, endpoint, config, learnt);
        thresholds.set(key, t);
      }
      return t;
    };
    tested.push(...(await detectRollouts(store, service, now, config)));
    tested.push(...(await detectFlags(store, service, now, config)));
    tested.push(...(await detectTrends(store, service, now, config, (e) => threshold(e).pct)));
    for (const t of tested) threshold(t.comparison.endpoint);
  }
  const adjusted = benjaminiHochberg(tested.map((t) => t.comparison.pValue));
  const alerts: Alert[] = [];
  tested.forEach((t, i) => {
    const pValue = adjusted[i] as number;
    const threshold = thresholds.get(`${t.service}\u0000${t.comparison.endpoint}`) ?? {
      pct: config.minEffectPct,
      source: 'default' as const,
    };
    const c = t.comparison;
    if (!(pValue < config.alpha && c.changePct >= threshold.pct)) return;
    const body: Omit<Alert, 'summary' | 'id'> = {
      kind: t.kind,
      service: t.service,
      endpoint: c.endpoint,
      metric: c.metric,
      baseline: t.baseline,
      candidate: t.candidate,
      flag: t.flag,
      changePct: c.changePct,
      ci: c.ci,
      pValue,
      pValueRaw: c.pValue,
      n: c.n,
      threshold: threshold.pct,
      thresholdSource: threshold.source,
      comparison: t.method,
      costMean: c.costMean,
      hostClasses: c.hostClasses,
      rootCause: [],
      detectedAt: now,
    };
    const id = alertId([
      t.kind,
      t.service,
      c.endpoint,
      c.metric,
      t.kind === 'trend' ? Math.floor((t.candidate.to ?? now) / (7 * 86_400_000)) : t.baseline.commit,
      t.kind === 'trend' ? '' : t.candidate.commit,
      t.flag?.key,
      t.flag?.variant,
    ]);
    alerts.push({ id, ...body, summary: describeAlert(body) });
  });
  // A trend that one rollout explains is that rollout's alert, not a second one.
  const explained = (trend: Alert) =>
    alerts.some(
      (a) =>
        a.kind === 'rollout' &&
        a.service === trend.service &&
        a.endpoint === trend.endpoint &&
        a.metric === trend.metric &&
        (a.candidate.from ?? 0) >= (trend.candidate.from ?? 0),
    );
  const kept = alerts.filter((a) => a.kind !== 'trend' || !explained(a));
  kept.sort((a, b) => b.changePct - a.changePct);
  return { alerts: kept, tested: tested.length, services };
}
