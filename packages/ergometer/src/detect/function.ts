/**
 * The function detector (SPEC §5 `kind: "function"`): for every rollout comparison the rollout
 * detector made, each function's self cost per request on the endpoint, baseline vs candidate.
 * FBDetect's observation: a change that is 0.3% of an endpoint is 10% of the function it sits in,
 * far easier to tell from noise. Self cost, because wrappers have none of their callee's change
 * (docs/detectors.md §"Root cause and wrappers"). The statistics are in src/stats/shares.ts and
 * docs/MATH.md; the run (run.ts) corrects the p-values for every function tested and applies the
 * minimum effects and the cost-shift filter.
 */
import { isPseudoFrame } from '../profile/decode';
import { functionKey } from '../profile/diff';
import { relativeVarianceOfMean } from '../stats/ratio';
import { costPerRequest, type FunctionChange, functionChange, shareOfSums } from '../stats/shares';
import type { AggregateQuery, ProfileEndpointRow, ProfileFunctionRow, ProfileQuery, Store } from '../store/types';
import type { TestedChange } from './candidate';
import { type Group, groupsFromRows, inBlocks } from './compare';
import type { DetectorConfig } from './config';

/** One function tested between the two sides of a rollout. */
export interface FunctionTest {
  rollout: TestedChange;
  function: string;
  file: string;
  line: number;
  /** Self cost per request, metric units. */
  base: number;
  head: number;
  change: FunctionChange;
  /** The same for the function's total cost (itself and everything it calls). */
  totalChange: FunctionChange;
  /**
   * Set when this function's increase may be cost V8 charged to a caller on one side and to the function
   * on the other (an inlining change): the function whose self cost fell by at least half this increase
   * while its total did not fall by as much. See {@link attributionShifts}.
   */
  shiftedFrom?: { function: string; amount: number };
  /** The endpoint's mean cost per request at the baseline (request samples). */
  endpointBase: number;
  /** Profile samples of the endpoint on each side. */
  samples: { baseline: number; candidate: number };
}

/** One function's cost (self or total) on one side: by profile id, and its pooled samples. */
interface CostParts {
  byProfile: Map<string, number>;
  samples: number;
}

const addTo = (parts: CostParts, profileId: string, cost: number, samples: number): void => {
  parts.byProfile.set(profileId, (parts.byProfile.get(profileId) ?? 0) + cost);
  parts.samples += samples;
};

interface SideData {
  /** Endpoint cost per profile, by profile id. */
  endpointCost: Map<string, number>;
  endpointSamples: number;
  /** function key → its self and its total cost, each by profile id and as pooled samples. */
  functions: Map<string, { row: ProfileFunctionRow; self: CostParts; total: CostParts }>;
  mean: number;
  varMean: number;
}

/**
 * @param endpoints the endpoint's profile sums on this side, per profile (`profileEndpoints` with
 *   `byProfile`, this side's commit and window, the comparison's endpoint and metric)
 */
async function sideData(
  store: Store,
  rollout: TestedChange,
  side: 'baseline' | 'candidate',
  endpoints: readonly ProfileEndpointRow[],
): Promise<SideData | undefined> {
  const selector = rollout[side];
  const q: ProfileQuery = {
    service: rollout.service,
    commit: selector.commit,
    endpoint: rollout.comparison.endpoint,
    metric: rollout.comparison.metric,
    byProfile: true,
  };
  if (selector.from !== undefined) q.from = selector.from;
  if (selector.to !== undefined) q.to = selector.to;
  if (endpoints.length === 0) return undefined;
  const m = await endpointMean(store, rollout, selector);
  if (!m || m.moments.n < 2) return undefined;
  const mean = m.moments.sum / m.moments.n;
  const data: SideData = {
    endpointCost: new Map(),
    endpointSamples: 0,
    functions: new Map(),
    mean,
    varMean: relativeVarianceOfMean(m.moments).relVar * mean * mean,
  };
  for (const e of endpoints) {
    if (e.cost <= 0) continue;
    data.endpointCost.set(e.profileId, e.cost);
    data.endpointSamples += e.samples;
  }
  for (const row of await store.profileFunctions(q)) {
    const key = functionKey(row);
    let f = data.functions.get(key);
    if (!f) {
      f = { row, self: { byProfile: new Map(), samples: 0 }, total: { byProfile: new Map(), samples: 0 } };
      data.functions.set(key, f);
    }
    addTo(f.self, row.profileId, row.selfCost, row.selfSamples);
    addTo(f.total, row.profileId, row.totalCost, row.totalSamples);
  }
  return data;
}

/**
 * The endpoint's request samples on one side (all host classes merged, as the profiles merge them), read
 * in time blocks as the rollout comparison is (detect/compare.ts inBlocks), so that its mean's variance
 * allows for costs correlated in time: a function's cost per request is its share times that mean, and a
 * process that was dearer for stretches of the window makes every function of the endpoint dearer with
 * it. With the independent-requests variance, such a stretch passed for a regression of whichever
 * function carries most of the endpoint (the demo once alerted on its search handler, +25%, beside a
 * commit that changed the feed).
 */
async function endpointMean(
  store: Store,
  rollout: TestedChange,
  selector: TestedChange['baseline'],
): Promise<Group | undefined> {
  const blocked = inBlocks(selector);
  const query: AggregateQuery = {
    service: rollout.service,
    commit: selector.commit,
    endpoint: rollout.comparison.endpoint,
    metric: rollout.comparison.metric,
    groupBy: ['endpoint'],
    flags: 'none',
    histograms: 'none',
  };
  if (blocked.from !== undefined) query.from = blocked.from;
  if (blocked.to !== undefined) query.to = blocked.to;
  if (blocked.blockMs !== undefined) query.bucketMs = blocked.blockMs;
  const groups = groupsFromRows(await store.aggregates(query), undefined, blocked.blockMs !== undefined);
  // One group: grouped by endpoint alone, for one endpoint and metric.
  return groups.values().next().value;
}

function estimate(data: SideData, key: string, which: 'self' | 'total') {
  const parts = data.functions.get(key)?.[which];
  const ys: number[] = [];
  const xs: number[] = [];
  for (const [profileId, cost] of data.endpointCost) {
    xs.push(cost);
    ys.push(parts?.byProfile.get(profileId) ?? 0);
  }
  const share = shareOfSums(ys, xs, parts?.samples ?? 0, data.endpointSamples);
  return costPerRequest(share, data.mean, data.varMean);
}

/**
 * Tests every function with enough self samples on either side of one rollout comparison. Returns
 * nothing when either side has fewer than `config.minProfiles` profiles of the endpoint.
 *
 * @param profiles the endpoint's per-profile sums on each side, as read once per window by the run
 */
export async function testFunctions(
  store: Store,
  rollout: TestedChange,
  config: DetectorConfig,
  profiles: { baseline: readonly ProfileEndpointRow[]; candidate: readonly ProfileEndpointRow[] },
): Promise<FunctionTest[]> {
  const base = await sideData(store, rollout, 'baseline', profiles.baseline);
  const head = await sideData(store, rollout, 'candidate', profiles.candidate);
  if (!base || !head) return [];
  if (base.endpointCost.size < config.minProfiles || head.endpointCost.size < config.minProfiles) return [];
  const out: FunctionTest[] = [];
  for (const key of new Set([...base.functions.keys(), ...head.functions.keys()])) {
    const b = base.functions.get(key);
    const h = head.functions.get(key);
    if (Math.max(b?.self.samples ?? 0, h?.self.samples ?? 0) < config.minFunctionSamples) continue;
    const row = (b ?? h)?.row as ProfileFunctionRow;
    // Not a function a commit can have changed: the garbage collector's time is charged to whatever
    // request is running when a collection starts, so one endpoint's allocations show up as another's
    // "(garbage collector)" (the demo's comments endpoint, untouched by v3, got +515% of it beside v3's
    // allocating search). It still counts in the endpoint's cost and in the rollout's root cause.
    if (isPseudoFrame(row)) continue;
    const baseCost = estimate(base, key, 'self');
    const headCost = estimate(head, key, 'self');
    out.push({
      rollout,
      function: row.function,
      file: row.file,
      line: row.line,
      base: baseCost.cost,
      head: headCost.cost,
      change: functionChange(baseCost, headCost, config.confidence),
      totalChange: functionChange(estimate(base, key, 'total'), estimate(head, key, 'total'), config.confidence),
      endpointBase: base.mean,
      samples: { baseline: base.endpointSamples, candidate: head.endpointSamples },
    });
  }
  attributionShifts(out);
  return out;
}

/**
 * Marks the increases that an attribution shift can explain (sets `shiftedFrom`). V8's sampling profiler
 * charges the samples taken inside a function inlined into its caller to the caller (the sampled frame's
 * inlining is not expanded; docs/agent.md, "Inlining"), and whether the caller is optimized with the
 * function inlined depends on when the optimizing compiler got to it, which differs between processes:
 * long-running processes of the old commit against freshly started ones of the new, or one process
 * against another. Where it differs between the two sides, the callee's self cost moves into the caller's
 * or out of it, and the endpoint does not pay for it.
 *
 * The sign of such a move: a function whose self cost confidently fell while its total cost (itself and
 * everything it calls) did not fall by as much; the cost went from it to something below it. An increase
 * elsewhere of at most twice that amount may be that cost, and is not reported as a regression. The
 * shift is not traced to the callee (the aggregates keep no call edges), so a real increase in a function
 * called below a shifting caller is not reported either: the rollout alert and its root cause still are.
 */
export function attributionShifts(tests: FunctionTest[]): void {
  let donor: FunctionTest | undefined;
  let moved = 0;
  for (const t of tests) {
    if (!(t.change.ci[1] < 0)) continue;
    const amount = movedBelow(t.change.delta, t.totalChange.delta);
    if (amount > moved) {
      donor = t;
      moved = amount;
    }
  }
  if (donor === undefined) return;
  for (const t of tests) {
    if (t !== donor && t.change.delta > 0 && moved >= COST_SHIFT_FRACTION * t.change.delta) {
      t.shiftedFrom = { function: donor.function, amount: moved };
    }
  }
}

/**
 * The part of a function's self-cost decrease that its total cost (itself and its callees) did not lose:
 * cost that moved from the function to something it calls. 0 when self did not fall.
 */
function movedBelow(deltaSelf: number, deltaTotal: number): number {
  return Math.max(0, -deltaSelf - Math.max(0, -deltaTotal));
}

/**
 * Whether a significant function increase is a regression worth an alert:
 *  - large enough: at least minFunctionEffectPct of the function's own base cost and at least
 *    minFunctionSharePct of the endpoint's base cost;
 *  - not a cost shift (FBDetect): if the endpoint's change is confidently below half of the
 *    function's increase (upper end of its interval, from the rollout comparison), the cost moved
 *    from other functions of the endpoint to this one, and the endpoint did not pay for it;
 *  - not an attribution shift from a caller ({@link attributionShifts}).
 */
export function isFunctionRegression(test: FunctionTest, config: DetectorConfig): boolean {
  const delta = test.change.delta;
  if (!(delta > 0)) return false;
  if (test.base > 0 && (delta / test.base) * 100 < config.minFunctionEffectPct) return false;
  const ofEndpointPct = (delta / test.endpointBase) * 100;
  if (ofEndpointPct < config.minFunctionSharePct) return false;
  if (test.shiftedFrom !== undefined) return false;
  return test.rollout.comparison.ci[1] >= COST_SHIFT_FRACTION * ofEndpointPct;
}

/** The endpoint must plausibly have grown by at least this fraction of the function's increase. */
export const COST_SHIFT_FRACTION = 0.5;
