import { readFileSync } from 'node:fs';

/** How the detectors decide. Every field has a default; a config file may override any of them. */
export interface DetectorConfig {
  /** Smallest change in mean cost per request worth an alert, %, unless an endpoint says otherwise. */
  minEffectPct: number;
  /** False discovery rate across everything tested in one run (Benjamini–Hochberg). */
  alpha: number;
  /** Confidence level of the reported intervals. */
  confidence: number;
  /**
   * Samples each side needs, per endpoint and host class, before it is tested. Below ~300 the
   * delta method's tail calibration on heavy-tailed costs degrades (a 5% slow path ×20 doubles the
   * false-alarm rate at p < 0.001 with 300 a side, sextuples it with 100: docs/MATH.md).
   */
  minSamples: number;
  /** Before/after rollouts: how much time on each side of the rollout is compared, ms. */
  rolloutWindowMs: number;
  /** Two commits running side by side for at least this long are compared as a canary, ms. */
  minCanaryMs: number;
  /** Rollouts and flag windows older than this are not tested any more, ms. */
  lookbackMs: number;
  /** Flag detector: the window of each commit's most recent traffic it tests, ms. */
  flagWindowMs: number;
  /** Per service, per endpoint minimum effect, % (overrides default and learnt). */
  thresholds: Record<string, Record<string, number>>;
  /** Learn each endpoint's threshold from its own window-to-window noise (never below minEffectPct). */
  learnThresholds: boolean;
  /**
   * Learn how much processes (hosts) of the same commit differ, and widen rollout comparisons of few
   * processes a side for it (detect/processes.ts).
   */
  learnProcessSpread: boolean;
  /** Function detector: profiles of the endpoint each side needs (they are the replicates of the variance). */
  minProfiles: number;
  /** Function detector: self samples a function needs on one side at least to be tested. */
  minFunctionSamples: number;
  /** Function detector: smallest increase worth an alert, % of the function's own base cost per request. */
  minFunctionEffectPct: number;
  /** Function detector: and at least this much of the endpoint's base cost per request, %. */
  minFunctionSharePct: number;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export const DEFAULT_DETECTOR_CONFIG: Readonly<DetectorConfig> = Object.freeze({
  minEffectPct: 1,
  alpha: 0.001,
  confidence: 0.95,
  minSamples: 300,
  rolloutWindowMs: 6 * HOUR,
  minCanaryMs: 5 * 60_000,
  lookbackMs: 7 * DAY,
  flagWindowMs: DAY,
  thresholds: {},
  learnThresholds: true,
  learnProcessSpread: true,
  minProfiles: 2,
  minFunctionSamples: 20,
  minFunctionEffectPct: 5,
  minFunctionSharePct: 0.1,
});

export class DetectorConfigError extends Error {
  readonly code = 'ERGOMETER_BAD_CONFIG';
}

/** Merges a partial config over the defaults, checking each value; unknown keys are errors. */
export function resolveDetectorConfig(partial: Partial<DetectorConfig> = {}): DetectorConfig {
  const config: DetectorConfig = { ...DEFAULT_DETECTOR_CONFIG, thresholds: { ...DEFAULT_DETECTOR_CONFIG.thresholds } };
  for (const [key, value] of Object.entries(partial)) {
    if (!(key in DEFAULT_DETECTOR_CONFIG)) {
      throw new DetectorConfigError(
        `detectors.${key}: unknown setting (known: ${Object.keys(DEFAULT_DETECTOR_CONFIG).join(', ')})`,
      );
    }
    if (key === 'thresholds') {
      if (typeof value !== 'object' || value === null)
        throw new DetectorConfigError('detectors.thresholds: expected an object');
      for (const [service, endpoints] of Object.entries(value as Record<string, unknown>)) {
        if (typeof endpoints !== 'object' || endpoints === null)
          throw new DetectorConfigError(`detectors.thresholds.${service}: expected { "METHOD /route": percent }`);
        for (const [endpoint, pct] of Object.entries(endpoints as Record<string, unknown>)) {
          if (typeof pct !== 'number' || !(pct >= 0))
            throw new DetectorConfigError(`detectors.thresholds.${service}["${endpoint}"]: expected a percent ≥ 0`);
        }
      }
      config.thresholds = value as DetectorConfig['thresholds'];
    } else if (key === 'learnThresholds' || key === 'learnProcessSpread') {
      if (typeof value !== 'boolean') throw new DetectorConfigError(`detectors.${key}: expected true or false`);
      config[key] = value;
    } else {
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
        throw new DetectorConfigError(`detectors.${key}: expected a finite number ≥ 0, got ${JSON.stringify(value)}`);
      if ((key === 'alpha' || key === 'confidence') && !(value > 0 && value < 1))
        throw new DetectorConfigError(`detectors.${key}: expected a number between 0 and 1`);
      (config as unknown as Record<string, number>)[key] = value;
    }
  }
  return config;
}

/** Reads the `detectors` section of a JSON config file (e.g. ergometer.config.json). */
export function loadDetectorConfig(file: string): DetectorConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new DetectorConfigError(`cannot read config ${file}: ${(error as Error).message}`);
  }
  const section = (parsed as { detectors?: unknown }).detectors ?? {};
  if (typeof section !== 'object' || section === null)
    throw new DetectorConfigError(`${file}: "detectors" must be an object`);
  return resolveDetectorConfig(section as Partial<DetectorConfig>);
}
