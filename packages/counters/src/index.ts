export type {
  CostMetric,
  Counter,
  CounterFallback,
  CounterPreference,
  CounterSource,
  OpenCounterOptions,
} from './counter';
export { openCounter, parsePreference } from './counter';
export { CountersError } from './errors';
export type { InterruptSampler } from './sampler';
export { loadInterruptSampler, samplerBuildPath } from './sampler';
