import { createHash } from 'node:crypto';
import type { Metric } from '../store/types';

export type AlertKind = 'rollout' | 'flag' | 'trend' | 'function';

/** A function that explains part of a change (filled by the profiler, issue 6). */
export interface RootCause {
  function: string;
  file: string;
  line: number;
  /** Share of the endpoint's change this function's change explains, in percentage points. */
  deltaPct: number;
}

/**
 * One alert, as `ergometer detect --json` prints it and sinks send it (SPEC §5). Fields beyond the
 * SPEC's (`threshold`, `pValueRaw`, `window`, `summary`, …) are additions; none is renamed.
 */
export interface Alert {
  /** Stable: the same regression gets the same id on every detector run. */
  id: string;
  kind: AlertKind;
  service: string;
  endpoint: string;
  metric: Metric;
  baseline: { commit: string; from?: number; to?: number };
  candidate: { commit: string; from?: number; to?: number };
  /**
   * The windows [from, to) of baseline and candidate are whole buckets of this many ms (a minute): the
   * store keeps per-minute aggregates, and a window holds every sample of each minute that starts in
   * it. They start at the start of the minute of the rollout (or commit's first sample) and end on a
   * minute boundary that had passed when the detector ran.
   */
  bucketMs?: number;
  flag: { key: string; variant: string; control: string } | null;
  /** Change in mean cost per request, %. */
  changePct: number;
  /** Its confidence interval, %, at the level `confidence`. */
  ci: [number, number];
  /** The level of `ci`: the detectors' `confidence` (0.95 unless configured; docs/detectors.md). */
  confidence: number;
  /** p-value after correction for every endpoint and flag tested in the run (Benjamini–Hochberg). */
  pValue: number;
  /** p-value of this comparison alone. */
  pValueRaw: number;
  n: { baseline: number; candidate: number };
  /** The minimum effect this endpoint needed, % (default, configured or learnt from its noise). */
  threshold: number;
  thresholdSource: 'default' | 'config' | 'learnt';
  /** How the groups were chosen: concurrent canary windows, before/after windows, or week over week. */
  comparison: 'canary' | 'before-after' | 'flag-variants' | 'week-over-week';
  /**
   * Set on a rollout alert when the look reached past the canary's end, but its before/after estimate
   * disagreed with the canary beyond sampling error (the cost moved with the hour, not the code): that
   * estimate and its CI, %. The alert's numbers are the canary's.
   */
  beforeAfterOverruled?: { changePct: number; ci: [number, number] };
  /** Mean cost per request, baseline and candidate, in metric units. */
  costMean: { baseline: number; candidate: number };
  /** Host classes compared (costs are only compared within a class, then combined). */
  hostClasses: string[];
  /**
   * Where the interval's variance came from: requests taken as independent, or `time-blocks` when the
   * costs varied in time more than independent requests allow and the interval was widened for it
   * (docs/MATH.md, "Costs correlated in time"). Not on function alerts.
   */
  varianceFrom?: 'requests' | 'time-blocks';
  /**
   * Rollout alerts: each side's effective number of processes (hosts) and, when processes of the same
   * code were seen to differ, by how much (%, one standard deviation): the interval was widened for it,
   * since with few processes a side a slower process looks like a dearer commit (docs/detectors.md,
   * "What is compared").
   */
  processes?: { baseline: number; candidate: number; spreadPct?: number };
  rootCause: Array<RootCause>;
  /**
   * Set when the regression is gone: the commit that brought the endpoint back to its baseline
   * (rollout), or the newer commit on which the flag variant no longer costs more (flag).
   */
  resolvedBy?: string;
  /** One sentence an engineer who never saw the tool can act on. */
  summary: string;
  detectedAt: number;
}

/** A stable id from what identifies a regression: kind, service, endpoint, commits, flag. */
export function alertId(parts: Array<string | number | null | undefined>): string {
  return createHash('sha256')
    .update(parts.map((p) => String(p ?? '')).join('\u0000'))
    .digest('hex')
    .slice(0, 16);
}

export function formatPct(value: number): string {
  const sign = value > 0 ? '+' : '';
  return `${sign}${Math.abs(value) < 10 ? value.toFixed(2) : value.toFixed(1)}%`;
}

/** An interval's level as its label says it: 0.95 → "95%", 0.995 → "99.5%". */
export function formatLevel(confidence: number): string {
  return `${+(confidence * 100).toFixed(1)}%`;
}

export function formatP(p: number): string {
  return p < 1e-4 ? p.toExponential(1) : p.toPrecision(2);
}

/** "1 vs 1 processes": each side's effective number of processes, rounded. */
export function describeProcesses(p: { baseline: number; candidate: number } | undefined): string {
  if (!p) return '';
  const round = (x: number) => (x < 10 ? Math.round(x * 10) / 10 : Math.round(x));
  return `${round(p.baseline)} vs ${round(p.candidate)} processes`;
}

/** The sentence an alert is read by: what changed, by how much, how sure, since what, what to open next. */
export function describeAlert(a: Omit<Alert, 'summary' | 'id'>): string {
  const widened = [
    a.varianceFrom === 'time-blocks' ? 'costs varied in time' : '',
    a.processes?.spreadPct !== undefined
      ? `processes of the same code differ by ~${a.processes.spreadPct.toFixed(1)}% (${describeProcesses(a.processes)})`
      : '',
  ].filter(Boolean);
  const blocks = widened.length > 0 ? `; interval widened: ${widened.join(', ')}` : '';
  const ciLabel = `${formatLevel(a.confidence)} CI`;
  const change = `${formatPct(a.changePct)} CPU per request (${ciLabel} ${formatPct(a.ci[0])} to ${formatPct(a.ci[1])}, p=${formatP(a.pValue)}, ${a.n.baseline} vs ${a.n.candidate} samples${blocks})`;
  const unit = a.metric === 'instructions' ? 'instructions' : 'CPU ns';
  const means = `mean ${Math.round(a.costMean.baseline)} → ${Math.round(a.costMean.candidate)} ${unit}`;
  const cause =
    a.rootCause.length > 0
      ? ` Most of it is in ${a.rootCause[0]?.function} (${a.rootCause[0]?.file}:${a.rootCause[0]?.line}).`
      : '';
  const overruled = a.beforeAfterOverruled
    ? `; before/after said ${formatPct(a.beforeAfterOverruled.changePct)}, out of line with the canary: the hour moved it`
    : '';
  switch (a.kind) {
    case 'rollout':
      return `${a.service} ${a.endpoint}: ${change} since commit ${a.candidate.commit} replaced ${a.baseline.commit} (${a.comparison === 'canary' ? 'canary, both running at once' : 'before/after the rollout'}${overruled}; ${means}).${cause} Next: ergometer compare --service ${a.service} --base ${a.baseline.commit} --head ${a.candidate.commit}`;
    case 'flag':
      return `${a.service} ${a.endpoint}: ${change} when flag ${a.flag?.key} is "${a.flag?.variant}" instead of "${a.flag?.control}", on commit ${a.candidate.commit} (${means}).${cause}`;
    case 'trend':
      return `${a.service} ${a.endpoint}: ${change} over the last two days against the week before the last seven, on each of both days (${means}); no single rollout explains it.${cause}`;
    case 'function': {
      const f = a.rootCause[0];
      const share = f ? `, ${formatPct(f.deltaPct)} of the endpoint` : '';
      const fnChange = `${formatPct(a.changePct)} (${ciLabel} ${formatPct(a.ci[0])} to ${formatPct(a.ci[1])}, p=${formatP(a.pValue)}${share})`;
      return `${a.service} ${a.endpoint}: function ${f?.function} (${f?.file}:${f?.line}) costs ${fnChange} per request since commit ${a.candidate.commit} replaced ${a.baseline.commit} (self cost ${Math.round(a.costMean.baseline)} → ${Math.round(a.costMean.candidate)} ${unit}). Next: ergometer profile diff --service ${a.service} --base ${a.baseline.commit} --head ${a.candidate.commit} --endpoint '${a.endpoint}'`;
    }
    default:
      return `${a.service} ${a.endpoint}: ${change}.${cause}`;
  }
}
