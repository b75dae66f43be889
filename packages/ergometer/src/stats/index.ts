/** Pure statistics for the detectors: numbers in, numbers out. See docs/MATH.md. */
export type { ChangePoint, ChangePointOptions } from './changepoint';
export { bestSplit, findChangePoints, PairwiseDistances, splitTest } from './changepoint';
export {
  binomialUpperBound,
  normalCdf,
  normalQuantile,
  normalTwoSidedP,
  regularizedBeta,
  studentQuantile,
  studentTwoSidedP,
} from './distributions';
export { benjaminiHochberg, holm } from './multiple';
export { logNormalSampler, normalSampler, seededRandom } from './random';
export type { RankTestResult } from './rank';
export { mannWhitneyFromHistograms } from './rank';
export type { Moments, RatioEstimate } from './ratio';
export { addMoments, mean, minimumDetectableChangePct, ratioOfMeans, variance } from './ratio';
export type { StratifiedEstimate, Stratum } from './stratified';
export { stratifiedRatio } from './stratified';
