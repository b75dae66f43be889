/** Detectors: from the store's aggregates to alerts. See docs/detectors.md and docs/MATH.md. */
export type { Alert, AlertKind, RootCause } from './alert';
export { alertId, describeAlert } from './alert';
export type { TestedChange } from './candidate';
export type { EndpointComparison, GroupSelector } from './compare';
export { compareGroups } from './compare';
export type { DetectorConfig } from './config';
export { DEFAULT_DETECTOR_CONFIG, DetectorConfigError, loadDetectorConfig, resolveDetectorConfig } from './config';
export type { EfficiencyDay } from './efficiency';
export { efficiencyByDay } from './efficiency';
export { detectFlags, flagLookAlphaShare } from './flag';
export type { RolloutLook } from './rollout';
export { detectRollouts, INTERIM_ALPHA_SHARE, INTERIM_LOOKS, rolloutLook, rolloutTime } from './rollout';
export type { DetectionRun } from './run';
export { runDetectors } from './run';
export type { EndpointThreshold } from './thresholds';
export { learnThresholds, thresholdFor } from './thresholds';
export { detectTrends } from './trend';
