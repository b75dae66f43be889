export type { AlertRecord, AlertSink, SinkConfig } from './alerts/index';
export { AlertBook, createSinks, deliver, groupByRollout, LogSink, SlackSink, WebhookSink } from './alerts/index';
export type {
  Alert,
  AlertKind,
  DetectionRun,
  DetectorConfig,
  EndpointComparison,
  GroupSelector,
  LookVerdict,
  ProcessSpread,
  RolloutExplanation,
  RolloutLook,
  RootCause,
} from './detect/index';
export {
  compareGroups,
  DEFAULT_DETECTOR_CONFIG,
  DetectorConfigError,
  detectRollouts,
  explainRollout,
  flagLookAlphaShare,
  loadDetectorConfig,
  processSpreadFromRows,
  resolveDetectorConfig,
  rolloutLook,
  runDetectors,
  withProcessSpread,
} from './detect/index';
export { ErgometerError } from './errors';
export { jsonDepthExceeds } from './ingest/json-depth';
export type { IngestLimits } from './ingest/limits';
export { DEFAULT_LIMITS, resolveLimits } from './ingest/limits';
export { parseJsonBody, validateBatch, validateDeploy } from './ingest/validate';
export type { DecodedProfile, DecodedSample, ProfileLimits } from './profile/decode';
export { DEFAULT_PROFILE_LIMITS, decodeProfile, summarizeProfile } from './profile/decode';
export type { DiffQuery, DiffSide, FlameNode, FunctionDiff, ProfileDiff } from './profile/diff';
export { profileDiff } from './profile/diff';
export { pickRootCause, rootCauseOf } from './profile/root-cause';
export type { Collector, CollectorOptions } from './server/collector';
export { createCollector } from './server/collector';
export type { WriteQueueOptions } from './server/write-queue';
export { DEFAULT_QUEUE_OPTIONS } from './server/write-queue';
export type { CostShape, Phase } from './sim/scenario';
export { scenarioBatches, toWire } from './sim/scenario';
export type { ChangePoint, Moments, RankTestResult, RatioEstimate, StratifiedEstimate, Stratum } from './stats/index';
export {
  benjaminiHochberg,
  binomialUpperBound,
  findChangePoints,
  holm,
  logNormalSampler,
  mannWhitneyFromHistograms,
  minimumDetectableChangePct,
  normalCdf,
  normalQuantile,
  normalSampler,
  ratioOfMeans,
  seededRandom,
  stratifiedRatio,
  studentQuantile,
  studentTwoSidedP,
} from './stats/index';
export type { ClickHouseStoreOptions } from './store/clickhouse/index';
export { openClickHouseStore } from './store/clickhouse/index';
export { appendColumnar, type Column as DuckDbColumn } from './store/duckdb/columns';
export type { DuckDbStoreOptions } from './store/duckdb/store';
export {
  DEFAULT_CHECKPOINT_THRESHOLD,
  DEFAULT_DUCKDB_PATH,
  DuckDbStore,
  openDuckDbStore,
  sampleColumns,
} from './store/duckdb/store';
export type { StoreErrorCode } from './store/errors';
export { StoreError } from './store/errors';
export { binBounds, binOf, binValue, mergeHistogram, quantile } from './store/histogram';
export type { PartialAggregate } from './store/rollup';
export { rollUpSamples } from './store/rollup';
export type {
  AggregateQuery,
  AggregateRow,
  CommitInfo,
  CountRow,
  Deploy,
  EndpointStats,
  FunctionId,
  HostMomentsQuery,
  HostMomentsRow,
  IngestBatch,
  IngestResult,
  Metric,
  ProfileEndpointRow,
  ProfileEndpointSum,
  ProfileFunctionRow,
  ProfileFunctionSum,
  ProfileMeta,
  ProfileQuery,
  ProfileSummary,
  Range,
  RetentionPolicy,
  RetentionResult,
  ServiceInfo,
  Store,
  StoredProfile,
  StoredSample,
  UsersRow,
} from './store/types';
export { VERSION } from './version';
