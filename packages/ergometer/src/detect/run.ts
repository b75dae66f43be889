import { shortenFiles } from '../profile/diff';
import { rootCauseOf } from '../profile/root-cause';
import { benjaminiHochberg } from '../stats/multiple';
import { minuteOf } from '../store/rollup';
import type { ProfileEndpointRow, Store } from '../store/types';
import { type Alert, alertId, describeAlert } from './alert';
import type { TestedChange } from './candidate';
import { endpointMetricKey, inBlocks } from './compare';
import { DEFAULT_DETECTOR_CONFIG, type DetectorConfig } from './config';
import { detectFlags } from './flag';
import { type FunctionTest, isFunctionRegression, testFunctions } from './function';
import { ProcessSpreads } from './processes';
import { detectRollouts, rolloutTime } from './rollout';
import { learnThresholds, thresholdFor } from './thresholds';
import { detectTrends } from './trend';
import { endOfMinute, minuteWindow, WINDOW_BUCKET_MS } from './window';

export interface DetectionRun {
  alerts: Alert[];
  /** How many comparisons were made (the size of the multiple-testing family). */
  tested: number;
  /** Services looked at. */
  services: string[];
}

const NOTHING_LEARNT: ReadonlyMap<string, number> = new Map();

/**
 * Runs every detector once over the store and returns the alerts. An alert needs both:
 *  - significance after Benjamini–Hochberg over every comparison of the run (all services,
 *    endpoints, rollouts and flag variants), at config.alpha, each rollout p-value first divided
 *    by the share of alpha its look may spend (rolloutLook); and
 *  - a regression larger than the endpoint's threshold (configured, else the larger of the default
 *    and the one learnt from its noise; flags: configured, else the default).
 * Improvements are not alerts. Ids are stable, so re-running finds the same alerts with the same ids.
 */
export async function runDetectors(
  store: Store,
  config: DetectorConfig,
  options: { now?: number; service?: string } = {},
): Promise<DetectionRun> {
  const now = options.now ?? Date.now();
  const processes = new ProcessSpreads(store, now, config);
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
    tested.push(...(await detectRollouts(store, service, now, config, processes)));
    tested.push(...(await detectFlags(store, service, now, config)));
    tested.push(...(await detectTrends(store, service, now, config, (e) => threshold(e).pct)));
    for (const t of tested) threshold(t.comparison.endpoint);
  }
  // A look of the sequential rollout test that may spend only part of alpha counts as a larger p.
  const adjusted = benjaminiHochberg(tested.map((t) => Math.min(1, t.comparison.pValue / (t.alphaShare ?? 1))));
  const alerts: Alert[] = [];
  tested.forEach((t, i) => {
    const pValue = adjusted[i] as number;
    // A learnt threshold is how far the endpoint's mean wanders between hours of the same code. Flag
    // variants are compared over the same minutes of the same processes, their requests interleaved:
    // the wander moves both sides alike and is no reason to ask more of the flag (on the demo's loaded
    // machine it learnt 26–40% for search, above the flag's real +36%). So flags take the configured
    // threshold or the default.
    const threshold =
      t.kind === 'flag'
        ? thresholdFor(t.service, t.comparison.endpoint, config, NOTHING_LEARNT)
        : (thresholds.get(`${t.service}\u0000${t.comparison.endpoint}`) ?? {
            pct: config.minEffectPct,
            source: 'default' as const,
          });
    const c = t.comparison;
    if (!(pValue < config.alpha && c.changePct >= threshold.pct)) return;
    const body: Omit<Alert, 'summary' | 'id'> = {
      kind: t.kind,
      service: t.service,
      endpoint: c.endpoint,
      metric: c.metric,
      baseline: t.baseline,
      candidate: t.candidate,
      bucketMs: WINDOW_BUCKET_MS,
      flag: t.flag,
      changePct: c.changePct,
      ci: c.ci,
      confidence: config.confidence,
      pValue,
      pValueRaw: c.pValue,
      n: c.n,
      threshold: threshold.pct,
      thresholdSource: threshold.source,
      comparison: t.method,
      ...(t.overruled ? { beforeAfterOverruled: t.overruled } : {}),
      costMean: c.costMean,
      hostClasses: c.hostClasses,
      varianceFrom: c.varianceFrom,
      ...(c.processes ? { processes: c.processes } : {}),
      rootCause: [],
      detectedAt: now,
    };
    const id = alertId([
      t.kind,
      t.service,
      c.endpoint,
      c.metric,
      // A flag that costs more on several commits is one regression: its id leaves the commit out.
      t.kind === 'trend'
        ? Math.floor((t.candidate.to ?? now) / (7 * 86_400_000))
        : t.kind === 'flag'
          ? ''
          : t.baseline.commit,
      t.kind === 'rollout' ? t.candidate.commit : '',
      t.flag?.key,
      t.flag?.variant,
    ]);
    const alert: Alert = { id, ...body, summary: describeAlert(body) };
    const previous = alerts.findIndex((a) => a.id === id);
    if (previous < 0) alerts.push(alert);
    else if ((alerts[previous]?.candidate.to ?? 0) < (alert.candidate.to ?? 0)) alerts[previous] = alert;
  });
  // Root cause: the functions that explain each rollout and flag alert, where profiles exist.
  for (const alert of alerts) {
    if (alert.kind !== 'rollout' && alert.kind !== 'flag') continue;
    alert.rootCause = await rootCauseOf(store, alert);
    if (alert.rootCause.length > 0) alert.summary = describeAlert(alert);
  }
  // The function detector: every function of every rollout comparison, its own multiple-testing family.
  const functionTests: FunctionTest[] = [];
  const profiled = profiledEndpoints(store, config);
  for (const t of tested) {
    if (t.kind !== 'rollout') continue;
    // Only endpoints with profiles on both sides: one query per side and window, not two per endpoint.
    const key = endpointMetricKey(t.comparison);
    const baseline = (await profiled(t.service, t.baseline)).get(key);
    if (baseline === undefined) continue;
    const candidate = (await profiled(t.service, t.candidate)).get(key);
    if (candidate === undefined) continue;
    functionTests.push(...(await testFunctions(store, t, config, { baseline, candidate })));
  }
  alerts.push(...functionAlerts(functionTests, config, now));
  // A trend that one rollout explains is that rollout's alert, not a second one.
  const explained = (trend: Alert) =>
    alerts.some(
      (a) =>
        a.kind === 'rollout' &&
        a.service === trend.service &&
        a.endpoint === trend.endpoint &&
        a.metric === trend.metric &&
        // Any rollout since the week the trend is measured against.
        (a.candidate.from ?? 0) >= (trend.baseline.to ?? 0),
    );
  let kept = alerts.filter((a) => a.kind !== 'trend' || !explained(a));
  kept = await foldRolloutsExplainedByFlags(kept, config, processes);
  await markResolved(store, kept, tested, config, now, processes);
  kept.sort((a, b) => b.changePct - a.changePct);
  return { alerts: kept, tested: tested.length, services };
}

/**
 * The per-profile sums of the endpoints with at least `minProfiles` profiles in one commit's window,
 * by endpoint + metric, read once per window for one run.
 */
function profiledEndpoints(
  store: Store,
  config: DetectorConfig,
): (service: string, side: Alert['baseline']) => Promise<Map<string, ProfileEndpointRow[]>> {
  const memo = new Map<string, Promise<Map<string, ProfileEndpointRow[]>>>();
  return (service, side) => {
    const id = `${service}\u0000${side.commit}\u0000${side.from}\u0000${side.to}`;
    let found = memo.get(id);
    if (!found) {
      const q: Parameters<Store['profileEndpoints']>[0] = { service, commit: side.commit, byProfile: true };
      if (side.from !== undefined) q.from = side.from;
      if (side.to !== undefined) q.to = side.to;
      found = store.profileEndpoints(q).then((rows) => {
        const byEndpoint = new Map<string, ProfileEndpointRow[]>();
        for (const row of rows) {
          const key = endpointMetricKey(row);
          const list = byEndpoint.get(key) ?? [];
          list.push(row);
          byEndpoint.set(key, list);
        }
        // byProfile: one row per profile of an endpoint and metric.
        return new Map([...byEndpoint].filter(([, list]) => list.length >= config.minProfiles));
      });
      memo.set(id, found);
    }
    return found;
  };
}

/**
 * Function alerts: Benjamini–Hochberg over every function tested in the run, then the minimum
 * effects and the cost-shift filter (isFunctionRegression).
 */
function functionAlerts(tests: FunctionTest[], config: DetectorConfig, now: number): Alert[] {
  const adjusted = benjaminiHochberg(tests.map((t) => t.change.pValue));
  const shorten = shortenFiles(tests.map((t) => t.file));
  const out: Alert[] = [];
  tests.forEach((test, i) => {
    const pValue = adjusted[i] as number;
    if (!(pValue < config.alpha) || !isFunctionRegression(test, config)) return;
    const r = test.rollout;
    // Change in % of the function's own base cost; for a function new in the candidate, of the endpoint's.
    const scale = test.base > 0 ? test.base : test.endpointBase;
    const file = shorten(test.file);
    const body: Omit<Alert, 'summary' | 'id'> = {
      kind: 'function',
      service: r.service,
      endpoint: r.comparison.endpoint,
      metric: r.comparison.metric,
      baseline: r.baseline,
      candidate: r.candidate,
      bucketMs: WINDOW_BUCKET_MS,
      flag: null,
      changePct: (test.change.delta / scale) * 100,
      ci: [(test.change.ci[0] / scale) * 100, (test.change.ci[1] / scale) * 100],
      confidence: config.confidence,
      pValue,
      pValueRaw: test.change.pValue,
      n: test.samples,
      threshold: config.minFunctionEffectPct,
      thresholdSource:
        config.minFunctionEffectPct === DEFAULT_DETECTOR_CONFIG.minFunctionEffectPct ? 'default' : 'config',
      comparison: r.method,
      costMean: { baseline: test.base, candidate: test.head },
      hostClasses: r.comparison.hostClasses,
      rootCause: [
        { function: test.function, file, line: test.line, deltaPct: (test.change.delta / test.endpointBase) * 100 },
      ],
      detectedAt: now,
    };
    const id = alertId([
      'function',
      r.service,
      r.comparison.endpoint,
      r.comparison.metric,
      r.baseline.commit,
      r.candidate.commit,
      test.function,
      test.file,
      test.line,
    ]);
    out.push({ id, ...body, summary: describeAlert(body) });
  });
  return out;
}

/**
 * A rollout alert is resolved when the newest commit of the service, compared with the same
 * baseline window, no longer exceeds the threshold (the fix shipped). A flag alert is resolved when
 * a newer commit tested the same flag variant on the endpoint and found no regression.
 */
async function markResolved(
  store: Store,
  alerts: Alert[],
  tested: TestedChange[],
  config: DetectorConfig,
  now: number,
  processes: ProcessSpreads,
): Promise<void> {
  const commitsByService = new Map<string, Awaited<ReturnType<Store['commits']>>>();
  for (const alert of alerts) {
    if (alert.kind !== 'rollout' && alert.kind !== 'flag') continue;
    let commits = commitsByService.get(alert.service);
    if (!commits) {
      commits = (await store.commits(alert.service)).sort((a, b) => rolloutTime(a) - rolloutTime(b));
      commitsByService.set(alert.service, commits);
    }
    const own = commits.find((c) => c.commit === alert.candidate.commit);
    const newest = commits[commits.length - 1];
    if (!own || !newest || newest.commit === own.commit || rolloutTime(newest) <= rolloutTime(own)) continue;
    if (alert.kind === 'rollout') {
      // Whole minutes (window.ts): up to the last minute of the newest commit that has passed.
      const end = Math.min(minuteOf(now), endOfMinute(newest.lastSeen));
      const { from, to } = minuteWindow(Math.max(rolloutTime(newest), end - config.rolloutWindowMs), end);
      if (to > now) continue;
      const [now_] = (
        await processes.compare(
          alert.service,
          inBlocks({ commit: alert.baseline.commit, from: alert.baseline.from, to: alert.baseline.to }),
          inBlocks({ commit: newest.commit, from, to }),
        )
      ).filter((c) => c.endpoint === alert.endpoint && c.metric === alert.metric);
      if (now_ && (now_.changePct < alert.threshold || now_.pValue >= config.alpha)) alert.resolvedBy = newest.commit;
    } else {
      const later = tested.find(
        (t) =>
          t.kind === 'flag' &&
          t.service === alert.service &&
          t.candidate.commit === newest.commit &&
          t.comparison.endpoint === alert.endpoint &&
          t.flag?.key === alert.flag?.key &&
          t.flag?.variant === alert.flag?.variant,
      );
      const stillAlerting = alerts.some(
        (a) =>
          a.kind === 'flag' &&
          a.candidate.commit === newest.commit &&
          a.endpoint === alert.endpoint &&
          a.flag?.key === alert.flag?.key &&
          a.flag?.variant === alert.flag?.variant,
      );
      if (later && !stillAlerting) alert.resolvedBy = newest.commit;
    }
  }
}

/**
 * A commit that turns on a flag which makes an endpoint dearer for the requests that have it also
 * raises that endpoint's mean at its rollout. That is one regression with one cause (the flag),
 * so when the endpoint, restricted to the flag's control variant, shows no regression at the
 * rollout, the rollout alert is folded into the flag alert.
 */
async function foldRolloutsExplainedByFlags(
  alerts: Alert[],
  config: DetectorConfig,
  processes: ProcessSpreads,
): Promise<Alert[]> {
  const folded = new Set<Alert>();
  for (const rollout of alerts) {
    if (rollout.kind !== 'rollout') continue;
    const flagAlerts = alerts.filter(
      (a) =>
        a.kind === 'flag' &&
        a.service === rollout.service &&
        a.endpoint === rollout.endpoint &&
        a.metric === rollout.metric &&
        a.flag !== null,
    );
    for (const flagAlert of flagAlerts) {
      const flag = flagAlert.flag as NonNullable<Alert['flag']>;
      // Control against control when the baseline commit already had the flag (else its 'on'
      // requests would weigh in the baseline and hide a regression of every request); against all
      // of the baseline's requests when the flag is new with the candidate.
      const controlChange = async (baselineFlag: { key: string; variant: string } | undefined) =>
        (
          await processes.compare(
            rollout.service,
            inBlocks({
              commit: rollout.baseline.commit,
              from: rollout.baseline.from,
              to: rollout.baseline.to,
              ...(baselineFlag ? { flag: baselineFlag } : {}),
            }),
            inBlocks({
              commit: rollout.candidate.commit,
              from: rollout.candidate.from,
              to: rollout.candidate.to,
              flag: { key: flag.key, variant: flag.control },
            }),
          )
        ).filter((c) => c.endpoint === rollout.endpoint && c.metric === rollout.metric)[0];
      const control =
        (await controlChange({ key: flag.key, variant: flag.control })) ?? (await controlChange(undefined));
      if (control && (control.changePct < rollout.threshold || control.pValue >= config.alpha)) {
        folded.add(rollout);
        flagAlert.summary += ` Turning it on with commit ${rollout.candidate.commit} raised the endpoint's mean by ${rollout.changePct.toFixed(2)}% (the requests with "${flag.control}" did not change).`;
        break;
      }
    }
  }
  return alerts.filter((a) => !folded.has(a));
}
